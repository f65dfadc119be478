"""Patient-grouped, label-stratified, seeded k-fold assignment.

A patient's images -- and every image joined to them by a near-duplicate -- share one
fold, so no test image has a sibling in training. scikit-learn's StratifiedGroupKFold
does the balancing.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

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
        fix=f"use fewer folds (--k {max(2, most)} or folds.k: {max(2, most)}), add patients to those classes, "
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


@dataclass(frozen=True)
class TestFold:
    """One outer fold: its number, a name for tables, and which included rows it tests."""

    fold: int
    name: str
    test: np.ndarray  # boolean mask over the included rows


def single_source_classes(included: pd.DataFrame) -> dict[str, str]:
    """Classes whose images all come from one source -> that source (the degenerate case of leave-one-source-out)."""
    per_class = included.groupby("label")["source"].agg(lambda s: sorted(set(s.astype(str))))
    return {str(label): sources[0] for label, sources in per_class.items() if len(sources) == 1}


def outer_folds(included: pd.DataFrame, scheme: str) -> list[TestFold]:
    """The outer cross-validation folds of a manifest's included rows."""
    if scheme == "leave-one-source-out":
        sources = sorted(included["source"].astype(str).unique())
        if len(sources) < 2:
            raise DataError(
                f"leave-one-source-out needs at least two sources; the data has one ({sources[0]}).",
                fix="add a 'source' column to the CSV, or use folds.scheme: stratified-group.",
            )
        spanning = included.groupby("fold_group")["source"].nunique()
        if (spanning > 1).any():
            raise DataError(
                f"{int((spanning > 1).sum())} patients (or near-duplicate groups) appear in more than one source, "
                "so a held-out source would leak into training.",
                fix="correct the source or patient ids, or use folds.scheme: stratified-group.",
            )
        single = single_source_classes(included)
        if single:
            listed = "; ".join(f"{label} (only from '{source}')" for label, source in single.items())
            raise DataError(
                f"leave-one-source-out cannot test {listed}: when that source is held out, no image of the class is "
                "left to train on, so the class would be scored by a model that never saw it.",
                fix="add images of those classes from other sources, remove them from data.classes, or use "
                    "folds.scheme: stratified-group (and read the report's Confounding section).",
            )
        values = included["source"].astype(str).to_numpy()
        return [TestFold(i, source, values == source) for i, source in enumerate(sources)]
    folds = included["fold"].to_numpy()
    if (folds < 0).any():
        raise DataError(
            "the manifest has no folds (a class had too few patients when it was scanned).",
            fix="re-scan with fewer folds: cxrbio data scan DATA RUN_DIR --k K --reconfigure.",
        )
    return [TestFold(int(k), f"fold {int(k)}", folds == k) for k in sorted(np.unique(folds))]


def outer_fold_numbers(included: pd.DataFrame, scheme: str) -> np.ndarray:
    """The outer fold number of each included row, as :func:`outer_folds` (and so training) assigns it.

    Not the manifest's ``fold`` column: under leave-one-source-out the folds are the sources.
    """
    numbers = np.full(len(included), -1, dtype=np.int64)
    for fold in outer_folds(included, scheme):
        numbers[fold.test] = fold.fold
    return numbers


def inner_validation_split(labels: pd.Series, groups: pd.Series, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training rows -> (fit, validation) positions; patient-grouped, label-stratified, seeded.

    Early stopping looks only at this validation part of the training folds, never at the test fold.
    With very few patients per class the split count is lowered to what the data allows, so the
    validation share grows (at most half).
    """
    most_groups = int(pd.DataFrame({"l": labels.to_numpy(), "g": groups.to_numpy()}).groupby("l")["g"].nunique().max())
    if most_groups < 2:
        raise DataError("too few training patients to carve a validation split (one per class).",
                        fix="add patients, or use fewer folds.")
    n_splits = max(2, min(round(1 / fraction), most_groups))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    order = np.lexsort((labels.to_numpy().astype(str), groups.to_numpy().astype(str)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # small classes: fewer members than splits
        fit, val = next(splitter.split(np.zeros(len(order)), labels.to_numpy()[order], groups.to_numpy()[order]))
    return np.sort(order[fit]), np.sort(order[val])
