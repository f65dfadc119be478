"""Matched features: one fold model's dim paired with its counterpart in every other fold model.

A fold model's GAP dims are its own units (e0734 of fold 0 is not e0734 of fold 1), but every
model embeds every image, so units can be compared over the same images. Two dims are matched
by their *group-partialled* correlation: each dim's group means are subtracted first, so two
dims that merely both separate the classes (any accurate model has many) do not look alike;
what is left is how they co-vary among images of the same group. Each other fold's dims are
assigned to the reference fold's dims one-to-one (Hungarian assignment, scipy), maximising the
summed correlation.

**What the correlation is computed on, and a null for it.** For a pair of models (reference r,
fold j) only the images one of the two held out (out-of-sample for at least one), and the groups
are each image's *predicted* class from the model that held it out, never a label: when a fold is
confirmed, no label of its held-out patients has shaped which dims count as one feature. With D
dims and a few dozen images the largest of D x D noise correlations is large (1,250 of 1,280
noise dims reached r 0.3 at 74 images), so a fixed threshold means nothing: a pair is kept when its
correlation reaches the ``null_quantile`` quantile of the assigned correlations after fold j's rows
are shuffled within group and the assignment is re-run (once per pair of models), and at least
``min_rho``. A second, independent shuffle is matched against that threshold and reported
(``null_matched``): what the threshold lets through when nothing is shared.

The fold models share most of their training data ((k-2)/(k-1) of any two), so agreement across
them is *consistency*, not independent replication. For ``offshelf`` the backbone is the same
frozen ImageNet network in every fold: its dims are identical across folds and matching is the
identity, which says nothing about replication.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cxrbio.analysis.association import within_class_permutation


def class_partialled(values: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Columns with their group means removed, then scaled to unit SD (0 where nothing is left)."""
    out = np.asarray(values, np.float64).copy()
    for c in np.unique(y):
        rows = y == c
        out[rows] -= out[rows].mean(axis=0)
    sd = out.std(axis=0)
    return np.divide(out, sd, out=np.zeros_like(out), where=sd > 1e-12)


def partialled_correlation(a: np.ndarray, b: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(Da, Db) within-group Pearson correlations of the columns of a with those of b over the same rows."""
    return class_partialled(a, y).T @ class_partialled(b, y) / len(y)


def assign(correlation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one rows -> columns maximising the summed correlation: (row index, column index)."""
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment(correlation, maximize=True)


def null_assigned(a: np.ndarray, b: np.ndarray, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The assigned correlations when b's rows are shuffled within group: what matching finds in nothing."""
    order = within_class_permutation(groups, rng)  # the group structure kept, the pairing broken
    correlation = partialled_correlation(a, b[order], groups)
    rows, cols = assign(correlation)
    return correlation[rows, cols]


PAIR_COLUMNS = ["reference", "fold", "images", "dims", "threshold", "null_quantile", "null_threshold", "matched",
                "null_matched", "median_rho"]


@dataclass
class MatchedFeatures:
    """``dims``: feature x fold -> that fold's dim name ('' when unmatched); ``rho``: its correlation with the reference.

    ``pairs``: per matched fold, the images compared, the null threshold, dims matched, and dims an
    independent within-group shuffle matched at that threshold.
    """

    reference: int
    folds: list[int]
    dims: pd.DataFrame  # index feature id, columns fold numbers
    rho: pd.DataFrame
    notes: list[str]
    pairs: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PAIR_COLUMNS))

    def table(self) -> pd.DataFrame:
        """Long form: feature, fold, dim, match_rho (the reference fold's rho is 1)."""
        long = self.dims.stack().reset_index()
        long.columns = ["feature", "fold", "dim"]
        rho = self.rho.stack().reset_index()
        rho.columns = ["feature", "fold", "match_rho"]
        merged = long.merge(rho, on=["feature", "fold"])
        return merged[merged["dim"] != ""].reset_index(drop=True)




def match_folds(embeddings: dict[int, tuple[list[str], np.ndarray]], groups: np.ndarray, *, min_rho: float,
                null_quantile: float | None = 0.99, held_out: np.ndarray | None = None, seed: int = 0,
                reference: int | None = None) -> MatchedFeatures:
    """Match every fold model's dims to the reference's.

    ``embeddings``: fold -> (live dim names, values over the same images in the same order as
    ``groups``). ``groups``: what the correlation is partialled on (the pipeline passes each image's
    out-of-fold *predicted* class). ``held_out``: the fold that held out each image; a pair of
    models is then compared on the images either of them held out (None: every image).
    ``null_quantile``: the threshold's quantile of the within-group shuffle null (None: ``min_rho``
    alone, no null).
    """
    folds = sorted(embeddings)
    reference = folds[0] if reference is None else reference
    ref_names, ref_values = embeddings[reference]
    ids = [f"f{j:04d}" for j in range(len(ref_names))]
    dims = pd.DataFrame("", index=ids, columns=folds)
    rho = pd.DataFrame(np.nan, index=ids, columns=folds)
    dims[reference] = ref_names
    rho[reference] = 1.0
    notes, pairs = [], []
    rng = np.random.default_rng(seed)
    groups = np.asarray(groups)
    for fold in folds:
        if fold == reference:
            continue
        names, values = embeddings[fold]
        rows = np.ones(len(groups), bool) if held_out is None else np.isin(held_out, [reference, fold])
        a, b, g = ref_values[rows], values[rows], groups[rows]
        correlation = partialled_correlation(a, b, g)
        assigned_rows, cols = assign(correlation)
        assigned = correlation[assigned_rows, cols]
        threshold, null_threshold, null_matched = min_rho, np.nan, np.nan
        if null_quantile is not None:
            null_threshold = float(np.quantile(null_assigned(a, b, g, rng), null_quantile))
            threshold = max(min_rho, null_threshold)
            null_matched = int((null_assigned(a, b, g, rng) >= threshold).sum())  # an independent shuffle
        kept = assigned >= threshold
        dims.loc[[ids[r] for r in assigned_rows[kept]], fold] = [names[c] for c in cols[kept]]
        rho.loc[[ids[r] for r in assigned_rows[kept]], fold] = assigned[kept]
        median = float(np.median(assigned[kept])) if kept.any() else float("nan")
        pairs.append({"reference": reference, "fold": fold, "images": int(rows.sum()), "dims": len(ref_names),
                      "threshold": threshold, "null_quantile": null_quantile, "null_threshold": null_threshold,
                      "matched": int(kept.sum()), "null_matched": null_matched, "median_rho": median})
        null_text = "" if null_quantile is None else (
            f"; null {null_quantile:g} quantile r {null_threshold:.2f}, an independent shuffle matched "
            f"{null_matched}")
        notes.append(f"fold {fold}: {int(kept.sum())} of {len(ref_names)} reference dims matched on {int(rows.sum())} "
                     f"images (r >= {threshold:.2f}{null_text}; median matched r {median:.2f})")
    return MatchedFeatures(reference, folds, dims, rho, notes, pd.DataFrame(pairs, columns=PAIR_COLUMNS))
