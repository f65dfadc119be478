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


def bootstrap_ci(y_true: np.ndarray, y_pred: np.ndarray, patients: np.ndarray, classes: list[str],
                 positive_class: str | None, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, list[float]]:
    """Percentile CIs of the scalar metrics, resampling patients (not images) with replacement.

    Images of one patient are correlated; resampling images would make the intervals too narrow.
    """
    rng = np.random.default_rng(seed)
    codes, uniques = pd.factorize(pd.Series(patients), sort=True)
    members = [np.flatnonzero(codes == k) for k in range(len(uniques))]
    draws: dict[str, list[float]] = {k: [] for k in SUMMARY_KEYS}
    for _ in range(n_boot):
        chosen = rng.integers(0, len(members), len(members))
        rows = np.concatenate([members[k] for k in chosen])
        summary = scalar_summary(paper_metrics(y_true[rows], y_pred[rows], classes, positive_class))
        for key in SUMMARY_KEYS:
            draws[key].append(summary[key])
    tail = (1 - level) / 2 * 100
    return {k: [float(np.nanpercentile(v, tail)), float(np.nanpercentile(v, 100 - tail))] if not np.all(np.isnan(v))
            else [float("nan"), float("nan")] for k, v in draws.items()}


def strategy_metrics(predictions: Any, classes: list[str], positive_class: str | None, fold_names: dict[int, str],
                     n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """metrics/STRATEGY.json content from a strategy's out-of-fold predictions."""
    prob_columns = [f"p_{c}" for c in classes]
    per_fold = {}
    for fold, part in predictions.groupby("fold"):
        y, p = part["true"].to_numpy(), part["predicted"].to_numpy()
        entry = paper_metrics(y, p, classes, positive_class)
        entry["auroc"] = auroc_per_class(y, part[prob_columns].to_numpy(), classes)
        entry["name"] = fold_names.get(int(fold), f"fold {fold}")
        per_fold[str(int(fold))] = entry
    y, p = predictions["true"].to_numpy(), predictions["predicted"].to_numpy()
    pooled = paper_metrics(y, p, classes, positive_class)
    pooled["auroc"] = auroc_per_class(y, predictions[prob_columns].to_numpy(), classes)
    fold_scalars = {k: [scalar_summary(v)[k] for v in per_fold.values()] for k in SUMMARY_KEYS}
    return {
        "classes": classes,
        "positive_class": positive_class,
        "folds": per_fold,
        "pooled": pooled,
        "fold_mean": {k: float(np.nanmean(v)) if not np.all(np.isnan(v)) else float("nan") for k, v in fold_scalars.items()},
        "fold_sd": {k: float(np.nanstd(v, ddof=1)) if np.sum(~np.isnan(v)) > 1 else float("nan") for k, v in fold_scalars.items()},
        "ci95": bootstrap_ci(y, p, predictions["patient_id"].to_numpy(), classes, positive_class, n_boot, seed),
        "bootstrap": {"unit": "patient", "resamples": n_boot, "seed": seed},
    }


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
