"""Calibration of predicted probabilities: ECE, Brier score, reliability bins, temperature scaling.

Do the network's probabilities mean what they say? A model can rank images well (AUROC) and
still be overconfident, and a threshold chosen on its probabilities then misfires on new data.

* **Expected calibration error (ECE)**, top-label (Guo et al. 2017): images binned by their
  highest probability (equal-width bins over [0, 1]); the gap between each bin's mean
  confidence and its accuracy, weighted by the bin's share of images. **Class-wise ECE**: the
  same for one class's probability against "is this class", per class.
* **Brier score**: the mean squared difference between the probability vector and the one-hot
  truth, summed over classes (0 is perfect, 2 the worst; a uniform guess over 7 classes scores
  0.857); per class, the one-vs-rest Brier score.
* **Temperature scaling**: one scalar T per fold model, fitted by minimising the negative log
  likelihood on that fold's inner validation patients only (never on its test patients) and
  applied to its test predictions. Softmax is shift-invariant, so log-probabilities serve as
  logits; T > 0 changes no prediction, only confidence.

ECE is biased upward on few images (empty-ish bins): the image count is always shown beside it.
"""

from __future__ import annotations

import numpy as np

#: Probabilities are clipped here before the log: float32 softmax outputs can be exactly 0.
LOG_FLOOR = 1e-12
#: The search range of the temperature. A fit at either end has no interior optimum and is not
#: used; nor is one on validation images that are all right (the loss then only falls as T -> 0).
TEMPERATURE_BOUNDS = (0.05, 20.0)


def bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bin of each value in [0, 1]; 1.0 falls in the last bin."""
    return np.clip((np.asarray(confidence, float) * bins).astype(int), 0, bins - 1)


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int, weights: np.ndarray | None = None) -> dict[str, list]:
    """Per bin: image count, mean confidence and observed frequency (NaN in an empty bin)."""
    index = bin_index(confidence, bins)
    w = np.ones(len(index)) if weights is None else np.asarray(weights, float)
    count = np.bincount(index, weights=w, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, weights=w * confidence, minlength=bins) / count
        frequency = np.bincount(index, weights=w * np.asarray(correct, float), minlength=bins) / count
    return {"lower": (np.arange(bins) / bins).tolist(), "upper": (np.arange(1, bins + 1) / bins).tolist(),
            "count": count.tolist(), "confidence": mean_confidence.tolist(), "frequency": frequency.tolist()}


def weighted_ece(confidence: np.ndarray, correct: np.ndarray, bins: int, weights: np.ndarray) -> np.ndarray:
    """ECE per row of ``weights`` (b, n): one bootstrap resample per row; ``weights=ones`` is the plain ECE."""
    w = np.atleast_2d(weights).astype(np.float64)
    onehot = np.eye(bins)[bin_index(confidence, bins)]  # (n, bins)
    count = w @ onehot
    gap = np.abs(w @ (onehot * np.asarray(correct, float)[:, None]) - w @ (onehot * np.asarray(confidence, float)[:, None]))
    total = count.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, gap.sum(axis=1) / np.where(total > 0, total, 1), np.nan)


def expected_calibration_error(y_true: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE: confidence = the highest probability, correct = it is the true class."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y_true
    return float(weighted_ece(confidence, correct, bins, np.ones((1, len(y_true))))[0]) if len(y_true) else float("nan")


def classwise_ece(y_true: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> np.ndarray:
    """ECE of each class's probability against membership of that class, per class."""
    ones = np.ones((1, len(y_true)))
    return np.array([weighted_ece(probabilities[:, k], y_true == k, bins, ones)[0] for k in range(probabilities.shape[1])])


def brier_terms(y_true: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """(n, classes) squared errors against the one-hot truth; their row sum is each image's Brier term."""
    onehot = np.eye(probabilities.shape[1])[y_true]
    return (probabilities - onehot) ** 2


def brier_score(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """Multi-class Brier score (Brier 1950): mean over images of the summed squared error."""
    return float(brier_terms(y_true, probabilities).sum(axis=1).mean()) if len(y_true) else float("nan")


def log_loss(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean negative log likelihood of the true class (probabilities clipped at :data:`LOG_FLOOR`)."""
    if not len(y_true):
        return float("nan")
    return float(-np.mean(np.log(np.clip(probabilities[np.arange(len(y_true)), y_true], LOG_FLOOR, 1.0))))


def scale(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the temperature-scaled probabilities."""
    logits = np.log(np.clip(probabilities, LOG_FLOOR, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def fit_temperature(y_true: np.ndarray, probabilities: np.ndarray, *, lower: float = TEMPERATURE_BOUNDS[0],
                    upper: float = TEMPERATURE_BOUNDS[1]) -> float:
    """The T in [lower, upper] minimising the negative log likelihood of ``y_true`` (bounded search on log T)."""
    from scipy.optimize import minimize_scalar

    if not len(y_true):
        raise ValueError("temperature scaling needs at least one validation image")
    logits = np.log(np.clip(probabilities, LOG_FLOOR, 1.0))
    rows = np.arange(len(y_true))

    def nll(log_t: float) -> float:
        z = logits / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        return float(-np.mean(z[rows, y_true] - np.log(np.exp(z).sum(axis=1))))

    found = minimize_scalar(nll, bounds=(np.log(lower), np.log(upper)), method="bounded", options={"xatol": 1e-5})
    return float(np.exp(found.x))


def at_bound(temperature: float, *, lower: float = TEMPERATURE_BOUNDS[0], upper: float = TEMPERATURE_BOUNDS[1]) -> bool:
    """Whether a fitted temperature sits at the end of its search range (within 2%): no optimum was found."""
    return temperature <= lower * 1.02 or temperature >= upper / 1.02


def calibration_summary(y_true: np.ndarray, probabilities: np.ndarray, classes: list[str], bins: int) -> dict:
    """ECE, Brier, log loss, class-wise ECE and Brier, and the reliability bins (top-label and per class)."""
    y_true = np.asarray(y_true, int)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y_true
    per_class_brier = brier_terms(y_true, probabilities).mean(axis=0) if len(y_true) else np.full(len(classes), np.nan)
    per_class_ece = classwise_ece(y_true, probabilities, bins)
    return {
        "n": int(len(y_true)),
        "ece": expected_calibration_error(y_true, probabilities, bins),
        "brier": brier_score(y_true, probabilities),
        "log_loss": log_loss(y_true, probabilities),
        "mean_confidence": float(confidence.mean()) if len(y_true) else float("nan"),
        "accuracy": float(correct.mean()) if len(y_true) else float("nan"),
        "reliability": reliability(confidence, correct, bins),
        "per_class": {name: {"ece": float(per_class_ece[k]), "brier": float(per_class_brier[k]),
                             "reliability": reliability(probabilities[:, k], y_true == k, bins)}
                      for k, name in enumerate(classes)},
    }
