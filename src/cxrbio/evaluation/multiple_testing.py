"""Multiple-testing corrections, in one place: Holm (family-wise) and Benjamini-Hochberg (false discovery rate).

Both wrap statsmodels' ``multipletests`` and are NaN-safe the same way: a p-value that is NaN (a
test that could not run) stays NaN and does not count towards the family, so an untestable
feature neither inflates nor escapes the correction. Every adjusted p-value in cxrbio comes from
here: the strategy comparisons and the acquisition baseline (Holm), the analysis's class tests,
descriptors, confirmation and the covariate audit (BH).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from statsmodels.stats.multitest import multipletests


def _adjusted(p_values: Sequence[float] | np.ndarray, method: str) -> np.ndarray:
    p = np.asarray(p_values, dtype=float).reshape(-1)
    adjusted = np.full(len(p), np.nan)
    finite = np.isfinite(p)
    if finite.any():
        adjusted[finite] = multipletests(p[finite], method=method)[1]
    return adjusted


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values (family-wise error); NaN entries stay NaN and are not in the family."""
    return _adjusted(p_values, "holm")


def benjamini_hochberg(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values (false discovery rate); NaN entries stay NaN and are not in the family."""
    return _adjusted(p_values, "fdr_bh")


def simes(p_values: Sequence[float] | np.ndarray) -> float:
    """Simes' combination of a family's p-values (NaN ignored; NaN when none): ``min_j m p_(j) / j``."""
    p = np.sort(np.asarray(p_values, dtype=float)[np.isfinite(np.asarray(p_values, dtype=float))])
    if not len(p):
        return float("nan")
    return float(min(1.0, np.min(len(p) * p / np.arange(1, len(p) + 1))))


def benjamini_bogomolov(p_values: Sequence[float] | np.ndarray, families: Sequence[object], *,
                        level: float) -> tuple[np.ndarray, dict[str, int]]:
    """Hierarchical FDR (Benjamini & Bogomolov 2014): select families, then test within the selected ones.

    Each family's Simes p enters a BH across families at ``level``; R of the m families with a
    testable p are selected. Within a selected family the BH q-values are scaled by m / R (the
    within-family level becomes ``level * R / m``), so ``adjusted < level`` is the procedure's
    rejection; outside a selected family the adjusted value is 1 (NaN where the p is NaN). This
    controls the expected share of false discoveries among the selected families *and* the
    average within them, across every family at once, where a BH per family leaves the error
    rate to grow with the number of families. Returns the adjusted values and the counts
    (``families``, ``selected``, ``tests``).
    """
    p = np.asarray(p_values, dtype=float).reshape(-1)
    keys = np.asarray([str(f) for f in families], dtype=object)
    names = [k for k in dict.fromkeys(keys) if np.isfinite(p[keys == k]).any()]
    adjusted = np.where(np.isfinite(p), 1.0, np.nan)
    counts = {"families": len(names), "selected": 0, "tests": int(np.isfinite(p).sum())}
    if not names:
        return adjusted, counts
    family_p = np.array([simes(p[keys == k]) for k in names])
    selected = [k for k, q in zip(names, benjamini_hochberg(family_p)) if q < level]
    counts["selected"] = len(selected)
    for k in selected:
        rows = keys == k
        adjusted[rows] = np.minimum(1.0, benjamini_hochberg(p[rows]) * len(names) / len(selected))
    return adjusted, counts
