"""Shortcut audit: does a dim read the patient, or something outside the body?

Shortcuts live outside the body: letterbox padding, air, collimation, burned-in text and side
markers. The heart, the diaphragm, the chest wall and pleural fluid lie outside the lungs but are
disease evidence, so the audit splits each letterboxed frame into three regions:

* ``lung``: the lung mask (given, ground truth, or a segmentation that passed QC);
* ``body``: the rest of the body mask (given, or :func:`cxrbio.features.lungseg.segment_body`);
* ``outside``: the image content outside the body (air, labels, markers, collimation).

The letterbox padding is outside the body too but is never occluded: training always saw 0
there, so it keeps 0 (its shape is an acquisition property, measured by the acquisition
baseline, docs/confounding.md). Images without a real lung mask or without a body mask are not
audited.

For each audited dim (the top ``audit_dims`` per fold and class) and its ``audit_images`` most
activating out-of-fold images, **occlusion**: each region in turn is filled (:data:`FILL`: lungs
and body with their mean, the outside with its median, the air value, so labels and markers
vanish) and the absolute change of the dim's activation measured. Raw shares (a region's change over the sum of the three) grow with
a region's area, so each is divided by the region's share of the content: the **density** is 1
for every region when the dim is equally sensitive everywhere. The **control** is an
equal-area random region: ``audit_controls`` random blobs per image, each with the pixel count of
that image's outside region, filled the same way. A dim is flagged ``likely shortcut`` when its
change from occluding the outside reaches ``shortcut_margin`` times the mean change from the
random regions (``outside_ratio``). The same figures on ``audit_images`` random images of the
fold (``random_outside_ratio``) show whether the behaviour is general or confined to the images
the dim likes.

**Outside swap** (a counterfactual beside the occlusion): filling the outside with its median is
nearly a no-op on air, so occlusion only sees high-contrast overlays. Instead the outside of each
audited image is replaced by that of a **donor** of the same fold: an image of another source
(another class where the fold has one source), at the same positions (where the donor has body,
the donor's air value). The control regions follow the same rule: equal-area random regions take
the donor's pixels. The change is measured where a shortcut would act, on the **class logit**
(the log-odds of the dim's class): ``swap_ratio`` is the mean change from swapping the outside
over the mean change from swapping the control regions, flagged ``swap_flagged`` at the same
``shortcut_margin``. Per class, the accuracy with the outside swapped is reported beside the
lungs- and outside-filled accuracies.

**Saliency sanity check** (Adebayo et al., 2018): the gradient maps kept for the report's gallery
are recomputed on a copy of the fold model with every weight re-initialised; a map whose
Spearman correlation with its randomised twin reaches ``sanity_max_rho`` depends on the input
more than on what the model learnt, and is marked ``map_unreliable``.

Two class-level tests on every out-of-fold image with both masks: **lungs blanked** and **outside
blanked** (the region filled as above): a class whose accuracy survives without lungs, or
collapses without the outside, is recognised from something other than the lungs.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage, stats

from cxrbio.features.lung_masks import ANATOMICAL
from cxrbio.models.layers import GAP_LAYER

REAL_MASKS = ANATOMICAL
REGIONS = ("lung", "body", "outside")
#: How each region is occluded. Lungs and body keep their mean intensity and lose their structure; the
#: outside (mostly air) takes its median, the air value, so labels and markers vanish instead of turning
#: grey; the random control regions are filled like the outside they stand in for. Letterbox padding
#: is never occluded and keeps 0, as in training.
FILL = {"lung": "mean", "body": "mean", "outside": "median", "control": "median"}
DIM_COLUMNS = ["fold", "class", "dim", "mean_abs_shap",
               *(f"{r}_share" for r in REGIONS), *(f"{r}_area" for r in REGIONS), *(f"{r}_density" for r in REGIONS),
               "outside_change", "control_change", "outside_ratio", "random_outside_ratio",
               "swap_change", "swap_control_change", "swap_ratio", "swap_flagged",
               "map_rho", "map_unreliable", "images", "mask_sources", "body_sources", "likely_shortcut"]
MODEL_COLUMNS = ["fold", "class", "n", "accuracy", "lungs_blanked_accuracy", "outside_blanked_accuracy",
                 "outside_swapped_accuracy"]
#: Per audited out-of-fold image: whether it was classified correctly as it is and in each counterfactual.
PREDICTION_COLUMNS = ["fold", "image_id", "class", "correct", "lungs_blanked_correct", "outside_blanked_correct",
                      "outside_swapped_correct"]
VERDICT_COLUMNS = ["class", "patients", "accuracy", "lungs_blanked_accuracy", "lungs_drop", "lungs_drop_low",
                   "lungs_drop_high", "outside_blanked_accuracy", "outside_drop", "outside_drop_low", "outside_drop_high",
                   "outside_swapped_accuracy", "swap_drop", "swap_drop_low", "swap_drop_high", "reading", "sentence"]
#: How a class is read, from its accuracy with the lungs filled (:func:`occlusion_verdicts`).
FROM_LUNGS, OUTSIDE_LUNGS, UNDETERMINED = "needs its lungs", "read from outside the lungs", "undetermined"


def regions(lung: np.ndarray, body: np.ndarray, content: np.ndarray) -> dict[str, np.ndarray]:
    """The three disjoint regions of one frame (padding belongs to none: it is never occluded)."""
    lung = lung & content
    body = body & content & ~lung
    return {"lung": lung, "body": body, "outside": content & ~lung & ~body}


def region_areas(parts: dict[str, np.ndarray], content: np.ndarray) -> dict[str, float]:
    """Each region's share of the image content."""
    total = max(1, int(content.sum()))
    return {name: float(mask.sum()) / total for name, mask in parts.items()}


def densities(shares: dict[str, float], areas: dict[str, float]) -> dict[str, float]:
    """Share of the evidence over share of the area: 1 everywhere for a dim equally sensitive everywhere."""
    return {name: (shares[name] / areas[name] if areas[name] > 0 else np.nan) for name in shares}


def random_regions(content: np.ndarray, area: int, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` random blobs inside ``content``, each of exactly ``area`` pixels (smoothed noise, top pixels)."""
    if area <= 0 or not content.any():
        return []
    inside = np.flatnonzero(content.ravel())
    area = min(area, len(inside))
    sigma = max(1.0, content.shape[0] / 12)
    out = []
    for _ in range(count):
        noise = ndimage.gaussian_filter(rng.standard_normal(content.shape), sigma).ravel()[inside]
        chosen = inside[np.argpartition(-noise, area - 1)[:area]]
        blob = np.zeros(content.size, bool)
        blob[chosen] = True
        out.append(blob.reshape(content.shape))
    return out


def filled(image: np.ndarray, mask: np.ndarray, how: str) -> np.ndarray:
    """``image`` with ``mask`` set to the mean or median of its pixels (:data:`FILL`)."""
    version = image.copy()
    if mask.any():
        version[mask] = np.median(image[mask]) if how == "median" else image[mask].mean()
    return version


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
    """The letterboxed images of the run with their lung, body and content masks, by image id.

    Only images with a real lung mask and a body mask are in ``lung`` and ``body``; ``sources``
    says where each image's lung and body masks came from (results are reported by mask source).
    """

    images: Any  # (N, S, S) uint8, memory-mapped
    row: dict[str, int]
    lung: dict[str, np.ndarray]  # image_id -> bool mask, real lung masks only
    content: dict[str, np.ndarray]
    body: dict[str, np.ndarray] = field(default_factory=dict)  # image_id -> bool mask, lungs included
    sources: dict[str, tuple[str, str]] = field(default_factory=dict)  # image_id -> (lung source, body source)
    acquisition: dict[str, str] = field(default_factory=dict)  # image_id -> acquisition source (the donor rule)

    def stack(self, ids: list[str]) -> np.ndarray:
        return np.stack([np.asarray(self.images[self.row[i]]) for i in ids]).astype(np.float32)

    def audited(self, image_id: str) -> bool:
        return image_id in self.lung and image_id in self.body

    def parts(self, image_id: str) -> dict[str, np.ndarray]:
        return regions(self.lung[image_id], self.body[image_id], self.content[image_id])


def load_audit_images(run: Any, config: Any, manifest: pd.DataFrame) -> AuditImages:
    """``manifest``: included rows indexed by image_id, with mask_source (and body_source)."""
    from cxrbio.data.preprocess import letterbox_geometry
    from cxrbio.features.lung_masks import NO_MASK
    from cxrbio.run.mask_files import read_body_mask, read_mask
    from cxrbio.training.data import load_training_data

    data = load_training_data(run, config, cache="disk")
    row = {image_id: i for i, image_id in enumerate(data.manifest["image_id"])}
    size = config.data.image_size
    lung: dict[str, np.ndarray] = {}
    content: dict[str, np.ndarray] = {}
    body: dict[str, np.ndarray] = {}
    sources: dict[str, tuple[str, str]] = {}
    image_id: str
    for image_id, item in manifest.iterrows():  # type: ignore[assignment]  # the index holds image ids
        content[image_id] = letterbox_geometry(int(item["height"]), int(item["width"]), size).content_mask()
        lung_source, body_source = item.get("mask_source"), item.get("body_source", NO_MASK)
        if lung_source not in REAL_MASKS:
            continue
        mask = read_mask(run, image_id)
        if mask is None:
            continue
        lung[image_id] = mask & content[image_id]
        outline = read_body_mask(run, image_id) if body_source != NO_MASK else None
        if outline is not None:
            body[image_id] = (outline | lung[image_id]) & content[image_id]
            sources[image_id] = (str(lung_source), str(body_source))
    acquisition = {str(i): str(v) for i, v in manifest["source"].items()} if "source" in manifest else {}
    return AuditImages(data.images, row, lung, content, body, sources, acquisition)


@dataclass
class FoldAudit:
    dims: pd.DataFrame  # DIM_COLUMNS
    model: pd.DataFrame  # MODEL_COLUMNS
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # "fold-<k>/<dim>" -> mean saliency (S, S) float16
    predictions: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PREDICTION_COLUMNS))


def activations(gap_model: Any, images: np.ndarray, batch: int = 64) -> np.ndarray:
    parts = [np.asarray(gap_model(images[i : i + batch, ..., None], training=False)) for i in range(0, len(images), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, 0))


@dataclass
class Occlusion:
    """Per image (rows) and dim (columns): the change of every GAP unit when each region is filled."""

    change: dict[str, np.ndarray]  # region -> (M, D)
    control: np.ndarray  # (M, D): mean change over the equal-area random regions
    areas: dict[str, np.ndarray]  # region -> (M,)
    row: dict[str, int]


def occlude(gap_model: Any, ids: list[str], images: AuditImages, controls: int, seed: int) -> Occlusion:
    """Fill each region, and ``controls`` equal-area random regions, in every image; one forward pass per version."""
    originals = images.stack(ids) if ids else np.zeros((0,) + tuple(images.images.shape[1:]), np.float32)
    versions = {name: np.empty_like(originals) for name in REGIONS}
    areas = {name: np.zeros(len(ids)) for name in REGIONS}
    random_versions = np.empty((controls,) + originals.shape, np.float32)
    for k, image_id in enumerate(ids):
        parts = images.parts(image_id)
        for name, area in region_areas(parts, images.content[image_id]).items():
            areas[name][k] = area
        for name, mask in parts.items():
            versions[name][k] = filled(originals[k], mask, FILL[name])
        rng = np.random.default_rng([seed, zlib.crc32(image_id.encode())])
        blobs = random_regions(images.content[image_id], int(parts["outside"].sum()), controls, rng)
        for c in range(controls):
            random_versions[c, k] = filled(originals[k], blobs[c], FILL["control"]) if blobs else originals[k]
    base = activations(gap_model, originals)
    change = {name: np.abs(base - activations(gap_model, versions[name])) for name in REGIONS}
    control = (np.mean([np.abs(base - activations(gap_model, random_versions[c])) for c in range(controls)], axis=0)
               if controls and len(ids) else np.zeros_like(base))
    return Occlusion(change, control, areas, {image_id: k for k, image_id in enumerate(ids)})


def dim_figures(occlusion: Occlusion, ids: list[str], j: int) -> dict[str, float]:
    """One dim's occlusion figures over some images: shares, areas, densities and the random-region ratio."""
    rows = [occlusion.row[i] for i in ids]
    change = {name: occlusion.change[name][rows, j] for name in REGIONS}
    total = sum(change.values()) + 1e-12
    shares = {name: float(np.mean(change[name] / total)) for name in REGIONS}
    areas = {name: float(np.mean(occlusion.areas[name][rows])) for name in REGIONS}
    outside, control = float(np.mean(change["outside"])), float(np.mean(occlusion.control[rows, j]))
    has_outside = areas["outside"] > 0
    ratio = outside / control if has_outside and control > 1e-9 else np.nan
    return {**{f"{n}_share": v for n, v in shares.items()}, **{f"{n}_area": v for n, v in areas.items()},
            **{f"{n}_density": v for n, v in densities(shares, areas).items()},
            "outside_change": outside, "control_change": control, "outside_ratio": ratio}


def donors(ids: list[str], pool: list[str], labels: dict[str, int], images: AuditImages, seed: int) -> dict[str, str]:
    """Per image, a donor from ``pool``: of another acquisition source where the pool has one, else of another class."""
    out = {}
    for image_id in ids:
        source = images.acquisition.get(image_id, "")
        others = [i for i in pool if images.acquisition.get(i, "") != source] or \
            [i for i in pool if labels[i] != labels[image_id]]
        if others:
            rng = np.random.default_rng([seed, zlib.crc32(image_id.encode())])
            out[image_id] = others[int(rng.integers(len(others)))]
    return out


def transplanted(image: np.ndarray, region: np.ndarray, donor: np.ndarray, donor_outside: np.ndarray) -> np.ndarray:
    """``image`` with ``region`` taken from ``donor`` at the same positions; where the donor has body there, its air value."""
    version = image.copy()
    if region.any():
        version[region] = donor[region]
        inside_donor = region & ~donor_outside
        if inside_donor.any() and donor_outside.any():
            version[inside_donor] = np.median(donor[donor_outside])
    return version


def log_odds(probabilities: np.ndarray) -> np.ndarray:
    p = np.clip(probabilities.astype(np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


@dataclass
class Swap:
    """Per image (rows) and class (columns): the change of the class log-odds when the outside, or a control region, is swapped."""

    change: np.ndarray  # (M, C)
    control: np.ndarray  # (M, C): mean over the equal-area random regions
    row: dict[str, int]


def swap_outside(model: Any, ids: list[str], pool: list[str], labels: dict[str, int], images: AuditImages,
                 controls: int, seed: int) -> Swap:
    """Swap each image's outside (and ``controls`` equal-area random regions) for its donor's pixels; one pass per version.

    ``pool``: the fold's audited images the donors are drawn from; ``labels``: their class indices.
    """
    pairs = donors(ids, pool, labels, images, seed)
    kept = [i for i in ids if i in pairs]
    if not kept:
        return Swap(np.zeros((0, 0)), np.zeros((0, 0)), {})
    originals = images.stack(kept)
    swapped = np.empty_like(originals)
    random_versions = np.empty((controls,) + originals.shape, np.float32)
    for k, image_id in enumerate(kept):
        donor_id = pairs[image_id]
        donor = images.stack([donor_id])[0]
        donor_outside = images.parts(donor_id)["outside"]
        outside = images.parts(image_id)["outside"]
        swapped[k] = transplanted(originals[k], outside, donor, donor_outside)
        rng = np.random.default_rng([seed, zlib.crc32(image_id.encode()), 1])
        blobs = random_regions(images.content[image_id], int(outside.sum()), controls, rng)
        for c in range(controls):
            random_versions[c, k] = transplanted(originals[k], blobs[c], donor, donor_outside) if blobs else originals[k]
    base = log_odds(class_probabilities(model, originals))
    change = np.abs(base - log_odds(class_probabilities(model, swapped)))
    control = np.mean([np.abs(base - log_odds(class_probabilities(model, random_versions[c]))) for c in range(controls)],
                      axis=0) if controls else np.zeros_like(base)
    return Swap(change, control, {image_id: k for k, image_id in enumerate(kept)})


def swap_figures(swap: Swap, ids: list[str], c: int, margin: float) -> dict[str, float]:
    """One class's swap figures over some images (NaN where none had a donor)."""
    rows = [swap.row[i] for i in ids if i in swap.row]
    if not rows:
        return {"swap_change": np.nan, "swap_control_change": np.nan, "swap_ratio": np.nan, "swap_flagged": False}
    change, control = float(np.mean(swap.change[rows, c])), float(np.mean(swap.control[rows, c]))
    ratio = change / control if control > 1e-9 else np.nan
    return {"swap_change": change, "swap_control_change": control, "swap_ratio": ratio,
            "swap_flagged": bool(np.isfinite(ratio) and ratio >= margin)}


def class_probabilities(model: Any, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """The classifier's output in batches (direct calls: model.predict retraces for every fold model)."""
    parts = [np.asarray(model(images[i : i + batch, ..., None], training=False)) for i in range(0, len(images), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, 0))


def randomised_copy(model: Any, seed: int) -> Any:
    """The model's architecture with every weight drawn afresh from its initialiser (Adebayo et al.'s cascade, at once).

    Pass the model whose output is wanted (the GAP sub-model): layers without weights are shared
    with the original, so the copy's own output is the only safe handle on their nodes.
    """
    import keras

    def fresh(layer: Any) -> Any:
        # Layers without weights have nothing to randomise and are reused as they are (a Lambda
        # holding a closure cannot be rebuilt from its config).
        rebuild = layer.weights or isinstance(layer, keras.layers.InputLayer)
        return layer.__class__.from_config(layer.get_config()) if rebuild else layer

    keras.utils.set_random_seed(seed)
    return keras.models.clone_model(model, clone_function=fresh)


def map_similarity(real: np.ndarray, random: np.ndarray, content: np.ndarray) -> float:
    """Spearman correlation of two saliency maps over the image content (NaN for a constant map)."""
    a, b = real[content].astype(np.float64), random[content].astype(np.float64)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return np.nan
    return float(stats.spearmanr(a, b).statistic)


def _joined(values: list[str]) -> str:
    return "|".join(sorted(set(values)))


def audit_fold(model: Any, fold: int, test_ids: np.ndarray, test: np.ndarray, y_test: np.ndarray, dim_names: list[str],
               candidates: pd.DataFrame, images: AuditImages, classes: list[str], settings: Any) -> FoldAudit:
    """``candidates``: rows (class, dim, mean_abs_shap) of this fold, best first per class."""
    import keras

    gap_model = keras.Model(model.inputs[0], model.get_layer(GAP_LAYER).output)  # one tensor in, not a list
    random_gap = None
    audited_ok = np.array([images.audited(str(i)) for i in test_ids], bool)
    pool = np.flatnonzero(audited_ok)
    column = {d: j for j, d in enumerate(dim_names)}
    audited: list[tuple[str, Any]] = [(str(cls), item) for cls, part in candidates.groupby("class", sort=False)
                                      for item in part.head(settings.audit_dims).itertuples()]
    chosen = {item.dim: [str(i) for i in test_ids[pool[np.argsort(-test[pool, column[item.dim]])[: settings.audit_images]]]]
              for _, item in audited} if len(pool) else {}
    rng = np.random.default_rng([settings.seed, fold])
    random_ids = [str(i) for i in test_ids[np.sort(rng.choice(pool, min(len(pool), settings.audit_images), replace=False))]] \
        if len(pool) else []
    needed = sorted({i for ids in chosen.values() for i in ids} | set(random_ids))
    occlusion = occlude(gap_model, needed, images, settings.audit_controls, settings.seed)
    labels = {str(i): int(c) for i, c in zip(test_ids, y_test)}
    swap = swap_outside(model, needed, [str(i) for i in test_ids[pool]], labels, images, settings.audit_controls,
                        settings.seed)
    rows, maps, done = [], {}, {}
    for cls, item in audited:
        if item.dim not in chosen:
            continue
        if item.dim not in done:
            j, ids = column[item.dim], chosen[item.dim]
            figures = dim_figures(occlusion, ids, j)
            figures["random_outside_ratio"] = dim_figures(occlusion, random_ids, j)["outside_ratio"]
            stack = images.stack(ids)
            saliency = unit_saliency(gap_model, stack, int(item.dim[1:])).mean(axis=0)
            if random_gap is None:
                random_gap = randomised_copy(gap_model, settings.seed + fold)
            twin = unit_saliency(random_gap, stack, int(item.dim[1:])).mean(axis=0)
            rho = map_similarity(saliency, twin, np.logical_or.reduce([images.content[i] for i in ids]))
            maps[f"fold-{fold}/{item.dim}"] = (saliency / max(saliency.max(), 1e-12)).astype(np.float16)
            swapped = swap_figures(swap, ids, classes.index(cls), settings.shortcut_margin)
            done[item.dim] = {**figures, **swapped, "map_rho": rho, "map_unreliable": bool(rho >= settings.sanity_max_rho),
                              "images": "|".join(ids),
                              "mask_sources": _joined([images.sources[i][0] for i in ids]),
                              "body_sources": _joined([images.sources[i][1] for i in ids])}
        rows.append({"fold": fold, "class": cls, "dim": item.dim, "mean_abs_shap": item.mean_abs_shap, **done[item.dim]})
    dims = pd.DataFrame(rows, columns=DIM_COLUMNS[:-1])
    dims["likely_shortcut"] = (dims["outside_ratio"] >= settings.shortcut_margin).astype(bool)
    blanked, predictions = region_blanked(model, test_ids[audited_ok], y_test[audited_ok], images, classes, fold)
    return FoldAudit(dims, blanked, maps, predictions)


def predicted_classes(model: Any, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """The predicted class per image (:func:`class_probabilities`' argmax)."""
    probabilities = class_probabilities(model, images, batch)
    return probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, int)


def region_blanked(model: Any, ids: np.ndarray, y: np.ndarray, images: AuditImages, classes: list[str],
                   fold: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per class: accuracy on the fold's audited out-of-fold images as they are, lungs filled, outside filled,
    outside swapped; and per image whether each was right (:data:`PREDICTION_COLUMNS`)."""
    if not len(ids):
        return pd.DataFrame(columns=MODEL_COLUMNS), pd.DataFrame(columns=PREDICTION_COLUMNS)
    keys = [str(i) for i in ids]
    original = images.stack(keys)
    lungs_out, outside_out, swapped = np.empty_like(original), np.empty_like(original), original.copy()
    pairs = donors(keys, keys, {i: int(c) for i, c in zip(keys, y)}, images, fold)
    for k, image_id in enumerate(keys):
        parts = images.parts(image_id)
        lungs_out[k] = filled(original[k], parts["lung"], FILL["lung"])
        outside_out[k] = filled(original[k], parts["outside"], FILL["outside"])
        if image_id in pairs:
            donor_id = pairs[image_id]
            swapped[k] = transplanted(original[k], parts["outside"], images.stack([donor_id])[0],
                                      images.parts(donor_id)["outside"])
    before = predicted_classes(model, original)
    lungs_after, outside_after = predicted_classes(model, lungs_out), predicted_classes(model, outside_out)
    swapped_after = predicted_classes(model, swapped)
    rows = []
    for c, name in enumerate(classes):
        members = y == c
        if members.any():
            rows.append({"fold": fold, "class": name, "n": int(members.sum()),
                         "accuracy": float((before[members] == c).mean()),
                         "lungs_blanked_accuracy": float((lungs_after[members] == c).mean()),
                         "outside_blanked_accuracy": float((outside_after[members] == c).mean()),
                         "outside_swapped_accuracy": float((swapped_after[members] == c).mean())})
    predictions = pd.DataFrame({"fold": fold, "image_id": keys, "class": [classes[int(c)] for c in y],
                                "correct": before == y, "lungs_blanked_correct": lungs_after == y,
                                "outside_blanked_correct": outside_after == y, "outside_swapped_correct": swapped_after == y})
    return pd.DataFrame(rows, columns=MODEL_COLUMNS), predictions


def occlusion_verdicts(predictions: pd.DataFrame, patients: pd.Series, *, margin: float, resamples: int,
                       level: float, seed: int) -> pd.DataFrame:
    """Per class: accuracy as is and in each counterfactual, the drops with patient-bootstrap CIs, and the reading in words.

    ``patients``: image_id -> patient_id. A class **needs its lungs** when filling them lowers its
    accuracy (the drop's CI above 0); it is **read from outside the lungs** when the drop's CI lies
    below ``margin`` (its accuracy barely moves without the lungs: at most ``margin`` lower, with
    confidence) while it is recognised at all (its accuracy's CI above chance, 1 / classes);
    otherwise undetermined (a class the model does not recognise has no reading to locate).
    """
    rows = []
    rng = np.random.default_rng(seed)
    alpha = (1 - level) / 2
    chance = 1 / max(1, predictions["class"].nunique()) if len(predictions) else np.nan
    for name, part in predictions.groupby("class", sort=False):
        by_patient = part.assign(patient=patients.reindex(part["image_id"]).to_numpy()).groupby("patient")
        sums = by_patient[["correct", "lungs_blanked_correct", "outside_blanked_correct",
                           "outside_swapped_correct"]].sum().to_numpy(float)
        counts = by_patient.size().to_numpy(float)
        accuracy = sums.sum(axis=0) / counts.sum()
        draws = rng.integers(0, len(counts), size=(resamples, len(counts)))
        boot = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)[:, None]
        drops = boot[:, :1] - boot[:, 1:]
        low, high = np.quantile(drops, alpha, axis=0), np.quantile(drops, 1 - alpha, axis=0)
        drop = accuracy[0] - accuracy[1:]
        recognised = np.quantile(boot[:, 0], alpha) > chance  # the class's own accuracy above chance, with confidence
        if low[0] > 0:
            reading = FROM_LUNGS
        elif high[0] < margin and recognised:
            reading = OUTSIDE_LUNGS
        else:
            reading = UNDETERMINED
        sentence = (f"{name} {reading}: accuracy {accuracy[0]:.2f}, {accuracy[1]:.2f} with its lungs filled (drop "
                    f"{drop[0]:+.2f} [{low[0]:+.2f}, {high[0]:+.2f}], {len(counts)} patients), {accuracy[2]:.2f} with "
                    f"the outside of the body filled, {accuracy[3]:.2f} with it swapped for another image's")
        rows.append({"class": name, "patients": len(counts), "accuracy": accuracy[0],
                     "lungs_blanked_accuracy": accuracy[1], "lungs_drop": drop[0], "lungs_drop_low": low[0],
                     "lungs_drop_high": high[0], "outside_blanked_accuracy": accuracy[2], "outside_drop": drop[1],
                     "outside_drop_low": low[1], "outside_drop_high": high[1], "outside_swapped_accuracy": accuracy[3],
                     "swap_drop": drop[2], "swap_drop_low": low[2], "swap_drop_high": high[2], "reading": reading,
                     "sentence": sentence})
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


def shortcut_scores(dims: pd.DataFrame) -> pd.DataFrame:
    """Per (fold, class) and per fold: the share of the audited SHAP mass on dims flagged likely shortcut."""
    columns = ["fold", "class", "shortcut_score", "flagged_dims", "audited_dims"]
    if dims.empty:
        return pd.DataFrame(columns=columns)
    scored = ["mean_abs_shap", "likely_shortcut"]

    def score(part: pd.DataFrame) -> pd.Series:
        weights = part["mean_abs_shap"].clip(lower=1e-12)
        return pd.Series({"shortcut_score": float(np.average(part["likely_shortcut"].astype(float), weights=weights)),
                          "flagged_dims": int(part["likely_shortcut"].sum()), "audited_dims": len(part)})

    per_class = dims.groupby(["fold", "class"])[scored].apply(score).reset_index()
    per_fold = dims.groupby("fold")[scored].apply(score).reset_index().assign(**{"class": "(model)"})
    return pd.concat([per_class, per_fold], ignore_index=True)[columns]


def flagged_by_source(dims: pd.DataFrame) -> pd.DataFrame:
    """Audited and flagged dims, and unreliable maps, per lung-mask and body-mask source of their images."""
    columns = ["mask_sources", "body_sources", "audited", "flagged", "flagged_share", "unreliable_maps"]
    if dims.empty:
        return pd.DataFrame(columns=columns)
    unique = dims.drop_duplicates(["fold", "dim"])
    table = (unique.groupby(["mask_sources", "body_sources"])
             .agg(audited=("dim", "size"), flagged=("likely_shortcut", "sum"), unreliable_maps=("map_unreliable", "sum"))
             .reset_index())
    table["flagged_share"] = table["flagged"] / table["audited"]
    return table[columns]
