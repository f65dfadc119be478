"""Candidate biomarkers selected on some patients and confirmed on others, within sources, then gated.

For every held-out fold k and class c, matched features (:mod:`cxrbio.analysis.matching`) are
*selected* on the other folds only: a feature's score is the mean, over folds j != k that hold
one of its dims, of that dim's percentile rank of mean |SHAP| for c among fold j's dims (a fold
without one counts 0, so features every model has are preferred; ranks,
not SHAP shares: a share scales with how many live channels a model has), and its expected
direction is the sign of its effect on those folds' held-out images in the primary contrast. The
``top_k`` best are then *confirmed* on fold k's held-out patients with fold k's own dim, one
value per patient (the mean over the patient's images).

**The contrasts, within sources.** The primary contrast is the class against the control class
(``analysis.control_class``, healthy controls: Normal); for the control class itself, and when
there is none, against the rest. One-vs-rest is reported beside it as the secondary contrast.
Both are estimated *within strata of held-out fold x source* (:mod:`cxrbio.analysis.stratified`:
van Elteren's stratified Wilcoxon; a stratified permutation p where a stratum holds fewer than
``analysis.permutation_below`` patients of either group), over only the strata holding both
groups: the class's design (:mod:`cxrbio.confounding.design`) says which. A class estimable within
recorded sources is compared only there; a class without recorded sources within the acquisition
groups inferred from its files; a class no stratum can compare is not tested. The AUC is the
stratified AUC (0.5: no difference), its CI a bootstrap of patients within each (stratum, group);
folds combine as strata do.

Gates, all fixed in config (``analysis.gate_*``) before the analysis runs:

* ``confirmation``: q < ``gate_q``; :func:`gate` reads the BH q within the strategy and class
  (``q``), and the analyze stage then replaces it with the error rate across every (strategy,
  class) family (:mod:`cxrbio.analysis.error_rate`: ``q_hier``) and settles the verdict again;
* ``direction``: tested on at least ``gate_min_folds`` held-out folds, a majority of which lie on
  the side the other folds predicted, and the combined effect on the predicted side (the
  confirmation p is one-sided in that direction); with ``direction_rule: random-effects`` also the
  Hartung-Knapp pooled effect over folds, one-sided p below ``gate_q``;
* ``audit``: none of its audited dims flagged as a likely shortcut (``analysis.shortcut_margin``);
* ``source``: the class's *source tier* is ``free of source`` (estimated within recorded sources)
  or ``source unverified`` (within inferred acquisition groups); ``not estimable`` (no stratum holds
  both groups) and ``acquisition-confounded`` (the scan's acquisition baseline names the class and
  no recorded source separates the claim from it) never pass. Untestable is never a pass.
* ``acquisition``: within each class its patient values do not differ by a recorded covariate
  (sex, view, device, ...: Kruskal-Wallis within each class, Bonferroni over the covariates).

A within-class difference between the class's two largest recorded sources is reported as an
*equivalence* flag (``source_equivalent``: TOST on the source AUC, margin
``analysis.source_equivalence_margin``), not a gate: strata already keep the source out of the
estimate, and "not significant" would be absence of evidence. Radiomics descriptors are a tier
(described or not), not a gate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from cxrbio.analysis import stratified
from cxrbio.analysis.matching import MatchedFeatures
from cxrbio.analysis.stats import rank_auc
from cxrbio.confounding.design import INFERRED, NOT_ESTIMABLE, RECORDED, UNVERIFIED
from cxrbio.confounding.source_probe import UNKNOWN
from cxrbio.evaluation.multiple_testing import benjamini_hochberg

FREE_OF_SOURCE = "free of source"
SOURCE_UNVERIFIED = "source unverified"
TIER_NOT_ESTIMABLE = "not estimable"
ACQUISITION_CONFOUNDED = "acquisition-confounded"
#: The source tiers a candidate may pass with (docs/analysis.md).
PASSING_TIERS = (FREE_OF_SOURCE, SOURCE_UNVERIFIED)


@dataclass(frozen=True)
class ClassDesign:
    """Where a class is compared: ``kind`` recorded (sources), inferred (acquisition groups) or none; the strata."""

    kind: str
    strata: frozenset[str]


def tiers_of(designs: dict[str, ClassDesign], acquisition_flagged: list[str]) -> dict[str, str]:
    """Each class's source tier from its design and the acquisition baseline's verdict."""
    flagged = set(acquisition_flagged)
    out = {}
    for cls, design in designs.items():
        if design.kind == RECORDED and design.strata:
            out[cls] = FREE_OF_SOURCE
        elif design.kind == INFERRED and design.strata:
            out[cls] = ACQUISITION_CONFOUNDED if cls in flagged else SOURCE_UNVERIFIED
        else:
            out[cls] = TIER_NOT_ESTIMABLE
    return out


def designs_from_table(table: pd.DataFrame) -> dict[str, ClassDesign]:
    """:class:`ClassDesign` per class from a design table (:func:`cxrbio.confounding.design.design_table`)."""
    out = {}
    for row in table.to_dict("records"):
        kind = {"estimable": RECORDED, UNVERIFIED: INFERRED, NOT_ESTIMABLE: "none"}[row["design"]]
        out[str(row["class"])] = ClassDesign(kind, frozenset(s for s in str(row["strata"]).split(", ") if s))
    return out


@dataclass
class PatientTable:
    """One held-out fold's patients: one row each, the mean of its images' dim values, and where they were imaged."""

    fold: int
    patients: np.ndarray
    y: np.ndarray  # the patient's label (its images' most common)
    values: pd.DataFrame  # patients x dims
    targets: dict[str, np.ndarray]  # covariates per patient ('' unknown)
    stratum: np.ndarray = field(default_factory=lambda: np.array([]))  # recorded source, or acquisition group
    kind: np.ndarray = field(default_factory=lambda: np.array([]))  # 'recorded' or 'inferred'
    group: np.ndarray = field(default_factory=lambda: np.array([]))  # acquisition group (always inferred)

    def __post_init__(self) -> None:
        n = len(self.patients)
        if len(self.stratum) != n:  # no strata given (tests, old manifests): one stratum, nothing recorded
            self.stratum = np.full(n, "all", dtype=object)
            self.kind = np.full(n, INFERRED, dtype=object)
            self.group = np.full(n, "all", dtype=object)

    def labels_for(self, design: ClassDesign | None) -> tuple[np.ndarray, np.ndarray]:
        """(stratum label per patient, usable) for a class compared as ``design`` says (None: every patient)."""
        if design is None:
            return self.stratum, np.ones(len(self.patients), bool)
        if design.kind == RECORDED:
            return self.stratum, (self.kind == RECORDED) & np.isin(self.stratum, list(design.strata))
        if design.kind == INFERRED:
            return self.group, np.isin(self.group, list(design.strata))
        return self.stratum, np.zeros(len(self.patients), bool)


#: In-memory manifest columns (never written): each image's stratum, its kind, its acquisition group.
STRATA_COLUMNS = ("_stratum", "_stratum_kind", "_acquisition_group")


def with_strata(manifest: pd.DataFrame) -> pd.DataFrame:
    """``manifest`` with :data:`STRATA_COLUMNS` (:func:`cxrbio.confounding.design.strata`)."""
    from cxrbio.confounding.design import inferred_groups, strata

    stratum, kind = strata(manifest)
    return manifest.assign(**dict(zip(STRATA_COLUMNS, (stratum, kind, inferred_groups(manifest)))))


def patient_table(fold: int, image_ids: np.ndarray, values: np.ndarray, dims: list[str], manifest: pd.DataFrame,
                  targets: dict[str, pd.Series]) -> PatientTable:
    """``manifest``'s optional :data:`STRATA_COLUMNS` (:func:`with_strata`) say where images come from."""
    rows = manifest.loc[image_ids]
    frame = pd.DataFrame(values, columns=dims)
    frame["patient"] = rows["patient_id"].astype(str).to_numpy()
    means = frame.groupby("patient", sort=True)[dims].mean()

    def per_patient(series: pd.Series, how: str = "mode") -> np.ndarray:
        tagged = pd.Series(series.to_numpy(), index=frame["patient"].to_numpy())
        picked = tagged.groupby(level=0).agg(lambda s: s.value_counts().index[0]) if how == "mode" \
            else tagged.groupby(level=0).first()
        return picked.reindex(means.index).to_numpy()

    labels = per_patient(rows["y"])
    per_target = {name: pd.Series(per_patient(series.loc[image_ids].astype(str).replace({UNKNOWN: ""}), "first"))
                  .fillna("").to_numpy() for name, series in targets.items()}
    located = {}
    if set(STRATA_COLUMNS) <= set(rows.columns):
        located = {name: per_patient(rows[column]).astype(object) for name, column in zip(("stratum", "kind", "group"),
                                                                                           STRATA_COLUMNS)}
    return PatientTable(fold, means.index.to_numpy(), labels.astype(int), means, per_target, **located)


def percentile_ranks(shap: pd.DataFrame) -> pd.DataFrame:
    """fold, class, dim, shap_rank (0..1 within the fold and class; 1 = the largest mean |SHAP|)."""
    out = shap[["fold", "class", "dim", "mean_abs_shap"]].copy()
    out["shap_rank"] = out.groupby(["fold", "class"])["mean_abs_shap"].rank(pct=True)
    return out


def select(matched: MatchedFeatures, ranks: pd.DataFrame, effects: pd.DataFrame, *, held_out: int, cls: str,
           top: int, long: pd.DataFrame | None = None) -> pd.DataFrame:
    """The ``top`` features for ``cls`` by their SHAP rank on the folds other than ``held_out`` (0 where unmatched).

    ``effects``: fold, class, dim, auc (image-level one-vs-rest on that fold's held-out images) and,
    optionally, auc_control (the class against the control class there, NaN for the control class).
    The expected direction is the sign of the primary contrast's effect on those folds: against the
    controls where it was measured, else against the rest. Only features with a dim in ``held_out``
    and in at least one other fold are eligible. ``long``: ``matched.table()`` when the caller
    already has it (it is the same for every fold and class).
    """
    long = matched.table() if long is None else long
    others = long[long["fold"] != held_out]
    others = others.merge(ranks[ranks["class"] == cls][["fold", "dim", "shap_rank"]], on=["fold", "dim"], how="left")
    wanted = ["fold", "dim", "auc"] + (["auc_control"] if "auc_control" in effects else [])
    others = others.merge(effects[effects["class"] == cls][wanted], on=["fold", "dim"], how="left")
    eligible = set(long.loc[long["fold"] == held_out, "feature"])
    others = others[others["feature"].isin(eligible)]
    if others.empty:
        return pd.DataFrame(columns=["feature", "selection_score", "selection_folds", "expected_direction"])
    n_other = len([f for f in matched.folds if f != held_out])
    if "auc_control" not in others:
        others["auc_control"] = np.nan
    score = others.groupby("feature").agg(selection_score=("shap_rank", lambda r: float(np.nansum(r)) / max(1, n_other)),
                                          selection_folds=("fold", "nunique"),
                                          effect=("auc", lambda a: float(np.nansum(np.asarray(a) - 0.5))),
                                          effect_control=("auc_control", lambda a: float(np.nansum(np.asarray(a) - 0.5))),
                                          controlled=("auc_control", lambda a: bool(np.isfinite(np.asarray(a, float)).any())))
    primary = np.where(score["controlled"], score["effect_control"], score["effect"])
    score["expected_direction"] = np.sign(primary).astype(int)
    score = score[score["expected_direction"] != 0].drop(columns=["effect", "effect_control", "controlled"])
    return score.sort_values("selection_score", ascending=False).head(top).reset_index()


@dataclass
class Confirmation:
    per_fold: pd.DataFrame  # class, feature, fold, dim, contrast, counts, t/var/weight, auc, z, p, expected_direction, agrees, *_rest
    combined: pd.DataFrame  # class, feature, folds_tested, folds_agree, auc and CI, z, p, p_method, q, *_rest
    power: pd.DataFrame  # class, fold, contrast, n_class, n_reference (patients in usable strata), strata, confirmed
    notes: list[str] = field(default_factory=list)


def control_effects(fold: int, values: np.ndarray, y: np.ndarray, dims: list[str], classes: list[str],
                    control: int | None, min_group: int = 3) -> pd.DataFrame:
    """fold, class, dim, auc_control: each class's images against the control class's (image level, for selection)."""
    frames = []
    if control is not None and int((y == control).sum()) >= min_group:
        for c, cls in enumerate(classes):
            if c == control or int((y == c).sum()) < min_group:
                continue
            rows = (y == c) | (y == control)
            frames.append(pd.DataFrame({"fold": fold, "class": cls, "dim": dims,
                                        "auc_control": rank_auc(values[rows], (y == c)[rows])}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["fold", "class", "dim", "auc_control"])


PER_FOLD_COLUMNS = ["class", "feature", "fold", "dim", "contrast", "n_patients", "n_class", "n_reference", "strata",
                    "smallest", "t", "var", "weight", "auc", "z", "p", "selection_score", "selection_folds",
                    "expected_direction", "agrees", "n_rest", "t_rest", "var_rest", "weight_rest", "smallest_rest",
                    "auc_rest", "z_rest"]


def confirm(matched: MatchedFeatures, tables: dict[int, PatientTable], ranks: pd.DataFrame, effects: pd.DataFrame,
            classes: list[str], *, top: int, min_patients: int, resamples: int, level: float, seed: int,
            control: int | None = None, designs: dict[str, ClassDesign] | None = None,
            permutation_below: int = 5, permutations: int = 2000) -> Confirmation:
    """Select on the other folds, confirm on each held-out fold within its strata, combine, BH within each class.

    ``control``: the index of the control class (the primary contrast's reference for the other
    classes); None: every class against the rest. ``designs``: where each class is compared (None:
    every patient, one stratum per fold). A class whose design has no stratum is not tested (noted).
    """
    rows, power, notes, boot = [], [], [], {}
    parts: dict[tuple[str, str], dict[str, Any]] = {}
    rng = np.random.default_rng(seed)
    long = matched.table()
    for c, cls in enumerate(classes):
        design = designs.get(cls) if designs is not None else None
        if design is not None and not design.strata:
            notes.append(f"{cls}: no stratum (source) holds both the class and its reference group: not estimable, "
                         "not tested (confounding/design.parquet says what data would make it so).")
            continue
        versus_control = control is not None and c != control
        contrast = f"vs {classes[control]}" if versus_control and control is not None else "vs rest"
        for fold, table in sorted(tables.items()):
            labels, usable = table.labels_for(design)
            mine = (table.y == c) & usable
            reference = ((table.y == control) if versus_control else (table.y != c)) & usable
            rest = (table.y != c) & usable
            found = stratified.blocks(np.zeros((len(table.y), 1)), mine, reference, labels)
            n_class = sum(b.n_group for b in found)
            n_reference = sum(b.n_reference for b in found)
            enough = n_class >= min_patients and n_reference >= min_patients
            power.append({"class": cls, "fold": fold, "contrast": contrast, "n_class": n_class, "n_reference": n_reference,
                          "strata": len(found), "confirmed": enough})
            if not enough:
                continue
            chosen = select(matched, ranks, effects, held_out=fold, cls=cls, top=top, long=long)
            if chosen.empty:
                continue
            dims = [matched.dims.loc[f, fold] for f in chosen["feature"]]
            values = table.values[dims].to_numpy(np.float64)
            primary = stratified.blocks(values, mine, reference, labels)
            primary_all = stratified.combine(primary, len(dims))
            secondary = stratified.blocks(values, mine, rest, labels) if versus_control else primary
            secondary_all = stratified.combine(secondary, len(dims))
            boot_t = stratified.bootstrap_t(values, mine, reference, labels, resamples=resamples, rng=rng)
            item: Any  # pandas types rows and group keys loosely
            for j, item in enumerate(chosen.itertuples()):
                key = (cls, item.feature)
                boot[(cls, item.feature, fold)] = boot_t[:, j]
                parts.setdefault(key, {"primary": [], "rest": [], "signs": [], "signs_rest": []})
                parts[key]["primary"] += [_column(b, j) for b in primary]
                parts[key]["rest"] += [_column(b, j) for b in secondary]
                parts[key]["signs"] += [int(item.expected_direction)] * len(primary)
                parts[key]["signs_rest"] += [int(item.expected_direction)] * len(secondary)
                auc = float(primary_all.auc[j])
                rows.append({"class": cls, "feature": item.feature, "fold": fold, "dim": dims[j], "contrast": contrast,
                             "n_patients": primary_all.n_group + primary_all.n_reference, "n_class": primary_all.n_group,
                             "n_reference": primary_all.n_reference, "strata": primary_all.strata,
                             "smallest": primary_all.smallest, "t": float(primary_all.t[j]), "var": float(primary_all.var[j]),
                             "weight": primary_all.weight, "auc": auc, "z": float(primary_all.z[j]),
                             "p": float(primary_all.p_normal[j]), "selection_score": float(item.selection_score),
                             "selection_folds": int(item.selection_folds),
                             "expected_direction": int(item.expected_direction),
                             "agrees": bool(np.sign(auc - 0.5) == item.expected_direction),
                             "n_rest": secondary_all.n_reference, "t_rest": float(secondary_all.t[j]),
                             "var_rest": float(secondary_all.var[j]), "weight_rest": secondary_all.weight,
                             "smallest_rest": secondary_all.smallest, "auc_rest": float(secondary_all.auc[j]),
                             "z_rest": float(secondary_all.z[j])})
        skipped = [p["fold"] for p in power if p["class"] == cls and not p["confirmed"]]
        if len(skipped) == len(tables):
            notes.append(f"{cls}: no held-out fold has {min_patients} patients of the class and of its reference group "
                         f"({contrast.removeprefix('vs ')}) in strata holding both; not confirmed "
                         "(analysis.confirm_min_patients).")
        elif skipped:
            notes.append(f"{cls}: fold(s) {', '.join(map(str, skipped))} have fewer than {min_patients} patients of the "
                         f"class or of its reference group in strata holding both; not confirmed there.")
    per_fold = pd.DataFrame(rows, columns=PER_FOLD_COLUMNS)
    combined = combine(per_fold, boot, parts, level, permutation_below=permutation_below, permutations=permutations,
                       rng=rng)
    return Confirmation(per_fold, combined, pd.DataFrame(power), notes)


def _column(block: stratified.Block, j: int) -> stratified.Block:
    return stratified.Block(block.ranks[:, j:j + 1], block.in_group, block.t[j:j + 1], block.var[j:j + 1], block.weight)


def predicted_direction(part: pd.DataFrame) -> int:
    """A feature's predicted side over its tested folds: the majority of the folds' predictions (the first on a tie)."""
    return int(np.sign(part["expected_direction"].sum())) or int(part["expected_direction"].iloc[0])


COMBINED_COLUMNS = ["class", "feature", "contrast", "folds_tested", "folds_agree", "expected_direction", "auc", "auc_low",
                    "auc_high", "z", "p", "p_method", "q", "n_patients", "n_class", "n_reference", "strata", "auc_rest",
                    "z_rest", "p_rest", "q_rest", "re_auc", "re_low", "re_high", "re_p", "heterogeneity_q", "i2"]

#: Cochran's Q and I^2 are reported from this many folds on (fewer say nothing about heterogeneity).
HETEROGENEITY_MIN_FOLDS = 5


def combine(per_fold: pd.DataFrame, boot: dict[tuple[str, str, int], np.ndarray], parts: dict[tuple[str, str], dict],
            level: float, *, permutation_below: int, permutations: int, rng: np.random.Generator) -> pd.DataFrame:
    """Per (class, feature): the directed stratified statistic over every (fold, stratum) block, its CI, BH q per class.

    **One-sided, in the predicted direction.** Each held-out fold's direction was fixed by the other
    folds before it was tested (:func:`select`); its statistic enters the sum with that sign, so a
    fold on the wrong side counts *against* the effect, and the p is one-sided (``z`` is the
    directed z: positive on the predicted side). A p-value is the normal approximation's unless a
    block holds fewer than ``permutation_below`` patients of either group: then a directed
    stratified permutation p (``permutations`` shuffles). ``auc`` is the plain stratified AUC of
    the class against its reference (0.5: none), on whichever side it falls. Beside it, a
    Hartung-Knapp random-effects pooling of the per-fold directed effects (``re_*``, as an AUC on
    the predicted side) with Cochran's Q and I^2 where at least ``HETEROGENEITY_MIN_FOLDS`` folds
    were tested.
    """
    if per_fold.empty:
        return pd.DataFrame(columns=COMBINED_COLUMNS)
    out = []
    cls: Any  # pandas types rows and group keys loosely
    feature: Any
    for (cls, feature), part in per_fold.groupby(["class", "feature"], sort=False):
        weight = float(part["weight"].sum())
        sign = part["expected_direction"].to_numpy(float)
        t, var = float(part["t"].sum()), float(part["var"].sum())
        directed = float((sign * part["t"].to_numpy(float)).sum())
        z = directed / np.sqrt(var) if var > 0 else 0.0
        auc = 0.5 + t / weight if weight > 0 else np.nan
        with np.errstate(divide="ignore", invalid="ignore"):
            se = np.sqrt(part["var"].to_numpy(float)) / part["weight"].to_numpy(float)
        pooled = stratified.random_effects(sign * (part["auc"].to_numpy(float) - 0.5), se, level=level)
        heterogeneous = pooled.k >= HETEROGENEITY_MIN_FOLDS
        draws = 0.5 + np.sum([boot[(cls, feature, int(f))] for f in part["fold"]], axis=0) / weight
        low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
        small = int(part["smallest"].min()) < permutation_below
        blocks_of = parts[(cls, feature)]
        p = float(stratified.permutation_p(blocks_of["primary"], resamples=permutations, rng=rng,
                                           signs=np.asarray(blocks_of["signs"]))[0]) \
            if small else float(stats.norm.sf(z))
        t_rest, var_rest, w_rest = float(part["t_rest"].sum()), float(part["var_rest"].sum()), float(part["weight_rest"].sum())
        directed_rest = float((sign * part["t_rest"].to_numpy(float)).sum())
        z_rest = directed_rest / np.sqrt(var_rest) if var_rest > 0 else 0.0
        small_rest = int(part["smallest_rest"].min()) < permutation_below
        p_rest = float(stratified.permutation_p(blocks_of["rest"], resamples=permutations, rng=rng,
                                                signs=np.asarray(blocks_of["signs_rest"]))[0]) \
            if small_rest else float(stats.norm.sf(z_rest))
        expected = predicted_direction(part)
        out.append({"class": cls, "feature": feature, "contrast": part["contrast"].iloc[0], "folds_tested": len(part),
                    "folds_agree": int(part["agrees"].sum()), "expected_direction": expected, "auc": auc,
                    "auc_low": float(low), "auc_high": float(high), "z": z, "p": p,
                    "p_method": "stratified permutation" if small else "van Elteren (normal)",
                    "n_patients": int(part["n_patients"].sum()), "n_class": int(part["n_class"].sum()),
                    "n_reference": int(part["n_reference"].sum()), "strata": int(part["strata"].sum()),
                    "auc_rest": 0.5 + t_rest / w_rest if w_rest > 0 else np.nan, "z_rest": z_rest, "p_rest": p_rest,
                    "re_auc": 0.5 + pooled.effect, "re_low": 0.5 + pooled.low, "re_high": 0.5 + pooled.high,
                    "re_p": pooled.p, "heterogeneity_q": pooled.q if heterogeneous else np.nan,
                    "i2": pooled.i2 if heterogeneous else np.nan})
    combined = pd.DataFrame(out)
    combined["q"] = combined["q_rest"] = np.nan
    for _, index in combined.groupby("class").groups.items():
        combined.loc[index, "q"] = benjamini_hochberg(combined.loc[index, "p"].to_numpy())
        combined.loc[index, "q_rest"] = benjamini_hochberg(combined.loc[index, "p_rest"].to_numpy(float))
    return combined[COMBINED_COLUMNS]


def acquisition_tests(per_fold: pd.DataFrame, tables: dict[int, PatientTable], classes: list[str], *,
                      min_patients: int = 3) -> pd.DataFrame:
    """Per (class, feature, target): is the feature's patient value predicted by a covariate within class?

    The feature's values are percentile-ranked within each fold (each fold has its own dim), pooled
    over its tested folds; within each class, a Kruskal-Wallis test across the target's known values
    with at least ``min_patients`` patients; H and its degrees of freedom are summed over classes
    (independent groups: the sum is chi-squared). The source is not a target: the contrasts are
    estimated within sources, and :func:`source_equivalence` flags a within-class source difference.
    """
    out = []
    if per_fold.empty:
        return pd.DataFrame(columns=["class", "feature", "target", "statistic", "df", "p"])
    targets = sorted({t for table in tables.values() for t in table.targets})
    cls: Any  # pandas types rows and group keys loosely
    feature: Any
    for (cls, feature), part in per_fold.groupby(["class", "feature"], sort=False):
        pooled: dict[str, list[np.ndarray]] = {t: [] for t in ["value", "y", *targets]}
        item: Any  # pandas types rows and group keys loosely
        for item in part.itertuples():
            table = tables[int(item.fold)]
            pooled["value"].append(table.values[item.dim].rank(pct=True).to_numpy())
            pooled["y"].append(table.y)
            for t in targets:
                pooled[t].append(table.targets.get(t, np.full(len(table.y), "")))
        value, y = np.concatenate(pooled["value"]), np.concatenate(pooled["y"])
        for t in targets:
            level = np.concatenate(pooled[t])
            h_sum, df_sum = 0.0, 0
            for c in range(len(classes)):
                rows = (y == c) & (level != "")
                groups = [value[rows & (level == v)] for v in np.unique(level[rows])]
                groups = [g for g in groups if len(g) >= min_patients]
                if len(groups) < 2 or np.ptp(np.concatenate(groups)) == 0:
                    continue
                h_sum += float(stats.kruskal(*groups).statistic)
                df_sum += len(groups) - 1
            out.append({"class": cls, "feature": feature, "target": t, "statistic": h_sum if df_sum else np.nan,
                        "df": df_sum, "p": float(stats.chi2.sf(h_sum, df_sum)) if df_sum else np.nan})
    return pd.DataFrame(out, columns=["class", "feature", "target", "statistic", "df", "p"])


EQUIVALENCE_COLUMNS = ["class", "feature", "source_pair", "source_auc", "source_tost_p", "source_equivalent", "margin"]


def source_equivalence(per_fold: pd.DataFrame, tables: dict[int, PatientTable], classes: list[str], *, margin: float,
                       alpha: float, min_patients: int = 3) -> pd.DataFrame:
    """Per tested (class, feature): does the feature differ between the class's two largest recorded sources?

    Within the class's patients, source A against source B (the two with most patients over the
    feature's folds), stratified over those folds (van Elteren); TOST that the AUC lies within
    ``0.5 +- margin``. ``source_equivalent``: True (shown equivalent at ``alpha``), False (not shown),
    None (no two recorded sources with ``min_patients`` each: untestable).
    """
    out = []
    cls: Any  # pandas types rows and group keys loosely
    feature: Any
    for (cls, feature), part in per_fold.groupby(["class", "feature"], sort=False):
        c = classes.index(cls)
        counts: dict[str, int] = {}
        for fold in part["fold"]:
            table = tables[int(fold)]
            mine = (table.y == c) & (table.kind == RECORDED)
            for source, n in pd.Series(table.stratum[mine]).value_counts().items():
                counts[str(source)] = counts.get(str(source), 0) + int(n)
        largest = sorted((s for s, n in counts.items() if n >= min_patients), key=lambda s: (-counts[s], s))[:2]
        row = {"class": cls, "feature": feature, "source_pair": "", "source_auc": np.nan, "source_tost_p": np.nan,
               "source_equivalent": None, "margin": margin}
        if len(largest) == 2:
            a, b = sorted(largest)
            found = []
            item: Any  # pandas types rows and group keys loosely
            for item in part.itertuples():
                table = tables[int(item.fold)]
                mine = (table.y == c) & (table.kind == RECORDED)
                found += stratified.blocks(table.values[[item.dim]].to_numpy(np.float64), mine & (table.stratum == a),
                                           mine & (table.stratum == b), np.zeros(len(table.y)))
            together = stratified.combine(found, 1)
            if together.weight > 0 and together.var[0] > 0:
                se = np.sqrt(together.var[0]) / together.weight
                p = float(stratified.tost(together.auc, np.array([se]), margin)[0])
                row.update(source_pair=f"{a} vs {b}", source_auc=float(together.auc[0]), source_tost_p=p,
                           source_equivalent=bool(p < alpha))
        out.append(row)
    return pd.DataFrame(out, columns=EQUIVALENCE_COLUMNS)


def specificity_profile(per_fold: pd.DataFrame, tables: dict[int, PatientTable], classes: list[str], *,
                        min_patients: int = 3) -> pd.DataFrame:
    """Per tested (class, feature): its AUC against each other class, on the side it was predicted on.

    Held-out patients of the feature's tested folds, within fold x recorded-source strata (van
    Elteren), one other class at a time; the AUC is directed (above 0.5: the class lies on the
    predicted side of that class too). A marker of its disease stays above 0.5 against every other
    class; one that marks a group of diseases (or only "not Normal") does not. Columns: class,
    feature, other, auc_directed, n_class, n_other (NaN AUC where fewer than ``min_patients``).
    """
    rows = []
    cls: Any  # pandas types rows and group keys loosely
    feature: Any
    for (cls, feature), part in per_fold.groupby(["class", "feature"], sort=False):
        c = classes.index(cls)
        direction = predicted_direction(part)
        for k, other in enumerate(classes):
            if k == c:
                continue
            found = []
            item: Any  # pandas types rows and group keys loosely
            for item in part.itertuples():
                table = tables[int(item.fold)]
                found += stratified.blocks(table.values[[item.dim]].to_numpy(np.float64), table.y == c, table.y == k,
                                           table.stratum)
            together = stratified.combine(found, 1)
            enough = together.n_group >= min_patients and together.n_reference >= min_patients
            auc = float(together.auc[0]) if enough and together.weight > 0 else np.nan
            rows.append({"class": cls, "feature": feature, "other": other,
                         "auc_directed": auc if direction > 0 or np.isnan(auc) else 1 - auc,
                         "n_class": together.n_group, "n_other": together.n_reference})
    return pd.DataFrame(rows, columns=["class", "feature", "other", "auc_directed", "n_class", "n_other"])


def profile_columns(profile: pd.DataFrame) -> pd.DataFrame:
    """class, feature, specificity ('Edema 0.91; Normal 0.88; ...', weakest first), min_auc_other, weakest_other."""
    if profile.empty:
        return pd.DataFrame(columns=["class", "feature", "specificity", "min_auc_other", "weakest_other"])
    out = []
    for (cls, feature), part in profile.groupby(["class", "feature"], sort=False):
        known = part.dropna(subset=["auc_directed"]).sort_values("auc_directed")
        out.append({"class": cls, "feature": feature,
                    "specificity": "; ".join(f"{o} {a:.2f}" for o, a in zip(known["other"], known["auc_directed"])),
                    "min_auc_other": float(known["auc_directed"].iloc[0]) if len(known) else np.nan,
                    "weakest_other": str(known["other"].iloc[0]) if len(known) else ""})
    return pd.DataFrame(out)


def marker_kind(direction: int, contrast: str) -> str:
    """'lesion marker' (higher in the disease than its reference) or 'negative marker' (lower: a normal pattern lost)."""
    side = "higher" if direction > 0 else "lower"
    reference = contrast.removeprefix("vs ") if contrast else "the rest"
    return f"lesion marker ({side} than {reference})" if direction > 0 else f"negative marker ({side} than {reference})"


def gate(combined: pd.DataFrame, acquisition: pd.DataFrame, audit: pd.DataFrame | None, settings: Any,
         tiers: dict[str, str] | None = None, equivalence: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every tested feature with each gate's outcome, its source tier, ``passed`` and ``failed_gates``; passing first.

    ``audit``: class, feature, flagged (any audited dim a likely shortcut); None when the audit
    did not run (its gate is then 'not run' and a feature cannot pass while ``gate_audit`` holds).
    ``tiers``: the source tier of each class (None: every class ``source unverified``: nothing was
    recorded about sources). ``equivalence``: :func:`source_equivalence`'s flags, joined (not a gate).
    """
    frame = combined.copy()
    frame["source_tier"] = [(tiers or {}).get(str(c), SOURCE_UNVERIFIED) for c in frame["class"]]
    frame["gate_source"] = frame["source_tier"].isin(PASSING_TIERS)
    frame["gate_confirmation"] = frame["q"] < settings.gate_q
    frame["gate_direction"] = direction_gate(frame, settings)
    if audit is not None and not audit.empty:
        frame = frame.merge(audit[["class", "feature", "audited_dims", "flagged_dims"]], on=["class", "feature"], how="left")
    else:
        frame["audited_dims"], frame["flagged_dims"] = np.nan, np.nan
    audited = frame["audited_dims"].fillna(0) > 0
    frame["gate_audit"] = np.where(audited, frame["flagged_dims"].fillna(0) == 0, np.nan)
    if not acquisition.empty:
        tested = acquisition.dropna(subset=["p"])
        counts = tested.groupby(["class", "feature"])["p"].agg(acquisition_p="min", acquisition_targets="size").reset_index()
        worst = tested.loc[tested.groupby(["class", "feature"])["p"].idxmin(), ["class", "feature", "target"]] \
            if not tested.empty else pd.DataFrame(columns=["class", "feature", "target"])
        counts = counts.merge(worst.rename(columns={"target": "acquisition_target"}), on=["class", "feature"], how="left")
        frame = frame.merge(counts, on=["class", "feature"], how="left")
    else:
        frame["acquisition_p"], frame["acquisition_targets"], frame["acquisition_target"] = np.nan, 0, ""
    adjusted = np.minimum(1.0, frame["acquisition_p"] * frame["acquisition_targets"].fillna(0))
    frame["acquisition_p_adjusted"] = adjusted
    frame["gate_acquisition"] = np.where(frame["acquisition_p"].notna(), adjusted >= settings.gate_q, True)
    if equivalence is not None and not equivalence.empty:
        frame = frame.merge(equivalence.drop(columns=["margin"]), on=["class", "feature"], how="left")
    else:
        frame["source_pair"], frame["source_auc"], frame["source_tost_p"], frame["source_equivalent"] = "", np.nan, np.nan, None
    frame["gate_audit_required"] = bool(settings.gate_audit)
    return settle(frame)


def settle(frame: pd.DataFrame) -> pd.DataFrame:
    """``passed`` and ``failed_gates`` from the ``gate_*`` columns; passing first within each class.

    Called again when a gate's outcome changes after :func:`gate` (the error rate across families
    replaces ``gate_confirmation``), so the verdict is always the one the columns show.
    """
    if frame.empty:
        return frame.assign(passed=pd.Series(dtype=bool), failed_gates=pd.Series(dtype=str))
    audit_required = bool(frame["gate_audit_required"].iloc[0]) if "gate_audit_required" in frame else False
    required = ["gate_confirmation", "gate_direction", "gate_source", "gate_acquisition"] + \
        (["gate_audit"] if audit_required else [])
    outcome = frame[required].astype(object).where(frame[required].notna(), False).astype(bool)
    frame = frame.copy()
    frame["passed"] = outcome.all(axis=1)
    untested = {"gate_audit": " (not audited)"}
    frame["failed_gates"] = [", ".join(_failed_name(g, raw, tier, untested)
                                       for g, ok, raw in zip(required, ok_row, raw_row) if not ok)
                             for ok_row, raw_row, tier in zip(outcome.to_numpy(), frame[required].to_numpy(),
                                                              frame["source_tier"])]
    return frame.sort_values(["class", "passed", "p"], ascending=[True, False, True]).reset_index(drop=True)


def direction_gate(frame: pd.DataFrame, settings: Any) -> pd.Series:
    """The direction gate: enough folds tested, a majority on the predicted side, the combined effect there too.

    Why a majority and the combined sign (not a fixed count of agreeing folds): with 10 folds, two
    on the predicted side and eight against would pass "at least 2 agree" and be reported on the
    side the data contradict.
    """
    tested = frame["folds_tested"] >= settings.gate_min_folds
    majority = 2 * frame["folds_agree"] > frame["folds_tested"]
    on_side = np.sign(frame["auc"] - 0.5) == frame["expected_direction"]
    outcome = tested & majority & on_side
    if getattr(settings, "direction_rule", "majority") == "random-effects":
        outcome &= frame["re_p"].fillna(1.0) < settings.gate_q
    return outcome


def _failed_name(gate_name: str, raw: Any, tier: str, untested: dict[str, str]) -> str:
    name = gate_name.removeprefix("gate_")
    if gate_name == "gate_source":
        return f"source ({tier})"
    return name + (untested.get(gate_name, "") if pd.isna(raw) else "")
