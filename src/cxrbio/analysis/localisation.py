"""Does a unit's saliency sit on the lesion? Pixel AUROC inside a reference region, against two nulls.

The pointing game of Zhang et al. (2018) divides the saliency inside the lesion by the lesion's
share of the *frame*: any map spread over the body beats that (a map even over the lungs scores
3.5-5.7x on the phantom), and its hit rate is binary, capped at 1/area. Here, per image, the
question is asked inside the region where the finding lives (the **reference**: the lungs for a
lung finding, the body for edema's enlarged heart): do the lesion's pixels carry more saliency
than the reference's other pixels? That is a pixel AUROC (0.5: no preference; a map even over
the lungs scores 0.5 whatever its size). Two nulls, each on the same images:

* the **weight-randomised model** (Adebayo et al. 2018): the same unit's map on a copy of the
  model with every weight redrawn; it shows what the input's own edges give;
* a **shuffled mask**: this image's real map scored against another image's lesion of the same
  disease, intersected with this image's reference; it shows what a map that merely favours
  where lesions tend to be (the lower zones, the periphery) gives.

Per image the three AUROCs; per candidate the patient means, bootstrapped by patient, and the
differences from each null with their CIs. A candidate **localises** when both differences'
CIs lie above 0. The energy ratio (the lesion's share of the reference's saliency over its share
of the reference's area) is kept as a secondary figure.

**Which map.** The maps are computed on the letterboxed image the network reads, at its
resolution. The pilot on the graded phantom (docs/validation.md) compared the gradient
(|d unit / d pixel|, with and without smoothing) with an **occlusion map**
(:func:`occlusion_map`: each patch in turn filled with the lungs' mean, the unit's change in the
candidate's direction, averaged over the patches covering a pixel). The gradient maps of
trained models correlated with a randomised model's as much as two randomised models' maps did
with each other (median Spearman 0.50 against 0.52) and scored a pixel AUROC of 0.44-0.59,
the randomised model's alike: they show the input's edges, not what the unit reads. The
occlusion map is made by the weights: 0.88-0.92 for edema and effusion detectors against
0.42-0.56 for the randomised model. Its resolution is the patch's (8 px at 64 px; stride 4).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
from scipy import stats

IMAGE_COLUMNS = ["image_id", "patient_id", "auroc", "auroc_random", "auroc_shuffled", "energy_ratio", "lesion_share"]


def occlusion_map(activation: Callable[[np.ndarray], np.ndarray], images: np.ndarray, fill: np.ndarray, *,
                  patch: int, stride: int, direction: int = 1, batch: int = 256) -> np.ndarray:
    """Per image (N, S, S): how much the unit falls (in ``direction``) when each patch is filled, per pixel.

    ``activation`` maps a stack of images (M, S, S) to the unit's values (M,); ``fill`` is the value
    each image's patches are filled with (N,), the lungs' mean, so a patch loses its structure and
    keeps its brightness. A pixel's value is the mean change over the patches that cover it:
    positive where hiding the pixel lowers a unit that is higher in the disease (``direction`` +1)
    or raises one that is lower (-1).
    """
    n, height, width = images.shape
    corners = [(y, x) for y in range(0, max(1, height - patch + 1), stride)
               for x in range(0, max(1, width - patch + 1), stride)]
    base = activation(images)
    heat = np.zeros(images.shape, np.float64)
    count = np.zeros(images.shape[1:], np.float64)
    for y, x in corners:
        count[y : y + patch, x : x + patch] += 1
    per_batch = max(1, batch // max(1, n))
    for start in range(0, len(corners), per_batch):
        chunk = corners[start : start + per_batch]
        versions = np.repeat(images[None], len(chunk), axis=0)
        for k, (y, x) in enumerate(chunk):
            versions[k, :, y : y + patch, x : x + patch] = fill[:, None, None]
        values = activation(versions.reshape(-1, height, width)).reshape(len(chunk), n)
        for k, (y, x) in enumerate(chunk):
            heat[:, y : y + patch, x : x + patch] += (direction * (base - values[k]))[:, None, None]
    return heat / np.maximum(count, 1)


def pixel_auroc(saliency: np.ndarray, lesion: np.ndarray, reference: np.ndarray) -> float:
    """AUROC of the saliency of the lesion's pixels against the reference's other pixels (NaN if either is empty)."""
    inside = lesion & reference
    rest = reference & ~lesion
    n1, n0 = int(inside.sum()), int(rest.sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    values = np.concatenate([saliency[inside], saliency[rest]]).astype(np.float64)
    ranks = stats.rankdata(values)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def energy_ratio(saliency: np.ndarray, lesion: np.ndarray, reference: np.ndarray) -> float:
    """The lesion's share of the reference's saliency over its share of the reference's area (1: spread evenly)."""
    inside = lesion & reference
    total, area = float(saliency[reference].sum()), float(reference.sum())
    if total <= 0 or area == 0 or not inside.any():
        return float("nan")
    return float((saliency[inside].sum() / total) / (inside.sum() / area))


def shuffled_masks(lesions: Mapping[str, np.ndarray], references: Mapping[str, np.ndarray],
                   groups: Mapping[str, str], *, seed: int, tries: int = 5) -> dict[str, np.ndarray]:
    """Per image: the lesion of another image of its group, cut to this image's reference.

    Drawn without the image itself; up to ``tries`` donors are tried until one overlaps the
    reference. An image with no such donor (a group of one) is left out, not given its own mask.
    """
    by_group: dict[str, list[str]] = {}
    for image_id in lesions:
        by_group.setdefault(groups[image_id], []).append(image_id)
    out = {}
    for image_id in lesions:
        others = [i for i in by_group[groups[image_id]] if i != image_id]
        rng = np.random.default_rng([seed, zlib.crc32(image_id.encode())])
        for donor in rng.permutation(others)[:tries] if others else []:
            mask = lesions[str(donor)] & references[image_id]
            if mask.any() and (references[image_id] & ~mask).any():
                out[image_id] = mask
                break
    return out


def image_table(ids: list[str], patients: Mapping[str, str], real: Mapping[str, np.ndarray],
                random: Mapping[str, np.ndarray], lesions: Mapping[str, np.ndarray],
                references: Mapping[str, np.ndarray], shuffled: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """One row per image: the AUROC of the real map, of the randomised model's map, and of the real map on a shuffled mask."""
    rows = []
    for image_id in ids:
        lesion, reference = lesions[image_id], references[image_id]
        rows.append({"image_id": image_id, "patient_id": patients[image_id],
                     "auroc": pixel_auroc(real[image_id], lesion, reference),
                     "auroc_random": pixel_auroc(random[image_id], lesion, reference),
                     "auroc_shuffled": (pixel_auroc(real[image_id], shuffled[image_id], reference)
                                        if image_id in shuffled else np.nan),
                     "energy_ratio": energy_ratio(real[image_id], lesion, reference),
                     "lesion_share": float((lesion & reference).sum() / max(1, reference.sum()))})
    return pd.DataFrame(rows, columns=IMAGE_COLUMNS)


def summarise(table: pd.DataFrame, *, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Patient means, and the differences from each null with patient-bootstrap CIs; ``localises`` when both lie above 0.

    Only images with all three AUROCs count (so each difference is paired). Fewer than 3
    patients: the figures are NaN and ``localises`` False, said rather than passed.
    """
    complete = table.dropna(subset=["auroc", "auroc_random", "auroc_shuffled"])
    per_patient = complete.groupby("patient_id")[["auroc", "auroc_random", "auroc_shuffled", "energy_ratio"]].mean()
    out: dict[str, float] = {"images": float(len(complete)), "patients": float(len(per_patient))}
    names = ("auroc", "auroc_random", "auroc_shuffled", "energy_ratio", "minus_random", "minus_random_low",
             "minus_random_high", "minus_shuffled", "minus_shuffled_low", "minus_shuffled_high")
    if len(per_patient) < 3:
        return out | dict.fromkeys(names, float("nan")) | {"localises": False}
    values = per_patient.to_numpy()
    differences = np.column_stack([values[:, 0] - values[:, 1], values[:, 0] - values[:, 2]])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(values), size=(resamples, len(values)))
    boot = differences[draws].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(boot, alpha, axis=0), np.quantile(boot, 1 - alpha, axis=0)
    means = values.mean(axis=0)
    out |= {"auroc": means[0], "auroc_random": means[1], "auroc_shuffled": means[2],
            "energy_ratio": float(np.nanmean(values[:, 3])),
            "minus_random": float(differences[:, 0].mean()), "minus_random_low": float(low[0]),
            "minus_random_high": float(high[0]), "minus_shuffled": float(differences[:, 1].mean()),
            "minus_shuffled_low": float(low[1]), "minus_shuffled_high": float(high[1])}
    out["localises"] = bool(low[0] > 0 and low[1] > 0)
    return out
