"""Matched features: one fold model's dim paired with its counterpart in every other fold model.

A fold model's GAP dims are its own units (e0734 of fold 0 is not e0734 of fold 1), but every
model embeds every image, so units can be compared over the same images. Two dims are matched
by their *class-partialled* correlation: each dim's class means are subtracted first, so two
dims that merely both separate the classes (any accurate model has many) do not look alike;
what is left is how they co-vary among images of the same class. Each other fold's dims are
assigned to the reference fold's dims one-to-one (Hungarian assignment, scipy), maximising the
summed correlation, and a pair is kept when its correlation reaches ``match_min_rho``. A matched
feature therefore has at most one dim per fold model.

The fold models share most of their training data ((k-2)/(k-1) of any two), so agreement across
them is *consistency*, not independent replication. For ``offshelf`` the backbone is the same
frozen ImageNet network in every fold: its dims are identical across folds and matching is the
identity, which says nothing about replication.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


def class_partialled(values: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Columns with their class means removed, then scaled to unit SD (0 where nothing is left)."""
    out = np.asarray(values, np.float64).copy()
    for c in np.unique(y):
        rows = y == c
        out[rows] -= out[rows].mean(axis=0)
    sd = out.std(axis=0)
    return np.divide(out, sd, out=np.zeros_like(out), where=sd > 1e-12)


def partialled_correlation(a: np.ndarray, b: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(Da, Db) within-class Pearson correlations of the columns of a with those of b over the same rows."""
    return class_partialled(a, y).T @ class_partialled(b, y) / len(y)


def assign(correlation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one rows -> columns maximising the summed correlation: (row index, column index)."""
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment(correlation, maximize=True)


@dataclass
class MatchedFeatures:
    """``dims``: feature x fold -> that fold's dim name ('' when unmatched); ``rho``: its correlation with the reference."""

    reference: int
    folds: list[int]
    dims: pd.DataFrame  # index feature id, columns fold numbers
    rho: pd.DataFrame
    notes: list[str]

    def table(self) -> pd.DataFrame:
        """Long form: feature, fold, dim, match_rho (the reference fold's rho is 1)."""
        long = self.dims.stack().rename("dim").reset_index()
        long.columns = ["feature", "fold", "dim"]
        rho = self.rho.stack().rename("match_rho").reset_index()
        rho.columns = ["feature", "fold", "match_rho"]
        merged = long.merge(rho, on=["feature", "fold"])
        return merged[merged["dim"] != ""].reset_index(drop=True)


def match_folds(embeddings: dict[int, tuple[list[str], np.ndarray]], y: np.ndarray, *, min_rho: float,
                reference: int | None = None) -> MatchedFeatures:
    """``embeddings``: fold -> (live dim names, values over the same images in the same order as y)."""
    folds = sorted(embeddings)
    reference = folds[0] if reference is None else reference
    ref_names, ref_values = embeddings[reference]
    ids = [f"f{j:04d}" for j in range(len(ref_names))]
    dims = pd.DataFrame("", index=ids, columns=folds)
    rho = pd.DataFrame(np.nan, index=ids, columns=folds)
    dims[reference] = ref_names
    rho[reference] = 1.0
    notes = []
    for fold in folds:
        if fold == reference:
            continue
        names, values = embeddings[fold]
        correlation = partialled_correlation(ref_values, values, y)
        rows, cols = assign(correlation)
        kept = correlation[rows, cols] >= min_rho
        dims.loc[[ids[r] for r in rows[kept]], fold] = [names[c] for c in cols[kept]]
        rho.loc[[ids[r] for r in rows[kept]], fold] = correlation[rows[kept], cols[kept]]
        median = float(np.median(correlation[rows, cols][kept])) if kept.any() else float("nan")
        notes.append(f"fold {fold}: {int(kept.sum())} of {len(ref_names)} reference dims matched "
                     f"(within-class r >= {min_rho}; median matched r {median:.2f})")
    return MatchedFeatures(reference, folds, dims, rho, notes)
