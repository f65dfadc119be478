"""Shortcut audit: does a dim look at the lungs, or at markers, borders and padding?

Each image's letterboxed frame is split into three regions:

* ``lung``: its lung mask (user, ground truth, or a segmentation that passed QC; images whose
  mask fell back to the whole image are not audited);
* ``border``: the letterbox padding plus an outer ring of the image (``border_fraction`` of the
  side, 12 % by default), minus lung: where side markers, text and collimation edges live;
* ``outside``: the rest (mediastinum, heart, diaphragm, abdomen, shoulders).

For each audited dim (the top ``audit_dims`` per fold and class) and its ``audit_images`` most
activating out-of-fold images, **occlusion**: each region in turn is replaced by its mean
intensity and the change of the dim's activation measured; a region's share is its change over
the sum of the three. (Gradients were tried first: they put 0.5 % of their mass on a marker the
model demonstrably used -- saturated units have small gradients. Occlusion found it; see
docs/analysis.md.) The mean absolute gradient map is still kept for the report's gallery.

A dim is flagged ``likely shortcut`` when its border share is at least ``shortcut_border_share``
or its lung share below ``shortcut_lung_share``. A fold model's ``shortcut_score`` is the
SHAP-weighted mean non-lung share of its audited dims. Two class-level tests on all out-of-fold
images with a lung mask: **lungs blanked** (lung fields set to their mean) and **border
blanked** (the border region set to its mean): a class whose accuracy survives without lungs,
or collapses without the border, is recognised from something other than the lungs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from cxrbio.masks import ANATOMICAL
from cxrbio.models.layers import GAP_LAYER

REAL_MASKS = ANATOMICAL
DIM_COLUMNS = ["fold", "class", "dim", "mean_abs_shap", "lung_share", "border_share", "outside_share",
               "lung_area_share", "images", "likely_shortcut"]


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
    from cxrbio.training import load_training_data

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


def occluded(image: np.ndarray, parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The image with each region in turn replaced by its mean intensity."""
    out = {}
    for name, mask in parts.items():
        version = image.copy()
        if mask.any():
            version[mask] = image[mask].mean()
        out[name] = version
    return out


def activations(gap_model: Any, images: np.ndarray, batch: int = 64) -> np.ndarray:
    parts = [np.asarray(gap_model(images[i : i + batch, ..., None], training=False)) for i in range(0, len(images), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, 0))


def audit_fold(model: Any, fold: int, test_ids: np.ndarray, test: np.ndarray, y_test: np.ndarray, dim_names: list[str],
               candidates: pd.DataFrame, images: AuditImages, classes: list[str], settings: Any) -> FoldAudit:
    """``candidates``: rows (class, dim, mean_abs_shap) of this fold, best first per class."""
    import keras

    gap_model = keras.Model(model.inputs[0], model.get_layer(GAP_LAYER).output)  # one tensor in, not a list
    with_lungs = np.array([i in images.lung for i in test_ids])
    pool = np.flatnonzero(with_lungs)
    column = {d: j for j, d in enumerate(dim_names)}
    audited = [(cls, item) for cls, part in candidates.groupby("class", sort=False)
               for item in part.head(settings.audit_dims).itertuples()]
    chosen = {item.dim: [str(i) for i in test_ids[pool[np.argsort(-test[pool, column[item.dim]])[: settings.audit_images]]]]
              for _, item in audited} if len(pool) else {}
    needed = sorted({i for ids in chosen.values() for i in ids})
    # One forward pass per region for every image any audited dim needs: all dims at once.
    names = ("lung", "border", "outside")
    originals = images.stack(needed) if needed else np.zeros((0,) + images.images.shape[1:], np.float32)
    versions = {name: np.empty_like(originals) for name in names}
    for k, image_id in enumerate(needed):
        parts = regions(images.lung[image_id], images.content[image_id], settings.border_fraction)
        for name, version in occluded(originals[k], parts).items():
            versions[name][k] = version
    base = activations(gap_model, originals)
    change = {name: np.abs(base - activations(gap_model, versions[name])) for name in names}
    row_of = {image_id: k for k, image_id in enumerate(needed)}
    rows, maps, done = [], {}, {}
    for cls, item in audited:
        if item.dim not in chosen:
            continue
        if item.dim not in done:
            j, rows_k = column[item.dim], [row_of[i] for i in chosen[item.dim]]
            total = sum(change[name][rows_k, j] for name in names) + 1e-12
            summary = {f"{name}_share": float(np.mean(change[name][rows_k, j] / total)) for name in names}
            area = float(np.mean([images.lung[i].sum() / images.content[i].sum() for i in chosen[item.dim]]))
            saliency = unit_saliency(gap_model, originals[rows_k], int(item.dim[1:])).mean(axis=0)
            maps[f"fold-{fold}/{item.dim}"] = (saliency / max(saliency.max(), 1e-12)).astype(np.float16)
            done[item.dim] = {**summary, "lung_area_share": area, "images": "|".join(chosen[item.dim])}
        rows.append({"fold": fold, "class": cls, "dim": item.dim, "mean_abs_shap": item.mean_abs_shap, **done[item.dim]})
    dims = pd.DataFrame(rows, columns=DIM_COLUMNS[:-1])
    dims["likely_shortcut"] = ((dims["border_share"] >= settings.shortcut_border_share)
                               | (dims["lung_share"] < settings.shortcut_lung_share)).astype(bool)
    blanked = region_blanked(model, test_ids[with_lungs], y_test[with_lungs], images, classes, fold, settings.border_fraction)
    return FoldAudit(dims, blanked, maps)


def predicted_classes(model: Any, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Direct calls in batches (model.predict retraces for every fold model it meets)."""
    out = [np.asarray(model(images[i : i + batch, ..., None], training=False)).argmax(axis=1)
           for i in range(0, len(images), batch)]
    return np.concatenate(out) if out else np.zeros(0, int)


def region_blanked(model: Any, ids: np.ndarray, y: np.ndarray, images: AuditImages, classes: list[str],
                   fold: int, border_fraction: float) -> pd.DataFrame:
    """Per class: accuracy on the fold's out-of-fold images as they are, lungs blanked, border blanked."""
    columns = ["fold", "class", "n", "accuracy", "blanked_accuracy", "border_blanked_accuracy"]
    if not len(ids):
        return pd.DataFrame(columns=columns)
    keys = [str(i) for i in ids]
    original = images.stack(keys)
    lungs_out, border_out = np.empty_like(original), np.empty_like(original)
    for k, image_id in enumerate(keys):
        versions = occluded(original[k], regions(images.lung[image_id], images.content[image_id], border_fraction))
        lungs_out[k], border_out[k] = versions["lung"], versions["border"]
    before = predicted_classes(model, original)
    lungs_after, border_after = predicted_classes(model, lungs_out), predicted_classes(model, border_out)
    rows = []
    for c, name in enumerate(classes):
        members = y == c
        if members.any():
            rows.append({"fold": fold, "class": name, "n": int(members.sum()),
                         "accuracy": float((before[members] == c).mean()),
                         "blanked_accuracy": float((lungs_after[members] == c).mean()),
                         "border_blanked_accuracy": float((border_after[members] == c).mean())})
    return pd.DataFrame(rows, columns=columns)


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
