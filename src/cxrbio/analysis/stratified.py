"""Group differences estimated within strata: van Elteren's stratified Wilcoxon, its permutation p, TOST equivalence.

A disease effect is judged within sources (strata) that hold both the disease's patients and the
reference group's, so that what differs between sources cannot pass for what differs between the
groups. Within each stratum *s* the patients of the two groups are ranked together; the rank sum of
the group gives the Mann-Whitney ``U_s``. Van Elteren (1960) combines the strata with weights
``w_s = 1 / (N_s + 1)``, which make every stratum's contribution comparable in information (the
locally most powerful combination when the effect is the same in every stratum)::

    T = sum_s w_s (U_s - n1_s n2_s / 2)      Var0(T) = sum_s w_s^2 Var0(U_s)      z = T / sqrt(Var0(T))

``Var0(U_s)`` carries the tie correction. The stratified AUC is ``0.5 + T / sum_s w_s n1_s n2_s``:
the weighted mean of the strata's AUCs (each stratum's ``U_s / (n1_s n2_s)``), 0.5 for no effect.
Blocks from several held-out folds add up: strata of held-out fold x source are strata like any other.

Where a stratum is small the normal approximation is not trusted: :func:`permutation_p` shuffles
the group labels within every stratum (the exact conditional null, by Monte Carlo). Strata holding
only one of the two groups contribute nothing and are left out; a comparison with no stratum left is
untestable, never a pass.

:func:`tost` tests *equivalence* (two one-sided tests): whether an AUC lies within ``0.5 +- margin``.
A non-significant difference is absence of evidence; equivalence is evidence of absence, at the
stated margin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass
class Block:
    """One stratum's contribution for each column: ranks of both groups, and its share of the statistic."""

    ranks: np.ndarray  # (N_s, columns) ranks within the stratum, average ranks for ties
    in_group: np.ndarray  # (N_s,) bool: the group (True) or the reference (False)
    t: np.ndarray  # (columns,) w_s (U_s - n1 n2 / 2)
    var: np.ndarray  # (columns,) w_s^2 Var0(U_s), tie-corrected
    weight: float  # w_s n1_s n2_s

    @property
    def n_group(self) -> int:
        return int(self.in_group.sum())

    @property
    def n_reference(self) -> int:
        return int((~self.in_group).sum())


def blocks(values: np.ndarray, group: np.ndarray, reference: np.ndarray, strata: np.ndarray) -> list[Block]:
    """One :class:`Block` per stratum that holds both groups (``values``: rows x columns; masks over the rows)."""
    values = np.asarray(values, float).reshape(len(group), -1)
    out = []
    for stratum in np.unique(strata[group | reference]):
        rows = (strata == stratum) & (group | reference)
        inside = group[rows]
        n1, n2 = int(inside.sum()), int((~inside).sum())
        if n1 == 0 or n2 == 0:
            continue
        n = n1 + n2
        ranks = stats.rankdata(values[rows], axis=0)
        u = ranks[inside].sum(axis=0) - n1 * (n1 + 1) / 2
        ties = np.array([_tie_sum(ranks[:, j]) for j in range(ranks.shape[1])])
        var_u = n1 * n2 / 12.0 * ((n + 1) - (ties / (n * (n - 1)) if n > 1 else 0.0))
        w = 1.0 / (n + 1)
        out.append(Block(ranks, inside, w * (u - n1 * n2 / 2), np.asarray(w * w * var_u), w * n1 * n2))
    return out


def _tie_sum(column: np.ndarray) -> float:
    _, counts = np.unique(column, return_counts=True)
    return float((counts**3 - counts).sum())


@dataclass
class Stratified:
    """The combined statistic over blocks, per column."""

    t: np.ndarray
    var: np.ndarray
    weight: float
    strata: int
    n_group: int
    n_reference: int
    smallest: int  # the fewest patients of either group in any block

    @property
    def auc(self) -> np.ndarray:
        return 0.5 + self.t / self.weight if self.weight > 0 else np.full(len(self.t), np.nan)

    @property
    def z(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.var > 0, self.t / np.sqrt(self.var), 0.0)

    @property
    def p_normal(self) -> np.ndarray:
        return 2 * stats.norm.sf(np.abs(self.z))


def combine(parts: list[Block], columns: int) -> Stratified:
    """The van Elteren statistic of every block together (strata of several folds add up)."""
    if not parts:
        return Stratified(np.zeros(columns), np.zeros(columns), 0.0, 0, 0, 0, 0)
    return Stratified(t=np.sum([b.t for b in parts], axis=0), var=np.sum([b.var for b in parts], axis=0),
                      weight=float(sum(b.weight for b in parts)), strata=len(parts),
                      n_group=sum(b.n_group for b in parts), n_reference=sum(b.n_reference for b in parts),
                      smallest=min(min(b.n_group, b.n_reference) for b in parts))


def permutation_p(parts: list[Block], *, resamples: int, rng: np.random.Generator,
                  signs: np.ndarray | None = None) -> np.ndarray:
    """p per column of the combined statistic, the group labels shuffled within every block.

    ``signs`` None: two-sided, ``(1 + #{|T_perm| >= |T_obs|}) / (1 + resamples)``. ``signs``: one
    +1 or -1 per block, the side each block was *predicted* to lie on; the statistic is then
    ``sum_b s_b T_b`` and the p one-sided (``T_perm >= T_obs``), so blocks on the wrong side count
    against the effect. Exact in expectation, never 0.
    """
    sign = np.ones(len(parts)) if signs is None else np.asarray(signs, float)
    observed = np.sum([s * b.t for s, b in zip(sign, parts)], axis=0)
    permuted = np.zeros((resamples, observed.shape[0]))
    for s, block in zip(sign, parts):
        n, n1 = len(block.in_group), block.n_group
        w = 1.0 / (n + 1)
        chosen = np.argsort(rng.random((resamples, n)), axis=1)[:, :n1]
        rank_sums = block.ranks[chosen].sum(axis=1)  # (resamples, columns)
        permuted += s * w * (rank_sums - n1 * (n1 + 1) / 2 - n1 * (n - n1) / 2)
    if signs is None:
        exceed = (np.abs(permuted) >= np.abs(observed)[None, :] - 1e-9).sum(axis=0)
    else:
        exceed = (permuted >= observed[None, :] - 1e-9).sum(axis=0)
    return (1 + exceed) / (1 + resamples)


@dataclass
class RandomEffects:
    """A random-effects meta-analysis of per-fold directed effects (DerSimonian-Laird tau^2, Hartung-Knapp CI and p)."""

    effect: float  # pooled directed effect (AUC - 0.5 on the predicted side)
    low: float
    high: float
    p: float  # one-sided: the pooled effect on the predicted side (t with k - 1 df)
    q: float  # Cochran's Q
    i2: float  # I^2 in [0, 1]
    tau2: float
    k: int


def random_effects(effects: np.ndarray, se: np.ndarray, *, level: float = 0.95) -> RandomEffects:
    """Hartung-Knapp random-effects pooling of ``effects`` (k >= 2 with positive ``se``; else NaNs).

    Why Hartung-Knapp: with few folds (3 to 10) the DerSimonian-Laird z interval is too narrow;
    the HK variance with a t reference keeps the nominal level (IntHout et al. 2014).
    """
    y, s = np.asarray(effects, float), np.asarray(se, float)
    keep = np.isfinite(y) & np.isfinite(s) & (s > 0)
    y, s = y[keep], s[keep]
    k = len(y)
    if k < 2:
        nan = float("nan")
        return RandomEffects(nan, nan, nan, nan, nan, nan, nan, k=k)
    w = 1 / s**2
    fixed = float((w * y).sum() / w.sum())
    q = float((w * (y - fixed) ** 2).sum())
    c = float(w.sum() - (w**2).sum() / w.sum())
    tau2 = max(0.0, (q - (k - 1)) / c) if c > 0 else 0.0
    w_star = 1 / (s**2 + tau2)
    pooled = float((w_star * y).sum() / w_star.sum())
    var_hk = float((w_star * (y - pooled) ** 2).sum() / ((k - 1) * w_star.sum()))
    se_hk = np.sqrt(var_hk) if var_hk > 0 else float(np.sqrt(1 / w_star.sum()))
    quantile = stats.t.ppf((1 + level) / 2, k - 1)
    i2 = max(0.0, (q - (k - 1)) / q) if q > 0 else 0.0
    return RandomEffects(pooled, pooled - quantile * se_hk, pooled + quantile * se_hk,
                         float(stats.t.sf(pooled / se_hk, k - 1)), q, i2, tau2, k)


def bootstrap_t(values: np.ndarray, group: np.ndarray, reference: np.ndarray, strata: np.ndarray, *, resamples: int,
                rng: np.random.Generator) -> np.ndarray:
    """(resamples, columns) of the combined ``T`` with patients resampled within each (stratum, group)."""
    values = np.asarray(values, float).reshape(len(group), -1)
    out = np.zeros((resamples, values.shape[1]))
    for stratum in np.unique(strata[group | reference]):
        rows = np.flatnonzero((strata == stratum) & (group | reference))
        ones, zeros = rows[group[rows]], rows[~group[rows]]
        if not len(ones) or not len(zeros):
            continue
        n1, n2 = len(ones), len(zeros)
        w = 1.0 / (n1 + n2 + 1)
        inside = np.r_[np.ones(n1, bool), np.zeros(n2, bool)]
        for b in range(resamples):
            drawn = np.concatenate([rng.choice(ones, n1), rng.choice(zeros, n2)])
            ranks = stats.rankdata(values[drawn], axis=0)
            out[b] += w * (ranks[inside].sum(axis=0) - n1 * (n1 + 1) / 2 - n1 * n2 / 2)
    return out


def tost(auc: np.ndarray, se: np.ndarray, margin: float) -> np.ndarray:
    """Two one-sided tests that the AUC lies within ``(0.5 - margin, 0.5 + margin)``: the larger one-sided p (NaN: no SE)."""
    auc, se = np.asarray(auc, float), np.asarray(se, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        lower = stats.norm.sf((auc - (0.5 - margin)) / se)
        upper = stats.norm.sf(((0.5 + margin) - auc) / se)
    return np.where(se > 0, np.maximum(lower, upper), np.nan)
