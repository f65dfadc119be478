"""Is the radiomics ranking stable? The one-vs-rest |AUC - 0.5| ranking under patient resampling.

Per feature, the share of resamples that keep it in the top ``stability_top``, and per class the
mean Jaccard overlap of a resample's top set with the full data's. The radiomics candidates
table is ordered by the same statistic, so the ranking and its stability are one ranking. (The
CNN's consistency across fold models is measured on matched features: ``analysis.matching``.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cxrbio.analysis.stats import rank_auc


def bootstrap_ranking(values: np.ndarray, y: np.ndarray, patients: np.ndarray, features: list[str], classes: list[str],
                      top: int, resamples: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per class mean Jaccard to the full ranking, per (class, feature) top frequency)."""
    def tops(v: np.ndarray, labels: np.ndarray) -> dict[int, set[str]]:
        out = {}
        for c in range(len(classes)):
            positive = labels == c
            if positive.sum() < 2 or (~positive).sum() < 2:
                continue
            effect = np.abs(rank_auc(v, positive) - 0.5)
            out[c] = set(np.array(features)[np.argsort(-effect)[:top]])
        return out

    full = tops(values, y)
    codes, uniques = pd.factorize(pd.Series(patients))
    members = [np.flatnonzero(codes == k) for k in range(len(uniques))]
    rng = np.random.default_rng(seed)
    jaccard: dict[Any, list[float]] = {c: [] for c in full}
    frequency = {c: pd.Series(0.0, index=features) for c in full}
    for _ in range(resamples):
        rows = np.concatenate([members[k] for k in rng.integers(0, len(members), len(members))])
        sample = tops(values[rows], y[rows])
        for c, chosen in sample.items():
            if c in full:
                jaccard[c].append(len(chosen & full[c]) / len(chosen | full[c]))
                frequency[c][list(chosen)] += 1
    summary = pd.DataFrame([{"class": classes[c], "resamples": len(j), "top_jaccard": float(np.mean(j)) if j else np.nan}
                            for c, j in jaccard.items()])
    freq = pd.concat([pd.DataFrame({"class": classes[c], "feature": features, "top_frequency": f.to_numpy() / max(1, resamples)})
                      for c, f in frequency.items()], ignore_index=True) if frequency else pd.DataFrame(
        columns=["class", "feature", "top_frequency"])
    return summary, freq
