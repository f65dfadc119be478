"""Lungs removed: retrain with the centre of every image blacked out. Is there signal outside the lungs?

Maguolo & Nanni (2021) retrained COVID-19 classifiers on chest X-rays whose centre was blacked
out and still got similar accuracy: the data sets carried their labels outside the lungs. Filling
the lungs at inference (the audit's lungs-filled accuracy) keeps the lung outline and asks only
what a model that saw lungs does without them; retraining asks what the *data* offers without
them. Here a fixed central box -- ``confounding.lungs_removed_box`` of the content's width and
height, centred on the content -- is set to 0 (the padding's black) in every image, training,
validation and test alike, and the strategy is trained again with the run's folds, seeds and
schedule (:class:`cxrbio.training.fold_trainer.FoldTrainer` with its own artifact).

The result per class is the one-vs-rest AUROC of the out-of-fold probabilities (chance 0.5) with
its patient-bootstrap CI, beside the normal model's; a class is *recognised without the lungs*
when the CI's lower bound is above 0.5. Balanced accuracy (chance 1/K) is given for the whole
model. Above chance means the data carry class signal outside the box: anatomy around the lungs
(heart size, diaphragm) or acquisition (labels, markers, exposure, frame shape).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cxrbio.evaluation.bootstrap import PatientBootstrap, percentile_interval, prediction_statistics


def central_box(content: np.ndarray, fraction: float) -> np.ndarray:
    """The centred box of ``fraction`` of the content's width and height (a bool mask of the frame)."""
    rows, cols = np.flatnonzero(content.any(axis=1)), np.flatnonzero(content.any(axis=0))
    box = np.zeros_like(content, bool)
    if not len(rows):
        return box
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    h, w = bottom - top, right - left
    bh, bw = max(1, round(h * fraction)), max(1, round(w * fraction))
    y0, x0 = top + (h - bh) // 2, left + (w - bw) // 2
    box[y0 : y0 + bh, x0 : x0 + bw] = True
    return box


def removed_images(images: Any, manifest: pd.DataFrame, size: int, fraction: float) -> np.ndarray:
    """A copy of the letterboxed images (rows in ``manifest`` order) with each one's central box set to 0."""
    from cxrbio.data.preprocess import letterbox_geometry

    out = np.array(images, dtype=np.uint8, copy=True)
    for k, (height, width) in enumerate(manifest[["height", "width"]].to_numpy()):
        box = central_box(letterbox_geometry(int(height), int(width), size).content_mask(), fraction)
        out[k][box] = 0
    return out


def variant_name(fraction: float) -> str:
    return f"lungs-removed-box-{fraction:g}"


def compare(normal: pd.DataFrame, removed: pd.DataFrame, classes: list[str], *, resamples: int, seed: int,
            level: float) -> dict[str, Any]:
    """Per class, AUROC and sensitivity of the normal and the lungs-removed models on the same images.

    Both frames are out-of-fold predictions (image_id, patient_id, true, predicted, p_<class>);
    they are aligned on image_id and resampled on the same patients.
    """
    both = normal.merge(removed, on="image_id", suffixes=("", "_removed"))
    if both.empty:
        raise ValueError("the normal and the lungs-removed predictions share no image")
    y = both["true"].to_numpy()
    boot = PatientBootstrap(both["patient_id"].to_numpy(), resamples=resamples, seed=seed)
    results = {}
    for tag, suffix in (("normal", ""), ("removed", "_removed")):
        probabilities = both[[f"p_{c}{suffix}" for c in classes]].to_numpy(np.float64)
        statistic = prediction_statistics(y, both[f"predicted{suffix}"].to_numpy(), probabilities)
        results[tag] = (statistic(np.ones((1, len(y)), np.int32)), boot.collect(statistic))
    rows = []
    for c, name in enumerate(classes):
        if not (y == c).any():
            continue
        row: dict[str, Any] = {"class": name, "images": int((y == c).sum())}
        for tag, (at, draws) in results.items():
            row[f"{tag}_auroc"] = float(at["class_auroc"][0, c])
            row[f"{tag}_auroc_ci"] = percentile_interval(draws["class_auroc"][:, c], level)
            row[f"{tag}_sensitivity"] = float(at["class_sensitivity"][0, c])
        row["recognised_without_lungs"] = bool(row["removed_auroc_ci"][0] > 0.5)
        rows.append(row)
    summary = {}
    for tag, (at, draws) in results.items():
        summary[tag] = {"balanced_accuracy": float(at["balanced_accuracy"][0]),
                        "balanced_accuracy_ci": percentile_interval(draws["balanced_accuracy"], level),
                        "macro_auroc": float(at["macro_auroc"][0]),
                        "macro_auroc_ci": percentile_interval(draws["macro_auroc"], level)}
    return {"images": len(both), "patients": int(both["patient_id"].nunique()), "chance_balanced_accuracy": 1 / len(classes),
            "per_class": rows, **summary, "bootstrap": {"unit": "patient", "resamples": resamples, "seed": seed,
                                                        "level": level}}
