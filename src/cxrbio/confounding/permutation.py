"""A permutation null for a classifier's out-of-fold predictions, patient by patient.

Under the null hypothesis the out-of-fold predictions carry no information about the labels.
Training saw only other patients, so if the inputs were unrelated to the labels, the test
patients' predictions would be independent of their labels: permuting the labels against the
fixed predictions draws from the null. Labels are permuted between patient groups (a patient's
images keep one label and move together), since images of one patient are not independent.

This is the cheap form of Ojala & Garriga's (2010) label-permutation test: the classifier is
not retrained per permutation, so 1,000 permutations cost milliseconds. It tests the
association of predictions with labels, which is what "acquisition alone predicts the label"
claims.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


def one_vs_rest_balanced_accuracy(y: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes,) (sensitivity + specificity) / 2 of each class against the rest; NaN for an absent class."""
    out = np.full(n_classes, np.nan)
    for k in range(n_classes):
        positive, called = y == k, predicted == k
        if positive.any() and (~positive).any():
            out[k] = 0.5 * (np.mean(called[positive]) + np.mean(~called[~positive]))
    return out


def balanced_accuracy(y: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    """Mean recall over the classes present (scikit-learn's balanced accuracy)."""
    recalls = [np.mean(predicted[y == k] == k) for k in range(n_classes) if (y == k).any()]
    return float(np.mean(recalls)) if recalls else float("nan")


def rank_auroc(ranks: np.ndarray, positive: np.ndarray) -> float:
    """AUROC from fixed score ranks (average ranks for ties) and a positive mask: the Mann-Whitney form."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if not n_pos or not n_neg:
        return float("nan")
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass
class PermutationResult:
    """Observed balanced accuracy (overall; per class one vs rest, and AUROC from the scores), the null, p-values."""

    observed: float
    null_mean: float
    null_p95: float
    p: float
    per_class: pd.DataFrame  # class, balanced_accuracy, null_mean, null_p95, p
    permutations: int


def permutation_null(y: np.ndarray, predicted: np.ndarray, groups: np.ndarray, classes: list[str], *,
                     scores: np.ndarray | None = None, permutations: int = 1000, seed: int = 0) -> PermutationResult:
    """Balanced accuracy of ``predicted`` against ``y``, and its null by permuting labels between ``groups``.

    ``scores`` (n, classes), e.g. out-of-fold probabilities, add a per-class one-vs-rest AUROC
    and its null. p = (1 + #null >= observed) / (1 + permutations). A group with images of
    several labels moves with its most common label (rare: a patient has one diagnosis per study).
    """
    from scipy.stats import rankdata

    y, predicted = np.asarray(y, int), np.asarray(predicted, int)
    codes, _ = pd.factorize(pd.Series(groups).astype(str))
    group_label = pd.Series(y).groupby(codes).agg(lambda v: v.mode().iloc[0]).to_numpy()
    n_classes = len(classes)
    observed = balanced_accuracy(y, predicted, n_classes)
    observed_class = one_vs_rest_balanced_accuracy(y, predicted, n_classes)
    ranks = [rankdata(scores[:, k]) for k in range(n_classes)] if scores is not None else []

    def aurocs(labels: np.ndarray) -> np.ndarray:
        return np.array([rank_auroc(ranks[k], labels == k) for k in range(n_classes)]) if ranks else np.full(n_classes, np.nan)

    observed_auroc = aurocs(y)
    rng = np.random.default_rng(seed)
    null = np.empty(permutations)
    null_class = np.empty((permutations, n_classes))
    null_auroc = np.empty((permutations, n_classes))
    for b in range(permutations):
        permuted = rng.permutation(group_label)[codes]
        null[b] = balanced_accuracy(permuted, predicted, n_classes)
        null_class[b] = one_vs_rest_balanced_accuracy(permuted, predicted, n_classes)
        null_auroc[b] = aurocs(permuted)

    def p_values(observed_: np.ndarray, null_: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            p = (1 + np.sum(null_ >= observed_, axis=0)) / (1 + permutations)
        return np.where(np.isfinite(observed_), p, np.nan)

    def summary(values: np.ndarray, q: float | None) -> np.ndarray:
        finite = np.isfinite(values)
        out = np.full(values.shape[1], np.nan)
        for k in range(values.shape[1]):
            if finite[:, k].any():
                out[k] = np.percentile(values[finite[:, k], k], q) if q is not None else values[finite[:, k], k].mean()
        return out

    per_class = pd.DataFrame({"class": classes, "balanced_accuracy": observed_class,
                              "null_mean": summary(null_class, None), "null_p95": summary(null_class, 95),
                              "p": p_values(observed_class, null_class),
                              "auroc": observed_auroc, "auroc_null_p95": summary(null_auroc, 95),
                              "auroc_p": p_values(observed_auroc, null_auroc)})
    return PermutationResult(observed, float(np.mean(null)), float(np.percentile(null, 95)),
                             float((1 + np.sum(null >= observed)) / (1 + permutations)), per_class, permutations)
