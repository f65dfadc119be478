"""The study's metrics (Tables 1-7) and the one-vs-rest metrics beside them.

Confusion matrices here follow scikit-learn: rows are the true class, columns the predicted
class. The paper prints them transposed (rows predicted, columns actual); the tables script
transposes for display. Sensitivity and specificity of the 2-class task are those of
``positive_class`` (COVID-19) against every other class, as in the paper's equations (1)-(2).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score

from cxrbio.evaluation import calibration
from cxrbio.evaluation.bootstrap import PatientBootstrap, classification_statistics, percentile_interval, prediction_statistics


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else float("nan")


def binary_counts(y_true: np.ndarray, y_pred: np.ndarray, positive: int) -> dict[str, int]:
    true_pos = y_true == positive
    pred_pos = y_pred == positive
    return {
        "tp": int(np.sum(true_pos & pred_pos)),
        "fp": int(np.sum(~true_pos & pred_pos)),
        "fn": int(np.sum(true_pos & ~pred_pos)),
        "tn": int(np.sum(~true_pos & ~pred_pos)),
    }


def binary_metrics(counts: dict[str, int]) -> dict[str, float]:
    tp, fp, fn, tn = counts["tp"], counts["fp"], counts["fn"], counts["tn"]
    return {
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
    }


def paper_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str], positive_class: str | None) -> dict[str, Any]:
    """7-class accuracy, the positive-vs-rest metrics and confusion matrices, plus per-class one-vs-rest."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    labels = list(range(len(classes)))
    with warnings.catch_warnings():
        # A fold or bootstrap sample may lack a class that was predicted: expected, not news.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        balanced = float(balanced_accuracy_score(y_true, y_pred)) if len(y_true) else float("nan")
    result: dict[str, Any] = {
        "n": int(len(y_true)),
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else float("nan"),
        "balanced_accuracy": balanced,
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "per_class": {},
    }
    for index, name in enumerate(classes):
        counts = binary_counts(y_true, y_pred, index)
        result["per_class"][name] = {**counts, **binary_metrics(counts)}
    if positive_class is not None:
        counts = binary_counts(y_true, y_pred, classes.index(positive_class))
        result["positive_class"] = positive_class
        result["binary"] = {**counts, **binary_metrics(counts)}
        result["confusion_binary"] = [[counts["tp"], counts["fn"]], [counts["fp"], counts["tn"]]]
    return result


#: Scalar metrics summarised over folds and bootstrapped.
SUMMARY_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "binary_accuracy", "sensitivity", "specificity")


def auroc_per_class(y_true: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> dict[str, float]:
    """One-vs-rest AUROC per class; NaN where a class is absent or alone in the data."""
    from sklearn.metrics import roc_auc_score

    out = {}
    for i, name in enumerate(classes):
        positive = y_true == i
        out[name] = float(roc_auc_score(positive, probabilities[:, i])) if 0 < positive.sum() < len(y_true) else float("nan")
    return out


def scalar_summary(metrics: dict[str, Any]) -> dict[str, float]:
    binary = metrics.get("binary", {})
    return {
        "accuracy": metrics["accuracy"],
        "balanced_accuracy": metrics["balanced_accuracy"],
        "macro_f1": metrics["macro_f1"],
        "binary_accuracy": binary.get("accuracy", float("nan")),
        "sensitivity": binary.get("sensitivity", float("nan")),
        "specificity": binary.get("specificity", float("nan")),
    }


def _interval_table(draws: dict[str, np.ndarray], keys: tuple[str, ...], level: float) -> dict[str, list[float]]:
    return {k: percentile_interval(draws[k], level) for k in keys}


def bootstrap_ci(y_true: np.ndarray, y_pred: np.ndarray, patients: np.ndarray, classes: list[str],
                 positive_class: str | None, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, list[float]]:
    """Percentile CIs of the scalar metrics, resampling patients (not images) with replacement.

    Images of one patient are correlated; resampling images would make the intervals too narrow.
    """
    positive = classes.index(positive_class) if positive_class is not None else None
    resampled = PatientBootstrap(np.asarray(patients), n_boot, seed).collect(
        lambda w: classification_statistics(np.asarray(y_true), np.asarray(y_pred), len(classes), positive, w))
    return _interval_table(resampled, SUMMARY_KEYS, level) if resampled else {k: [float("nan")] * 2 for k in SUMMARY_KEYS}


def fold_summary(per_fold: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean (the paper's definition of its figures), SD, range and count over folds of each scalar metric.

    A fold where a metric is undefined (no positive image for a sensitivity) is left out and
    the count says so.
    """
    values = {k: np.array([scalar_summary(v)[k] for v in per_fold.values()], dtype=float) for k in SUMMARY_KEYS}
    finite = {k: v[np.isfinite(v)] for k, v in values.items()}
    return {
        "fold_mean": {k: float(v.mean()) if len(v) else float("nan") for k, v in finite.items()},
        "fold_sd": {k: float(v.std(ddof=1)) if len(v) > 1 else float("nan") for k, v in finite.items()},
        "fold_range": {k: [float(v.min()), float(v.max())] if len(v) else [float("nan")] * 2 for k, v in finite.items()},
        "fold_count": {k: int(len(v)) for k, v in finite.items()},
    }


def _probabilities(frame: pd.DataFrame, classes: list[str]) -> np.ndarray:
    return frame[[f"p_{c}" for c in classes]].to_numpy(np.float64)


def _calibration(predictions: pd.DataFrame, classes: list[str], bins: int, bootstrap: PatientBootstrap,
                 level: float, validation: pd.DataFrame | None, sources: pd.Series | None) -> dict[str, Any]:
    """Calibration of the pooled out-of-fold probabilities; temperature-scaled beside, per source when several."""
    y = predictions["true"].to_numpy(int)
    probabilities = _probabilities(predictions, classes)
    result: dict[str, Any] = {"bins": bins, "uncalibrated": calibration.calibration_summary(y, probabilities, classes, bins)}
    confidence, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == y
    brier = calibration.brier_terms(y, probabilities).sum(axis=1)
    draws = bootstrap.collect(lambda w: {"ece": calibration.weighted_ece(confidence, correct, bins, w),
                                         "brier": (w @ brier) / w.sum(axis=1)})
    result["uncalibrated"]["ci95"] = {k: percentile_interval(v, level) for k, v in draws.items()}
    scaled = None
    if validation is None or validation.empty:
        result["temperature"] = {"status": "not fitted", "reason": "no inner-validation predictions"}
    else:
        temperatures, used, notes, sizes = {}, {}, [], {}
        scaled = probabilities.copy()
        fold: Any  # pandas types rows and group keys loosely
        for fold, part in validation.groupby("fold"):
            key = str(int(fold))
            truth = part["true"].to_numpy(int)
            temperatures[key] = calibration.fit_temperature(truth, _probabilities(part, classes))
            sizes[key] = int(len(part))
            used[key] = temperatures[key]
            everything_right = bool((_probabilities(part, classes).argmax(axis=1) == truth).all())
            if everything_right or calibration.at_bound(temperatures[key]):
                # No interior optimum: with every image right the loss only falls as T -> 0.
                used[key] = 1.0
                why = "every validation image already right, so the loss has no minimum" if everything_right else \
                    f"the fit ran to the end of its range (T = {temperatures[key]:.2f})"
                notes.append(f"fold {key}: {why} ({len(part)} images); left unscaled (T = 1)")
        missing = sorted(set(predictions["fold"].astype(int)) - {int(f) for f in temperatures})
        if missing:
            result["temperature"] = {"status": "not fitted", "reason": f"no inner-validation predictions for fold(s) {missing}"}
            scaled = None
        else:
            for fold, t in used.items():
                rows = (predictions["fold"] == int(fold)).to_numpy()
                scaled[rows] = calibration.scale(probabilities[rows], t)
            result["temperature"] = {"status": "fitted", "per_fold": used, "fitted": temperatures,
                                     "validation_images": sizes, "notes": notes,
                                     "fitted_on": "each fold's inner validation patients (never its test patients)"}
            result["scaled"] = calibration.calibration_summary(y, scaled, classes, bins)
    if sources is not None and sources.nunique() > 1:
        by_source = {}
        for source in sorted(sources.astype(str).unique()):
            rows = (sources.astype(str) == source).to_numpy()
            entry = calibration.calibration_summary(y[rows], probabilities[rows], classes, bins)
            entry = {k: entry[k] for k in ("n", "ece", "brier", "log_loss", "accuracy", "mean_confidence")}
            if scaled is not None:
                entry["scaled_ece"] = calibration.expected_calibration_error(y[rows], scaled[rows], bins)
                entry["scaled_brier"] = calibration.brier_score(y[rows], scaled[rows])
            by_source[source] = entry
        result["by_source"] = by_source
    return result


def strategy_metrics(predictions: pd.DataFrame, classes: list[str], positive_class: str | None, fold_names: dict[int, str],
                     *, n_boot: int = 1000, seed: int = 0, level: float = 0.95, bins: int = 15,
                     validation: pd.DataFrame | None = None, sources: pd.Series | None = None) -> dict[str, Any]:
    """metrics/STRATEGY.json content from a strategy's out-of-fold predictions.

    ``validation``: the fold models' predictions on their inner validation patients (for
    temperature scaling); ``sources``: each prediction's source, by image_id (calibration per
    source when there are several).
    """
    predictions = predictions.sort_values("image_id", kind="mergesort").reset_index(drop=True)
    prob_columns = [f"p_{c}" for c in classes]
    per_fold = {}
    fold: Any  # pandas types rows and group keys loosely
    for fold, part in predictions.groupby("fold"):
        y, p = part["true"].to_numpy(), part["predicted"].to_numpy()
        entry = paper_metrics(y, p, classes, positive_class)
        entry["auroc"] = auroc_per_class(y, part[prob_columns].to_numpy(), classes)
        entry["name"] = fold_names.get(int(fold), f"fold {fold}")
        per_fold[str(int(fold))] = entry
    y, p = predictions["true"].to_numpy(int), predictions["predicted"].to_numpy(int)
    probabilities = _probabilities(predictions, classes)
    pooled = paper_metrics(y, p, classes, positive_class)
    pooled["auroc"] = auroc_per_class(y, probabilities, classes)
    pooled["macro_auroc"] = macro_auroc(pooled["auroc"])
    bootstrap = PatientBootstrap(predictions["patient_id"].to_numpy(), n_boot, seed)
    positive = classes.index(positive_class) if positive_class is not None else None
    draws = bootstrap.collect(prediction_statistics(y, p, probabilities, positive))
    per_class_ci = {name: {metric: percentile_interval(draws[f"class_{metric}"][:, k], level)
                           for metric in ("sensitivity", "specificity", "precision", "auroc")}
                    for k, name in enumerate(classes)}
    source_of = None if sources is None else sources.reindex(predictions["image_id"]).reset_index(drop=True)
    return {
        "classes": classes,
        "positive_class": positive_class,
        "folds": per_fold,
        "pooled": pooled,
        **fold_summary(per_fold),
        "ci95": {**_interval_table(draws, SUMMARY_KEYS, level), "macro_auroc": percentile_interval(draws["macro_auroc"], level)},
        "ci95_per_class": per_class_ci,
        "calibration": _calibration(predictions, classes, bins, bootstrap, level, validation, source_of),
        "bootstrap": {"unit": "patient", "resamples": n_boot, "seed": seed, "level": level},
    }


def macro_auroc(per_class: dict[str, float]) -> float:
    """Mean one-vs-rest AUROC over the classes where it is defined."""
    values = np.array([v for v in per_class.values() if np.isfinite(v)])
    return float(values.mean()) if len(values) else float("nan")


def nadeau_bengio_ttest(scores_a: list[float], scores_b: list[float], n_train: float, n_test: float) -> dict[str, float]:
    """Corrected resampled t-test (Nadeau & Bengio 2003) of per-fold score differences.

    Cross-validation folds share training data, so the naive paired t-test is overconfident;
    the variance is inflated by (1/k + n_test/n_train).
    """
    from scipy import stats

    d = np.asarray(scores_a, dtype=float) - np.asarray(scores_b, dtype=float)
    k = len(d)
    variance = np.var(d, ddof=1) if k > 1 else float("nan")
    corrected = (1 / k + n_test / n_train) * variance
    if not corrected > 0:
        return {"mean_difference": float(np.mean(d)), "t": float("nan"), "p": float("nan"), "folds": k}
    t = float(np.mean(d) / np.sqrt(corrected))
    return {"mean_difference": float(np.mean(d)), "t": t, "p": float(2 * stats.t.sf(abs(t), df=k - 1)), "folds": k}


def mcnemar_test(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, float]:
    """McNemar's test on paired correctness of two strategies over the same images."""
    from statsmodels.stats.contingency_tables import mcnemar

    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    table = [[int(np.sum(a & b)), int(np.sum(a & ~b))], [int(np.sum(~a & b)), int(np.sum(~a & ~b))]]
    discordant = table[0][1] + table[1][0]
    result = mcnemar(table, exact=discordant < 25)
    return {"only_a_correct": table[0][1], "only_b_correct": table[1][0], "statistic": float(result.statistic),
            "p": float(result.pvalue), "exact": bool(discordant < 25)}
