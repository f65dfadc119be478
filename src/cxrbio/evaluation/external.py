"""External evaluation: a run's fold models on another data set, and the drop from internal to external.

Cross-validation scores a model on patients of the same collections it was trained on; a
hospital's fingerprint is then shared by training and test folds. An external set -- another
hospital, scanner or public collection -- is scanned with the run's own preprocessing (classes,
letterbox size, QC, label rules: the run's config) and every fold model of a strategy predicts
every image. Reported: the **ensemble** (mean of the fold models' probabilities) with the same
metrics, patient-bootstrap CIs and calibration as ``metrics/<strategy>.json``, each **fold model**
alone (mean ± SD over them), and the **drop** from the internal pooled out-of-fold figure.
Internal and external patients are disjoint and independent, so the drop's CI combines the two
bootstrap distributions (:func:`drop_intervals`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cxrbio.evaluation.bootstrap import PatientBootstrap, percentile_interval, prediction_statistics
from cxrbio.evaluation.metrics import auroc_per_class, fold_summary, paper_metrics, strategy_metrics

#: Figures compared between internal and external (key in the metrics, label).
COMPARED = {"accuracy": "7-class accuracy", "balanced_accuracy": "balanced accuracy", "macro_auroc": "macro AUROC"}


def fold_predictions(model: Any, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """(n, classes) probabilities of one fold model, in direct batched calls."""
    parts = [np.asarray(model(images[i : i + batch, ..., None].astype(np.float32), training=False))
             for i in range(0, len(images), batch)]
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, 0))


def prediction_frame(manifest: pd.DataFrame, y: np.ndarray, probabilities: np.ndarray, classes: list[str],
                     fold: int) -> pd.DataFrame:
    """Predictions in the layout ``cxrbio train`` writes (image_id, patient_id, source, fold, true, predicted, p_*)."""
    frame = pd.DataFrame({"image_id": manifest["image_id"].to_numpy(), "patient_id": manifest["patient_id"].to_numpy(),
                          "source": manifest["source"].to_numpy(), "fold": fold, "true": y,
                          "predicted": probabilities.argmax(axis=1).astype(np.int32)})
    frame["label"] = [classes[i] for i in y]
    for k, name in enumerate(classes):
        frame[f"p_{name}"] = probabilities[:, k]
    return frame


def external_metrics(per_fold: dict[int, np.ndarray], manifest: pd.DataFrame, y: np.ndarray, classes: list[str],
                     positive_class: str | None, *, resamples: int, seed: int, level: float,
                     bins: int) -> tuple[dict[str, Any], pd.DataFrame]:
    """Ensemble metrics (with CIs and calibration) and each fold model's, on one external set; and the
    ensemble's predictions (the mean of the fold models' probabilities, as fold 0)."""
    ensemble = prediction_frame(manifest, y, np.mean(list(per_fold.values()), axis=0), classes, fold=0)
    found = strategy_metrics(ensemble, classes, positive_class, {0: f"ensemble of {len(per_fold)} fold models"},
                             n_boot=resamples, seed=seed, level=level, bins=bins,
                             sources=manifest.set_index("image_id")["source"])
    models = {}
    for fold, probabilities in per_fold.items():
        predicted = probabilities.argmax(axis=1)
        entry = paper_metrics(y, predicted, classes, positive_class)
        entry["auroc"] = auroc_per_class(y, probabilities, classes)
        models[str(fold)] = entry
    found["fold_models"] = models
    found["fold_models_summary"] = fold_summary(models)
    found.pop("folds", None)
    return found, ensemble


def _draws(predictions: pd.DataFrame, classes: list[str], resamples: int, seed: int) -> dict[str, np.ndarray]:
    predictions = predictions.sort_values("image_id", kind="mergesort").reset_index(drop=True)
    y, p = predictions["true"].to_numpy(int), predictions["predicted"].to_numpy(int)
    probabilities = predictions[[f"p_{c}" for c in classes]].to_numpy(np.float64)
    boot = PatientBootstrap(predictions["patient_id"].to_numpy(), resamples, seed)
    return boot.collect(prediction_statistics(y, p, probabilities))


def drop_intervals(internal: pd.DataFrame, external: pd.DataFrame, classes: list[str], *, resamples: int, seed: int,
                   level: float) -> dict[str, list[float]]:
    """CI of internal (out-of-fold) minus external (ensemble) per figure of :data:`COMPARED`.

    The two sets hold different patients, so their resamples are independent draws (two seeds)
    and the difference of the i-th draws is a draw of the difference.
    """
    inside = _draws(internal, classes, resamples, seed)
    outside = _draws(external, classes, resamples, seed + 1)
    return {key: percentile_interval(inside[key] - outside[key], level) for key in COMPARED}
