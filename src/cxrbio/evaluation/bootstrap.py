"""The patient-cluster bootstrap, as weights: every CI and paired difference in cxrbio's metrics.

Images of one patient are correlated (several views, follow-ups, near-duplicates), so a
resample draws *patients* with replacement and every image of a drawn patient comes along, as
many times as its patient was drawn. Written as a (resamples x images) matrix of integer
weights, one resample is a weighted copy of the data: the metrics below are weighted sums,
vectorised over resamples, so 1,000 resamples of 4,000 images and 7 classes take well under
a second, and two strategies compared on the same weights are compared on the same patients
(paired differences; :mod:`cxrbio.evaluation.comparisons`).

Every weighted statistic here equals the unweighted statistic of the data with each image
repeated ``weight`` times (tests check this against scikit-learn on replicated rows).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Resamples per weight matrix: bounds memory (chunk x images int32) for large data sets.
CHUNK = 100


@dataclass(frozen=True)
class PatientBootstrap:
    """Seeded patient-cluster resamples of a fixed, ordered set of images.

    ``patients`` gives each image's patient (or any cluster key, e.g. the fold group that
    joins near-duplicates). The same patients, resamples and seed give the same weights,
    whatever the chunking, so each strategy's intervals and their paired differences are
    computed on one set of draws.
    """

    patients: np.ndarray
    resamples: int = 1000
    seed: int = 0

    @property
    def codes(self) -> np.ndarray:
        codes, _ = pd.factorize(pd.Series(self.patients).astype(str), sort=True)
        return codes

    def weights(self, chunk: int = CHUNK) -> Iterator[np.ndarray]:
        """(b, n_images) int32 weight matrices, b <= chunk, ``resamples`` rows in all."""
        codes = self.codes
        n_patients = int(codes.max()) + 1 if len(codes) else 0
        rng = np.random.default_rng(self.seed)
        left = self.resamples
        while left > 0 and n_patients:
            b = min(chunk, left)
            drawn = rng.integers(0, n_patients, size=(b, n_patients))
            offsets = (drawn + n_patients * np.arange(b)[:, None]).ravel()
            counts = np.bincount(offsets, minlength=b * n_patients).reshape(b, n_patients).astype(np.int32)
            yield counts[:, codes]
            left -= b

    def collect(self, statistic: Callable[[np.ndarray], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Apply ``statistic`` (weights -> {name: (b, ...) array}) to every chunk; concatenated."""
        parts: dict[str, list[np.ndarray]] = {}
        for weights in self.weights():
            for name, values in statistic(weights).items():
                parts.setdefault(name, []).append(values)
        return {name: np.concatenate(values, axis=0) for name, values in parts.items()}


def percentile_interval(draws: np.ndarray, level: float = 0.95) -> list[float]:
    """Percentile interval of bootstrap draws (NaN draws, e.g. a resample without a class, left out)."""
    finite = np.asarray(draws, dtype=float)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return [float("nan"), float("nan")]
    tail = (1 - level) / 2 * 100
    return [float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))]


def _row_mean(values: np.ndarray) -> np.ndarray:
    """Mean of each row's finite entries; NaN for a row with none (no warning)."""
    finite = np.isfinite(values)
    return _divide(np.where(finite, values, 0.0).sum(axis=1), finite.sum(axis=1))


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Weighted one-vs-rest counts per class: tp, fp, fn, tn as (b, n_classes) arrays."""
    truth = np.eye(n_classes, dtype=np.float64)[y_true]
    predicted = np.eye(n_classes, dtype=np.float64)[y_pred]
    w = weights.astype(np.float64)
    tp = w @ (truth * predicted)
    support = w @ truth
    called = w @ predicted
    total = w.sum(axis=1, keepdims=True)
    return {"tp": tp, "fn": support - tp, "fp": called - tp, "tn": total - support - called + tp}


def classification_statistics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, positive: int | None,
                              weights: np.ndarray) -> dict[str, np.ndarray]:
    """The scalar metrics of :data:`cxrbio.evaluation.metrics.SUMMARY_KEYS` and per-class rates, per resample.

    Definitions follow scikit-learn, as :func:`cxrbio.evaluation.metrics.paper_metrics` does: balanced
    accuracy averages recall over the classes present; macro F1 averages over every class with
    0 where a class is neither present nor predicted.
    """
    counts = confusion_counts(y_true, y_pred, n_classes, weights)
    tp, fp, fn, tn = counts["tp"], counts["fp"], counts["fn"], counts["tn"]
    total = (tp + fn).sum(axis=1)
    recall = _divide(tp, tp + fn)
    balanced = _row_mean(recall)  # NaN where a class is absent: left out, as scikit-learn does
    f1 = np.where(2 * tp + fp + fn > 0, _divide(2 * tp, 2 * tp + fp + fn), 0.0)
    out = {
        "accuracy": _divide(tp.sum(axis=1), total),
        "balanced_accuracy": balanced,
        "macro_f1": f1.mean(axis=1),
        "class_sensitivity": recall,
        "class_specificity": _divide(tn, tn + fp),
        "class_precision": _divide(tp, tp + fp),
    }
    nan = np.full(len(total), np.nan)
    if positive is None:
        out.update(binary_accuracy=nan, sensitivity=nan, specificity=nan)
    else:
        out.update(binary_accuracy=_divide(tp[:, positive] + tn[:, positive], total),
                   sensitivity=recall[:, positive], specificity=out["class_specificity"][:, positive])
    return out


@dataclass(frozen=True)
class RankedScores:
    """One class's scores sorted once, so weighted AUROCs over many resamples are cumulative sums."""

    order: np.ndarray
    positive: np.ndarray  # bool, in sorted order
    group_start: np.ndarray  # first sorted position of each position's tie group
    group_end: np.ndarray  # one past its last

    @classmethod
    def of(cls, scores: np.ndarray, positive: np.ndarray) -> RankedScores:
        order = np.argsort(scores, kind="mergesort")
        ranked = np.asarray(scores)[order]
        new_group = np.r_[True, ranked[1:] != ranked[:-1]]
        starts = np.flatnonzero(new_group)
        group = np.cumsum(new_group) - 1
        ends = np.r_[starts[1:], len(ranked)]
        return cls(order, np.asarray(positive, bool)[order], starts[group], ends[group])

    def auroc(self, weights: np.ndarray) -> np.ndarray:
        """Weighted AUROC per resample: P(score of a positive > a negative), ties counting half."""
        w = weights[:, self.order].astype(np.float64)
        negative = np.where(self.positive, 0.0, w)
        below = np.concatenate([np.zeros((len(w), 1)), np.cumsum(negative, axis=1)], axis=1)
        under = below[:, self.group_start]
        tied = below[:, self.group_end] - under
        positive = np.where(self.positive, w, 0.0)
        wins = (positive * (under + 0.5 * tied)).sum(axis=1)
        return _divide(wins, positive.sum(axis=1) * negative.sum(axis=1))


def class_aurocs(y_true: np.ndarray, probabilities: np.ndarray) -> list[RankedScores]:
    """One-vs-rest :class:`RankedScores` per class (column of ``probabilities``)."""
    return [RankedScores.of(probabilities[:, k], y_true == k) for k in range(probabilities.shape[1])]


def auroc_statistics(ranked: list[RankedScores], weights: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class AUROC (b, n_classes) and their mean over classes (macro AUROC) per resample."""
    per_class = np.stack([r.auroc(weights) for r in ranked], axis=1)
    return {"class_auroc": per_class, "macro_auroc": _row_mean(per_class)}


def prediction_statistics(y_true: np.ndarray, y_pred: np.ndarray, probabilities: np.ndarray,
                          positive: int | None = None) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """weights -> :func:`classification_statistics` and :func:`auroc_statistics` of one set of predictions.

    The scores are ranked once here, so the returned statistic serves every chunk of resamples
    (:meth:`PatientBootstrap.collect`) and, with a row of ones, the point estimate.
    """
    ranked = class_aurocs(y_true, probabilities)
    n_classes = probabilities.shape[1]
    return lambda w: {**classification_statistics(y_true, y_pred, n_classes, positive, w), **auroc_statistics(ranked, w)}
