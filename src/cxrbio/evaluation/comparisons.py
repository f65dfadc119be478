"""Strategy comparisons that respect patients and multiplicity (metrics/comparison.json).

For every pair of strategies trained on the same folds and images:

* **Primary test** -- the corrected resampled t-test (Nadeau & Bengio 2003) of the per-fold
  7-class accuracy differences. It asks whether the *training method* differs, allowing for the
  overlap of training sets between folds. Its p-values are Holm-adjusted across all pairs
  (statsmodels ``multipletests``), so "significant" means at the stated family-wise level.
* **Effect sizes** -- paired differences (a - b) in accuracy, balanced accuracy and macro
  AUROC on the pooled out-of-fold predictions, with percentile intervals from a patient-cluster
  bootstrap: both strategies are scored on the same resampled patients (:mod:`cxrbio.evaluation.bootstrap`),
  so the interval is that of the difference, not of two separate estimates.
* **Secondary, image-level** -- McNemar's test on paired correctness, which treats images as
  independent (several images of one patient are not): kept for comparison with the
  literature, labelled image-level, and Holm-adjusted within its own family.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from cxrbio.evaluation.bootstrap import PatientBootstrap, percentile_interval, prediction_statistics
from cxrbio.evaluation.metrics import mcnemar_test, nadeau_bengio_ttest
from cxrbio.evaluation.multiple_testing import holm

#: Paired differences reported per pair, with their bootstrap intervals.
DIFFERENCES = ("accuracy", "balanced_accuracy", "macro_auroc")


def _aligned(predictions: dict[str, pd.DataFrame]) -> tuple[list[str], dict[str, pd.DataFrame]]:
    """Every strategy's predictions on the images all of them predicted, in one order."""
    names = list(predictions)
    common = sorted(set.intersection(*(set(p["image_id"]) for p in predictions.values())))
    return names, {n: p.set_index("image_id").loc[common].reset_index() for n, p in predictions.items()}


def compare_strategies(predictions: dict[str, pd.DataFrame], classes: list[str], *, n_train: float, n_test: float,
                       resamples: int = 1000, seed: int = 0, level: float = 0.95, alpha: float = 0.05) -> dict[str, Any]:
    """All pairwise comparisons of the strategies' out-of-fold predictions (``predictions[name]``)."""
    if len(predictions) < 2:
        return {"pairs": []}
    names, aligned = _aligned(predictions)
    first = aligned[names[0]]
    y = first["true"].to_numpy(int)
    bootstrap = PatientBootstrap(first["patient_id"].to_numpy(), resamples, seed)
    draws: dict[str, dict[str, np.ndarray]] = {}
    point: dict[str, dict[str, float]] = {}
    ones = np.ones((1, len(y)), dtype=np.int32)
    for name in names:
        frame = aligned[name]
        everything = prediction_statistics(y, frame["predicted"].to_numpy(int),
                                           frame[[f"p_{c}" for c in classes]].to_numpy(np.float64))

        def statistics(w: np.ndarray, everything: Callable = everything) -> dict[str, np.ndarray]:
            found = everything(w)
            return {k: found[k] for k in DIFFERENCES}

        draws[name] = bootstrap.collect(statistics)
        point[name] = {k: float(v[0]) for k, v in statistics(ones).items()}
    pairs: list[dict[str, Any]] = []
    for a, b in itertools.combinations(names, 2):
        pa, pb = aligned[a], aligned[b]
        per_fold_a = pa.assign(c=pa["true"] == pa["predicted"]).groupby("fold")["c"].mean()
        per_fold_b = pb.assign(c=pb["true"] == pb["predicted"]).groupby("fold")["c"].mean().reindex(per_fold_a.index)
        differences = {k: {"estimate": point[a][k] - point[b][k],
                           "ci95": percentile_interval(draws[a][k] - draws[b][k], level)} for k in DIFFERENCES}
        pairs.append({
            "a": a, "b": b,
            "accuracy_a": point[a]["accuracy"], "accuracy_b": point[b]["accuracy"],
            "nadeau_bengio": nadeau_bengio_ttest(per_fold_a.tolist(), per_fold_b.tolist(), n_train=n_train, n_test=n_test),
            "difference": differences,
            "mcnemar": mcnemar_test((pa["true"] == pa["predicted"]).to_numpy(), (pb["true"] == pb["predicted"]).to_numpy()),
        })
    for family in ("nadeau_bengio", "mcnemar"):
        for pair, adjusted in zip(pairs, holm([pair[family]["p"] for pair in pairs]).tolist()):
            pair[family]["p_holm"] = adjusted
            pair[family]["significant"] = bool(adjusted < alpha) if np.isfinite(adjusted) else False
    return {
        "metric": "7-class accuracy",
        "primary": "Nadeau-Bengio corrected resampled t-test of per-fold accuracy, Holm-adjusted across pairs",
        "secondary": "McNemar on paired image-level correctness (images treated as independent), Holm-adjusted",
        "effect_size": "paired difference a - b on pooled out-of-fold predictions, patient-cluster bootstrap interval",
        "alpha": alpha, "images": len(y), "pairs_tested": len(pairs),
        "bootstrap": {"unit": "patient", "resamples": resamples, "seed": seed, "level": level},
        "pairs": pairs,
    }
