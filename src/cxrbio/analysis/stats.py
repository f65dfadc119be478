"""Class-association tests of every feature: Kruskal-Wallis across classes, one-vs-rest Mann-Whitney.

The one-vs-rest AUC (U / (n_class x n_rest)) is the effect size: 0.5 is no separation, 1.0 (or
0.0) perfect, direction included. Benjamini-Hochberg FDR is applied within each family: the
Kruskal-Wallis tests of one feature space (one fold model, or radiomics) form a family, and the
Mann-Whitney tests of one class in that space form another.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from cxrbio.evaluation.multiple_testing import benjamini_hochberg

TEST_COLUMNS = ["feature", "test", "class", "n_class", "n_rest", "statistic", "p", "q", "auc"]


def standardised_ranks(values: np.ndarray) -> np.ndarray:
    """Column ranks scaled to mean 0, SD 1: the mean product of two such columns is Spearman's rho."""
    ranks = stats.rankdata(values, axis=0)
    return (ranks - ranks.mean(axis=0)) / (ranks.std(axis=0) + 1e-12)


def rank_auc(values: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """One-vs-rest AUC per column from ranks (ties count half), vectorised over columns."""
    ranks = stats.rankdata(values, axis=0)
    n1 = int(positive.sum())
    n0 = len(positive) - n1
    u = ranks[positive].sum(axis=0) - n1 * (n1 + 1) / 2
    return u / (n1 * n0)


def mann_whitney(values: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column: the Mann-Whitney U of ``positive`` rows against the rest and its two-sided p.

    scipy's tie-corrected normal approximation, so the image-level tests and the patient-level
    confirmation (:mod:`cxrbio.analysis.confirmation`) compute the same statistic.
    """
    u, p = stats.mannwhitneyu(values[positive], values[~positive], axis=0, alternative="two-sided", method="asymptotic")
    return np.asarray(u, float), np.asarray(p, float)


def class_tests(values: np.ndarray, y: np.ndarray, names: list[str], classes: list[str],
                min_group: int = 3) -> tuple[pd.DataFrame, list[str]]:
    """Rows of TEST_COLUMNS for every feature; notes for tests skipped because a group is too small."""
    notes: list[str] = []
    frames = []
    counts = {c: int((y == i).sum()) for i, c in enumerate(classes)}
    testable = [i for i, c in enumerate(classes) if counts[c] >= min_group]
    for c in classes:
        if counts[c] < min_group:
            notes.append(f"{c}: {counts[c]} image(s) (< {min_group}); its tests are skipped.")
    if len(testable) >= 2:
        rows = np.isin(y, testable)
        # A feature that varies only within skipped (too small) classes is constant here: no test.
        varies = np.ptp(values[rows], axis=0) > 0 if rows.any() else np.zeros(values.shape[1], bool)
        statistic, p = np.full(values.shape[1], np.nan), np.full(values.shape[1], np.nan)
        if varies.any():
            groups = [values[y == i][:, varies] for i in testable]
            statistic[varies], p[varies] = stats.kruskal(*groups, axis=0)
        frames.append(pd.DataFrame({
            "feature": names, "test": "kruskal", "class": "", "n_class": int(rows.sum()), "n_rest": 0,
            "statistic": statistic, "p": p,
        }))
    else:
        notes.append("fewer than two classes with enough images: Kruskal-Wallis skipped.")
    for i in testable:
        positive = y == i
        if (~positive).sum() < min_group:
            continue
        statistic, p = mann_whitney(values, positive)
        frames.append(pd.DataFrame({
            "feature": names, "test": "mannwhitney", "class": classes[i], "n_class": int(positive.sum()),
            "n_rest": int((~positive).sum()), "statistic": np.asarray(statistic, float), "p": np.asarray(p, float),
            "auc": np.asarray(statistic, float) / (positive.sum() * (~positive).sum()),
        }))
    if not frames:
        return pd.DataFrame(columns=TEST_COLUMNS), notes
    table = pd.concat(frames, ignore_index=True)
    table["q"] = np.nan
    for _, index in table.groupby(["test", "class"]).groups.items():
        table.loc[index, "q"] = benjamini_hochberg(table.loc[index, "p"].to_numpy())
    if "auc" not in table:
        table["auc"] = np.nan
    return table[TEST_COLUMNS], notes
