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
