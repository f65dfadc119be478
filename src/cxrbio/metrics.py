"""The study's metrics (Tables 1-7) and the one-vs-rest metrics beside them.

Confusion matrices here follow scikit-learn: rows are the true class, columns the predicted
class. The paper prints them transposed (rows predicted, columns actual); the tables script
transposes for display. Sensitivity and specificity of the 2-class task are those of
``positive_class`` (COVID-19) against every other class, as in the paper's equations (1)-(2).
"""

from __future__ import annotations

from typing import Any

import numpy as np
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
    result: dict[str, Any] = {
        "n": int(len(y_true)),
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else float("nan"),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)) if len(y_true) else float("nan"),
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
