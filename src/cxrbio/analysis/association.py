"""What the learned dims correspond to in classical radiomics.

* Descriptors: *partial* Spearman correlations of each tested feature with every radiomics
  feature, after partialling out class and source (ranks residualised on their indicators,
  within each held-out fold), over the held-out images of the folds the feature was tested in;
  Benjamini-Hochberg FDR within each feature. Pooled over classes, a dim that separates COVID-19
  would correlate with every radiomics feature that differs for COVID-19 (source-driven
  intensity included); partialled, what is left is how the two co-vary among images of the
  same class and source. The strongest significant ones are the feature's *descriptors*.
* CCA between the two spaces per fold (each reduced to its leading principal components, so
  that CCA is not fitting noise in 1,280 dims), with a permutation baseline: the same CCA with
  one space's rows shuffled *within class*, so that the shared class structure is in the null
  too. Canonical correlations are in-sample; the baseline is what makes them interpretable.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from cxrbio.analysis.stats import standardised_ranks
from cxrbio.evaluation.multiple_testing import benjamini_hochberg


def spearman(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spearman rho and two-sided p (t approximation) of every column of a with every column of b."""
    n = len(a)
    rho = np.clip(standardised_ranks(a).T @ standardised_ranks(b) / n, -1.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = rho * np.sqrt((n - 2) / np.maximum(1e-12, 1 - rho**2))
    p = 2 * stats.t.sf(np.abs(t), df=max(1, n - 2))
    return rho, p


def descriptors(associations: pd.DataFrame, top: int, alpha: float = 0.05) -> dict[str, list[tuple[str, float]]]:
    """Per dim, its `top` significant features by |rho|."""
    significant = associations[associations["q"] < alpha]
    out: dict[str, list[tuple[str, float]]] = {}
    for dim, part in significant.groupby("dim"):
        best = part.reindex(part["rho"].abs().sort_values(ascending=False).index).head(top)
        out[str(dim)] = [(str(f), float(r)) for f, r in zip(best["feature"], best["rho"])]
    return out


def short_name(feature: str) -> str:
    """'log-sigma-3-0-mm-3D_glcm_Contrast' -> 'LoG3 glcm Contrast' (for tables; files keep pyradiomics' names)."""
    import re

    image_type, _, rest = feature.partition("_")
    match = re.match(r"log-sigma-(\d+)-(\d+)-mm", image_type)
    prefix = "" if image_type == "original" else (
        f"LoG{match.group(1)}{'.' + match.group(2) if match.group(2) != '0' else ''} " if match
        else image_type.replace("wavelet-", "w") + " ")
    return prefix + rest.replace("_", " ")


def describe(pairs: list[tuple[str, float]]) -> str:
    return "; ".join(f"{name} (rho {rho:+.2f})" for name, rho in pairs)


def _reduce(values: np.ndarray, components: int) -> np.ndarray:
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    scaled = StandardScaler().fit_transform(values)
    k = max(1, min(components, values.shape[1], values.shape[0] - 1))
    return PCA(n_components=k, random_state=0).fit_transform(scaled)


def canonical_correlations(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    from sklearn.cross_decomposition import CCA

    k = min(n, a.shape[1], b.shape[1])
    cca = CCA(n_components=k, max_iter=1000)
    xs, ys = cca.fit_transform(a, b)
    return np.array([abs(np.corrcoef(xs[:, i], ys[:, i])[0, 1]) for i in range(k)])


def within_class_permutation(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row order that shuffles rows only among rows of the same class."""
    order = np.arange(len(y))
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        order[rows] = rng.permutation(rows)
    return order


def cca_with_baseline(embedding: np.ndarray, radiomics: np.ndarray, components: int, permutations: int,
                      seed: int, n_canonical: int = 3, *, y: np.ndarray | None = None) -> pd.DataFrame:
    """component, r, null_mean, null_p95, p (permutation p of each canonical correlation; within class given y)."""
    import warnings

    a, b = _reduce(embedding, components), _reduce(radiomics, components)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")  # sklearn's CCA convergence chatter on permuted noise
        observed = canonical_correlations(a, b, n_canonical)
        rng = np.random.default_rng(seed)
        strata = np.zeros(len(b), int) if y is None else np.asarray(y)
        null = np.array([canonical_correlations(a, b[within_class_permutation(strata, rng)], n_canonical)
                         for _ in range(permutations)])
    rows = []
    for i, r in enumerate(observed):
        column = null[:, i] if len(null) else np.array([np.nan])
        rows.append({"component": i + 1, "r": float(r), "null_mean": float(np.nanmean(column)),
                     "null_p95": float(np.nanpercentile(column, 95)) if len(null) else np.nan,
                     "p": float((1 + (column >= r).sum()) / (1 + len(null))) if len(null) else np.nan})
    return pd.DataFrame(rows)


def residual_ranks(values: np.ndarray, covariates: np.ndarray) -> np.ndarray:
    """Column ranks with the covariates' linear part removed (least squares on indicators + intercept)."""
    ranks = stats.rankdata(values, axis=0)
    design = np.column_stack([np.ones(len(values)), covariates]) if covariates.size else np.ones((len(values), 1))
    coef, *_ = np.linalg.lstsq(design, ranks, rcond=None)
    return ranks - design @ coef


def indicators(*labels: np.ndarray) -> np.ndarray:
    """Indicator columns (first level dropped) of each label array, side by side."""
    columns = []
    for label in labels:
        codes, levels = pd.factorize(pd.Series(label).astype(str))
        columns += [(codes == k).astype(float) for k in range(1, len(levels))]
    return np.column_stack(columns) if columns else np.empty((len(labels[0]) if labels else 0, 0))


def partial_descriptors(parts: list[tuple[np.ndarray, np.ndarray]], feature_names: list[str],
                        n_covariates: int) -> pd.DataFrame:
    """feature, rho, p, q of one tested feature pooled over its folds.

    ``parts``: per fold, (the feature's residual ranks (n,), the radiomics residual ranks (n, F)),
    residualised within that fold. rho is the pooled correlation of the residuals; p from the t
    approximation with n - 2 - covariates degrees of freedom.
    """
    numerator = sum(a @ r for a, r in parts)
    a_norm = sum(float(a @ a) for a, _ in parts)
    r_norm = sum((r**2).sum(axis=0) for _, r in parts)
    n = sum(len(a) for a, _ in parts)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.clip(numerator / np.sqrt(a_norm * r_norm), -1.0, 1.0)
        rho = np.where(np.isfinite(rho), rho, 0.0)
        df = max(1, n - 2 - n_covariates)
        t = rho * np.sqrt(df / np.maximum(1e-12, 1 - rho**2))
    p = 2 * stats.t.sf(np.abs(t), df=df)
    return pd.DataFrame({"feature": feature_names, "rho": rho, "p": p, "q": benjamini_hochberg(p)})


#: A candidate's descriptor tiers (``descriptor_tier``), strongest first.
DISEASE_SPECIFIC, NUISANCE, NOT_COMPARED, NO_DESCRIPTOR = "disease-specific", "nuisance", "not compared", "none"


def spearman_z_variance(rho: np.ndarray, n: int) -> np.ndarray:
    """Variance of Fisher's z of a Spearman rho (Bonett & Wright 2000): (1 + rho^2 / 2) / (n - 3)."""
    return (1 + np.asarray(rho, float) ** 2 / 2) / max(1, n - 3)


def contrasted_descriptors(disease: list[tuple[np.ndarray, np.ndarray]], control: list[tuple[np.ndarray, np.ndarray]],
                           feature_names: list[str], n_covariates: int, *, alpha: float = 0.05) -> pd.DataFrame:
    """Each radiomics feature's partial Spearman with the unit within the disease, within the controls, and the difference.

    ``disease`` / ``control``: per held-out fold, (the unit's residual ranks, the radiomics residual
    ranks) over that fold's *patients* of the disease / of the control class, source partialled
    within the fold (fold is a stratum: residuals are pooled, never ranked together). A radiomics
    feature that follows the unit within the disease *and* within the controls tracks something
    every image has (exposure, position, a collection's processing): ``nuisance``. One that
    follows it within the disease, significantly more than within the controls: ``disease-specific``
    (the finding's physics, which only the disease's images carry). ``not compared``: significant
    within the disease with no control group to hold it against. The difference is Fisher's z with
    the Spearman variance; ``q`` (= ``q_disease``) is BH over every radiomics feature of the unit.
    """
    within = partial_descriptors(disease, feature_names, n_covariates)
    n_disease = sum(len(a) for a, _ in disease)
    out = pd.DataFrame({"feature": feature_names, "rho_disease": within["rho"], "p_disease": within["p"],
                        "q_disease": within["q"], "n_disease": n_disease})
    n_control = sum(len(a) for a, _ in control)
    if control and n_control > 4:
        against = partial_descriptors(control, feature_names, n_covariates)
        out["rho_control"], out["p_control"], out["n_control"] = against["rho"].to_numpy(), against["p"].to_numpy(), n_control
        rd, rc = np.clip(out["rho_disease"].to_numpy(), -0.999, 0.999), np.clip(out["rho_control"].to_numpy(), -0.999, 0.999)
        z = (np.arctanh(rd) - np.arctanh(rc)) / np.sqrt(spearman_z_variance(rd, n_disease)
                                                        + spearman_z_variance(rc, n_control))
        out["z_difference"], out["p_difference"] = z, 2 * stats.norm.sf(np.abs(z))
        significant = out["q_disease"] < alpha
        stronger = (np.abs(rd) > np.abs(rc)) & (out["p_difference"] < alpha)
        out["descriptor_tier"] = np.where(significant & stronger, DISEASE_SPECIFIC,
                                          np.where(significant, NUISANCE, NO_DESCRIPTOR))
    else:
        out["rho_control"], out["p_control"], out["n_control"] = np.nan, np.nan, n_control
        out["z_difference"], out["p_difference"] = np.nan, np.nan
        out["descriptor_tier"] = np.where(out["q_disease"] < alpha, NOT_COMPARED, NO_DESCRIPTOR)
    out["rho"], out["p"], out["q"] = out["rho_disease"], out["p_disease"], out["q_disease"]
    return out


def candidate_tier(table: pd.DataFrame) -> str:
    """The candidate's tier: its strongest descriptor's (disease-specific > not compared > nuisance > none)."""
    tiers = set(table["descriptor_tier"]) if "descriptor_tier" in table else set()
    for tier in (DISEASE_SPECIFIC, NOT_COMPARED, NUISANCE):
        if tier in tiers:
            return tier
    return NO_DESCRIPTOR


MEDIATION_COLUMNS = ["a_effect", "total_effect", "direct_effect", "mediation_share", "mediation_low", "mediation_high",
                     "mediates"]


def _mediation_estimates(unit: np.ndarray, disease: np.ndarray, mediators: np.ndarray,
                         covariates: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """(total effect, a per mediator, direct effect per mediator, b per mediator) by Frisch-Waugh-Lovell.

    total: the disease indicator's coefficient for the unit given the covariates; a: the same for
    each mediator; direct / b: the disease's and the mediator's coefficients when the mediator
    joins the covariates (each mediator on its own).
    """
    design = np.column_stack([np.ones(len(unit)), covariates]) if covariates.size else np.ones((len(unit), 1))
    stacked = np.column_stack([unit, disease.astype(float), mediators])
    coef, *_ = np.linalg.lstsq(design, stacked, rcond=None)
    residual = stacked - design @ coef
    u, d, m = residual[:, 0], residual[:, 1], residual[:, 2:]
    dd, du = float(d @ d), float(d @ u)
    if dd < 1e-12:
        nan = np.full(m.shape[1], np.nan)
        return np.nan, nan, nan, nan
    dm, mm, mu = d @ m, (m**2).sum(axis=0), m.T @ u
    determinant = dd * mm - dm**2
    with np.errstate(divide="ignore", invalid="ignore"):
        direct = np.where(determinant > 1e-12, (du * mm - dm * mu) / determinant, np.nan)
        b = np.where(determinant > 1e-12, (dd * mu - dm * du) / determinant, np.nan)
    return du / dd, dm / dd, direct, b


def mediation(unit: np.ndarray, disease: np.ndarray, mediators: np.ndarray, covariates: np.ndarray,
              names: list[str], *, resamples: int, level: float, seed: int) -> pd.DataFrame:
    """Between the disease and the controls: does a radiomics feature carry the unit's difference?

    All arrays are per patient (disease and control patients together): ``unit`` and the
    ``mediators`` as ranks within their fold, ``disease`` the indicator, ``covariates`` the fold
    and source indicators (fold is a stratum). Per mediator: ``a_effect`` (its own disease-vs-
    control difference, in rank units), the unit's total and direct effects (without / with the
    mediator adjusted for) and the **mediation share** 1 - direct / total, with a patient
    bootstrap CI (resampled within the disease and within the controls). ``mediates``: the
    indirect path a x b has the total effect's sign (the feature differs between the groups in
    the unit's direction) and the share's CI lies above 0. A descriptor that only tracks
    something every image has moves the unit within each group but carries none of the
    difference between them: its share is near 0.
    """
    total, a, direct, b = _mediation_estimates(unit, disease, mediators, covariates)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(disease), np.flatnonzero(~disease)]
    shares = []
    for _ in range(resamples):
        rows = np.concatenate([rng.choice(g, len(g), replace=True) for g in groups if len(g)])
        t, _a, dr, _b = _mediation_estimates(unit[rows], disease[rows], mediators[rows], covariates[rows])
        with np.errstate(divide="ignore", invalid="ignore"):
            shares.append(1 - dr / t if abs(t) > 1e-12 else np.full(len(names), np.nan))
    alpha = (1 - level) / 2
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        # A resample whose share is undefined for every mediator (no effect left) gives all-NaN columns: expected.
        warnings.simplefilter("ignore", category=RuntimeWarning)
        share = 1 - direct / total if abs(total) > 1e-12 else np.full(len(names), np.nan)
        low = np.nanquantile(np.array(shares), alpha, axis=0) if shares else np.full(len(names), np.nan)
        high = np.nanquantile(np.array(shares), 1 - alpha, axis=0) if shares else np.full(len(names), np.nan)
    consistent = np.sign(a * b) == np.sign(total)
    return pd.DataFrame({"feature": names, "a_effect": a, "total_effect": total, "direct_effect": direct,
                         "mediation_share": share, "mediation_low": low, "mediation_high": high,
                         "mediates": consistent & (np.nan_to_num(low, nan=-1.0) > 0)})

