"""Shortcut audit: does a dim look at the lungs, or at markers, borders and padding?

For each audited dim (the top ``audit_dims`` per fold and class), the saliency map is the
absolute gradient of that GAP unit with respect to the input image, averaged over the
``audit_images`` out-of-fold images that activate it most (among images with a real lung mask:
user, ground truth or a segmentation that passed QC). Each map is split into three regions of
the letterboxed frame:

* ``lung``: the lung mask;
* ``border``: the letterbox padding plus an outer ring of the image (``border_fraction`` of the
  side), where markers, text and collimation edges live, minus lung;
* ``outside``: the rest of the image (mediastinum, diaphragm, abdomen, shoulders).

A dim whose lung share is below ``shortcut_lung_share`` is flagged ``likely shortcut``; a fold
model's ``shortcut_score`` is the SHAP-weighted mean non-lung share of its audited dims. The
lungs-blanked test replaces each out-of-fold image's lung fields by their mean intensity and
measures the model's per-class accuracy again: a class whose accuracy survives without lungs
is recognised from something else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

REAL_MASKS = ("folder", "column", "segmented")


def regions(lung: np.ndarray, content: np.ndarray, border_fraction: float) -> dict[str, np.ndarray]:
    width = max(1, int(round(border_fraction * content.shape[0])))
    ring = content & ~ndimage.binary_erosion(content, iterations=width)
    border = (~content | ring) & ~lung
    outside = content & ~lung & ~border
    return {"lung": lung, "border": border, "outside": outside}


def shares(saliency: np.ndarray, parts: dict[str, np.ndarray]) -> dict[str, float]:
    total = float(saliency.sum())
    if total <= 0:
        return {f"{name}_share": np.nan for name in parts}
    return {f"{name}_share": float(saliency[mask].sum()) / total for name, mask in parts.items()}


def unit_saliency(gap_model: Any, images: np.ndarray, unit: int) -> np.ndarray:
    """|d GAP[unit] / d input| per image, (M, S, S)."""
    import tensorflow as tf

    x = tf.convert_to_tensor(images[..., None].astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        # Each image's unit depends on that image alone: the gradient of the sum is per-image.
        total = tf.reduce_sum(gap_model(x, training=False)[:, unit])
    grads = tape.gradient(total, x)
    return np.abs(np.asarray(grads))[..., 0]


@dataclass
class AuditImages:
    """The letterboxed images of the run with their lung and content masks, by image id."""

    images: Any  # (N, S, S) uint8, memory-mapped
    row: dict[str, int]
    lung: dict[str, np.ndarray]  # image_id -> bool mask, real lung masks only
    content: dict[str, np.ndarray]

    def stack(self, ids: list[str]) -> np.ndarray:
        return np.stack([np.asarray(self.images[self.row[i]]) for i in ids]).astype(np.float32)


def load_audit_images(run: Any, config: Any, manifest: pd.DataFrame) -> AuditImages:
    """``manifest``: included rows indexed by image_id, with mask_source."""
    from cxrbio.data.preprocess import letterbox_geometry
    from cxrbio.masks import read_mask
    from cxrbio.train import load_training_data

    data = load_training_data(run, config, cache="disk")
    row = {image_id: i for i, image_id in enumerate(data.manifest["image_id"])}
    size = config.data.image_size
    lung, content = {}, {}
    sources = manifest["mask_source"] if "mask_source" in manifest else pd.Series(dtype=object)
    for image_id, item in manifest.iterrows():
        content[image_id] = letterbox_geometry(int(item["height"]), int(item["width"]), size).content_mask()
        if sources.get(image_id) in REAL_MASKS:
            mask = read_mask(run, image_id)
            if mask is not None:
                lung[image_id] = mask & content[image_id]
    return AuditImages(data.images, row, lung, content)


@dataclass
class FoldAudit:
    dims: pd.DataFrame  # fold, class, dim, lung/outside/border share, lung_area_share, flag, images
    model: pd.DataFrame  # fold, class, n, accuracy, blanked_accuracy
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # "fold-<k>/<dim>" -> mean saliency (S, S) float16


def audit_fold(model: Any, fold: int, test_ids: np.ndarray, test: np.ndarray, y_test: np.ndarray, dim_names: list[str],
               candidates: pd.DataFrame, images: AuditImages, classes: list[str], settings: Any) -> FoldAudit:
    """``candidates``: rows (class, dim, mean_abs_shap) of this fold, best first per class."""
    import keras

    gap_model = keras.Model(model.inputs[0], model.get_layer("gap").output)  # one tensor in, not a list
    with_lungs = np.array([i in images.lung for i in test_ids])
    column = {d: j for j, d in enumerate(dim_names)}
    rows, maps, cache = [], {}, {}
    for cls, part in candidates.groupby("class", sort=False):
        for item in part.head(settings.audit_dims).itertuples():
            if item.dim not in cache:
                j = column[item.dim]
                pool = np.flatnonzero(with_lungs)
                if not len(pool):
                    continue
                chosen = pool[np.argsort(-test[pool, j])[: settings.audit_images]]
                ids = [str(i) for i in test_ids[chosen]]
                unit = int(item.dim[1:])
                saliency = unit_saliency(gap_model, images.stack(ids), unit)
                per_image = [shares(s, regions(images.lung[i], images.content[i], settings.border_fraction))
                             for s, i in zip(saliency, ids)]
                summary = pd.DataFrame(per_image).mean().to_dict()
                area = float(np.mean([images.lung[i].sum() / images.content[i].sum() for i in ids]))
                mean_map = saliency.mean(axis=0)
                maps[f"fold-{fold}/{item.dim}"] = (mean_map / max(mean_map.max(), 1e-12)).astype(np.float16)
                cache[item.dim] = {**summary, "lung_area_share": area, "images": "|".join(ids)}
            rows.append({"fold": fold, "class": cls, "dim": item.dim, "mean_abs_shap": item.mean_abs_shap,
                         **cache[item.dim]})
    dims = pd.DataFrame(rows)
    if len(dims):
        dims["likely_shortcut"] = dims["lung_share"] < settings.shortcut_lung_share
    return FoldAudit(dims, lungs_blanked(model, test_ids[with_lungs], y_test[with_lungs], images, classes, fold), maps)


def blank_lungs(image: np.ndarray, lung: np.ndarray) -> np.ndarray:
    out = image.copy()
    if lung.any():
        out[lung] = image[lung].mean()
    return out


def predicted_classes(model: Any, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Direct calls in batches (model.predict retraces for every fold model it meets)."""
    out = [np.asarray(model(images[i : i + batch, ..., None], training=False)).argmax(axis=1)
           for i in range(0, len(images), batch)]
    return np.concatenate(out) if out else np.zeros(0, int)


def lungs_blanked(model: Any, ids: np.ndarray, y: np.ndarray, images: AuditImages, classes: list[str],
                  fold: int) -> pd.DataFrame:
    """Per class: accuracy on the fold's out-of-fold images, as they are and with lungs blanked."""
    if not len(ids):
        return pd.DataFrame(columns=["fold", "class", "n", "accuracy", "blanked_accuracy"])
    original = images.stack([str(i) for i in ids])
    blanked = np.stack([blank_lungs(img, images.lung[str(i)]) for img, i in zip(original, ids)])
    before, after = predicted_classes(model, original), predicted_classes(model, blanked)
    rows = []
    for c, name in enumerate(classes):
        members = y == c
        if members.any():
            rows.append({"fold": fold, "class": name, "n": int(members.sum()),
                         "accuracy": float((before[members] == c).mean()),
                         "blanked_accuracy": float((after[members] == c).mean())})
    return pd.DataFrame(rows)


def shortcut_scores(dims: pd.DataFrame) -> pd.DataFrame:
    """Per (fold, class) and per fold: SHAP-weighted mean non-lung saliency share of the audited dims."""
    if dims.empty:
        return pd.DataFrame(columns=["fold", "class", "shortcut_score", "flagged_dims", "audited_dims"])
    frame = dims.assign(non_lung=1 - dims["lung_share"])

    def score(part: pd.DataFrame) -> pd.Series:
        weights = part["mean_abs_shap"].clip(lower=1e-12)
        return pd.Series({"shortcut_score": float(np.average(part["non_lung"], weights=weights)),
                          "flagged_dims": int(part["likely_shortcut"].sum()), "audited_dims": len(part)})

    per_class = frame.groupby(["fold", "class"]).apply(score, include_groups=False).reset_index()
    per_fold = frame.groupby("fold").apply(score, include_groups=False).reset_index().assign(**{"class": "(model)"})
    return pd.concat([per_class, per_fold], ignore_index=True)
