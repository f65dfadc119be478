"""Are the findings stable? Across folds in the shared radiomics space, and under resampling.

Fold models' dims are different units (e0734 of fold 0 is not e0734 of fold 1), so the CNN's
stability is measured through what its top dims *mean*: for each (fold, class), the descriptor
profile is, per radiomics feature, the largest |rho| with any of the class's top dims. Then per
class:

* ``recurrence`` of a feature: the share of folds whose top ``stability_top`` profile features
  include it;
* ``profile_rank_correlation``: the mean Spearman correlation of the profiles between pairs of
  folds (1 = every fold's top dims describe the same radiomics, 0 = unrelated);
* ``top_jaccard``: the mean Jaccard overlap of the folds' top-feature sets.

The radiomics ranking (one-vs-rest |AUC - 0.5| per class) is bootstrapped over patients: per
feature, the share of resamples that keep it in the top ``stability_top``, and per class the
mean Jaccard overlap of a resample's top set with the full data's.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy import stats

from cxrbio.analysis.stats import rank_auc


def descriptor_profiles(associations: pd.DataFrame, candidates: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Rows (fold, class), columns = radiomics features: max |rho| over the class's top dims."""
    if associations.empty or candidates.empty:
        return pd.DataFrame(columns=["fold", "class", *features])
    merged = candidates[["fold", "class", "dim"]].merge(associations[["fold", "dim", "feature", "rho"]], on=["fold", "dim"])
    merged["abs_rho"] = merged["rho"].abs()
    table = merged.pivot_table(index=["fold", "class"], columns="feature", values="abs_rho", aggfunc="max")
    return table.reindex(columns=features).fillna(0.0).reset_index()


def cross_fold_stability(profiles: pd.DataFrame, features: list[str], top: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per class summary, per (class, feature) recurrence)."""
    summaries, recurrences = [], []
    for cls, part in profiles.groupby("class"):
        matrix = part[features].to_numpy()
        tops = [set(np.array(features)[np.argsort(-row)[:top]]) for row in matrix]
        pairs = list(itertools.combinations(range(len(matrix)), 2))
        correlations = [stats.spearmanr(matrix[i], matrix[j])[0] for i, j in pairs]
        jaccards = [len(tops[i] & tops[j]) / len(tops[i] | tops[j]) for i, j in pairs]
        summaries.append({"class": cls, "folds": len(matrix),
                          "profile_rank_correlation": float(np.nanmean(correlations)) if pairs else np.nan,
                          "top_jaccard": float(np.mean(jaccards)) if pairs else np.nan})
        counts = pd.Series([f for t in tops for f in t]).value_counts()
        for feature, count in counts.items():
            recurrences.append({"class": cls, "feature": feature, "recurrence": count / len(matrix)})
    return pd.DataFrame(summaries), pd.DataFrame(recurrences, columns=["class", "feature", "recurrence"])


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
    jaccard = {c: [] for c in full}
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
