"""Patient-grouped, label-stratified, seeded k-fold assignment.

A patient's images -- and every image joined to them by a near-duplicate -- share one
fold, so no test image has a sibling in training. scikit-learn's StratifiedGroupKFold
does the balancing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from cxrbio.errors import DataError


def check_enough_groups(labels: pd.Series, groups: pd.Series, k: int) -> None:
    """Every class needs at least one patient group per fold; say which do not, and what to do."""
    per_class = pd.DataFrame({"label": labels.values, "group": groups.values}).groupby("label")["group"].nunique()
    short = per_class[per_class < k]
    if short.empty:
        return
    listed = ", ".join(f"{label} has {count}" for label, count in short.items())
    most = int(short.min())
    raise DataError(
        f"too few patients for {k} folds: {listed} (patients, counting near-duplicate-linked patients as one); "
        f"every class needs at least {k}, one per test fold.",
        fix=f"use fewer folds (--folds {max(2, most)} or folds.k: {max(2, most)}), add patients to those classes, "
        "or remove them from data.classes.",
    )


def assign_folds(labels: pd.Series, groups: pd.Series, k: int, seed: int) -> np.ndarray:
    """Fold number (0..k-1) per row; deterministic for the same rows, groups and seed."""
    check_enough_groups(labels, groups, k)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = np.full(len(labels), -1, dtype=np.int64)
    # Group ids are sorted strings, so the result does not depend on row order in the input.
    order = np.lexsort((labels.to_numpy().astype(str), groups.to_numpy().astype(str)))
    y = labels.to_numpy()[order]
    g = groups.to_numpy()[order]
    for fold, (_train, test) in enumerate(splitter.split(np.zeros(len(y)), y, g)):
        folds[order[test]] = fold
    return folds
