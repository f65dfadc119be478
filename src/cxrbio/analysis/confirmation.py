"""Candidate biomarkers selected on some patients and confirmed on others, then gated.

For every held-out fold k and class c, matched features (:mod:`cxrbio.analysis.matching`) are
*selected* on the other folds only: a feature's score is the mean, over folds j != k that hold
one of its dims, of that dim's percentile rank of mean |SHAP| for c among fold j's dims (a fold
without one counts 0, so features every model has are preferred; ranks,
not SHAP shares: a share scales with how many live channels a model has), and its expected
direction is the sign of its one-vs-rest effect on those folds' held-out images. The ``top_k``
best are then *confirmed* on fold k's held-out patients with fold k's own dim: one value per
patient (the mean over the patient's images), a one-vs-rest Mann-Whitney test, the AUC as the
effect size. A feature tested in several folds is combined over them (the folds' patients are
disjoint): Stouffer's z weighted by the square root of the patients, the AUC averaged with the
same weights, its CI from a patient bootstrap within each fold and class.

Gates, all fixed in config (``analysis.gate_*``) before the analysis runs:

* ``confirmation``: BH q < ``gate_q`` within the strategy and class, over every tested feature;
* ``direction``: fold k's effect on the side the other folds predicted in at least
  ``gate_min_folds`` folds;
* ``audit``: none of its audited dims flagged as a likely shortcut (``analysis.shortcut_margin``);
* ``acquisition``: within each class its patient values do not differ by source or by a
  covariate (Kruskal-Wallis within each class, summed over classes; Bonferroni over the targets;
  p >= ``gate_q``). Untestable (no source with enough patients beside another) counts as passed
  and says so.
* ``control``: the disease's patients also differ from the control class's (``control_class``,
  healthy controls: Normal) on the predicted side, BH q < ``gate_q`` (Stouffer over the folds, as
  above). One-vs-rest alone lets another disease's detector pass as a marker of every other class
  (it is lower in them than in a rest that holds that disease); a biomarker of a disease must
  differ from controls. Selection already asks it of the other folds: a feature whose effect
  against the controls there is not on the side of its effect against the rest is not selected.
  Not applicable to the control class itself; with no control class in the data the gate is not
  run (and says so).

Radiomics descriptors are a tier (described or not), not a gate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from cxrbio.analysis.matching import MatchedFeatures
from cxrbio.analysis.stats import mann_whitney, rank_auc
from cxrbio.confounding.source_probe import UNKNOWN
from cxrbio.multiple_testing import benjamini_hochberg


@dataclass
class PatientTable:
    """One held-out fold's patients: one row each, the mean of its images' dim values."""

    fold: int
    patients: np.ndarray
    y: np.ndarray  # the patient's label (its images' most common)
    values: pd.DataFrame  # patients x dims
    targets: dict[str, np.ndarray]  # 'source' and covariates per patient ('' unknown)


def patient_table(fold: int, image_ids: np.ndarray, values: np.ndarray, dims: list[str], manifest: pd.DataFrame,
                  targets: dict[str, pd.Series]) -> PatientTable:
    rows = manifest.loc[image_ids]
    frame = pd.DataFrame(values, columns=dims)
    frame["patient"] = rows["patient_id"].astype(str).to_numpy()
    means = frame.groupby("patient", sort=True)[dims].mean()
    labels = rows.assign(patient=frame["patient"].to_numpy()).groupby("patient", sort=True)["y"].agg(
        lambda s: s.value_counts().index[0])
    per_target = {}
    for name, series in targets.items():
        known = series.loc[image_ids].astype(str).replace({UNKNOWN: ""})
        first = pd.Series(known.to_numpy(), index=frame["patient"].to_numpy())
        per_target[name] = first.groupby(level=0).first().reindex(means.index).fillna("").to_numpy()
    return PatientTable(fold, means.index.to_numpy(), labels.reindex(means.index).to_numpy(int), means, per_target)


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
    Only features with a dim in ``held_out`` and in at least one other fold are eligible, and, where
    auc_control was measured, only those whose effect against the controls is on the side of their
    effect against the rest. ``long``:
    ``matched.table()`` when the caller already has it (it is the same for every fold and class).
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
    score["expected_direction"] = np.sign(score["effect"]).astype(int)
    # Against the controls on the side it is against the rest (where the other folds measured it).
    consistent = ~score["controlled"] | (np.sign(score["effect_control"]) == score["expected_direction"])
    score = score[(score["expected_direction"] != 0) & consistent].drop(columns=["effect", "effect_control", "controlled"])
    return score.sort_values("selection_score", ascending=False).head(top).reset_index()


def _auc_z(values: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column: one-vs-rest AUC and the signed Mann-Whitney z (scipy's tie-corrected normal approximation)."""
    u, p = mann_whitney(values, positive)
    auc = u / (int(positive.sum()) * int((~positive).sum()))
    z = np.sign(auc - 0.5) * stats.norm.isf(np.clip(np.asarray(p, float), 1e-300, 1.0) / 2)
    return auc, z


def _bootstrap_auc(values: np.ndarray, positive: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, columns) AUCs over patients resampled within each group (class and rest)."""
    pos, neg = np.flatnonzero(positive), np.flatnonzero(~positive)
    out = np.empty((resamples, values.shape[1]))
    for b in range(resamples):
        rows = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        out[b] = rank_auc(values[rows], positive[rows])
    return out


@dataclass
class Confirmation:
    per_fold: pd.DataFrame  # class, feature, fold, dim, n_patients, n_class, auc, z, p, expected_direction, agrees
    combined: pd.DataFrame  # class, feature, folds_tested, folds_agree, auc, auc_low, auc_high, z, p, q
    power: pd.DataFrame  # class, fold, n_class, n_rest (patients), confirmed (bool), note
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


def confirm(matched: MatchedFeatures, tables: dict[int, PatientTable], ranks: pd.DataFrame, effects: pd.DataFrame,
            classes: list[str], *, top: int, min_patients: int, resamples: int, level: float, seed: int,
            control: int | None = None) -> Confirmation:
    """Select on the other folds, confirm on each held-out fold, combine, BH within each class.

    ``control``: the index of the control class; each tested feature is then also compared, on the
    same held-out patients, between the class and the controls (``auc_control``, ``z_control``).
    """
    rows, power, notes, boot = [], [], [], {}
    rng = np.random.default_rng(seed)
    long = matched.table()
    for c, cls in enumerate(classes):
        for fold, table in sorted(tables.items()):
            positive = table.y == c
            n_class, n_rest = int(positive.sum()), int((~positive).sum())
            controls = (table.y == control) if control is not None and c != control else np.zeros(len(table.y), bool)
            n_control = int(controls.sum())
            enough = n_class >= min_patients and n_rest >= min_patients
            power.append({"class": cls, "fold": fold, "n_class": n_class, "n_rest": n_rest, "n_control": n_control,
                          "confirmed": enough})
            if not enough:
                continue
            chosen = select(matched, ranks, effects, held_out=fold, cls=cls, top=top, long=long)
            if chosen.empty:
                continue
            dims = [matched.dims.loc[f, fold] for f in chosen["feature"]]
            values = table.values[dims].to_numpy(np.float64)
            auc, z = _auc_z(values, positive)
            auc_control = z_control = np.full(len(dims), np.nan)
            if n_control >= min_patients:
                both = positive | controls
                auc_control, z_control = _auc_z(values[both], positive[both])
            boot_auc = _bootstrap_auc(values, positive, resamples, rng)
            for j, item in enumerate(chosen.itertuples()):
                boot[(cls, item.feature, fold)] = boot_auc[:, j]
                rows.append({"class": cls, "feature": item.feature, "fold": fold, "dim": dims[j],
                             "n_patients": n_class + n_rest, "n_class": n_class, "auc": float(auc[j]), "z": float(z[j]),
                             "p": float(2 * stats.norm.sf(abs(z[j]))), "selection_score": float(item.selection_score),
                             "selection_folds": int(item.selection_folds),
                             "expected_direction": int(item.expected_direction),
                             "agrees": bool(np.sign(auc[j] - 0.5) == item.expected_direction),
                             "n_control": n_control if n_control >= min_patients else 0,
                             "auc_control": float(auc_control[j]), "z_control": float(z_control[j])})
        skipped = [p["fold"] for p in power if p["class"] == cls and not p["confirmed"]]
        if len(skipped) == len(tables):
            notes.append(f"{cls}: no held-out fold has {min_patients} patients of the class and of the rest; "
                         "not confirmed (analysis.confirm_min_patients).")
        elif skipped:
            notes.append(f"{cls}: fold(s) {', '.join(map(str, skipped))} have fewer than {min_patients} patients of the "
                         "class or of the rest; not confirmed there.")
        if control is not None and c != control:
            short = [p["fold"] for p in power if p["class"] == cls and p["confirmed"] and p["n_control"] < min_patients]
            if short:
                notes.append(f"{cls}: fold(s) {', '.join(map(str, short))} have fewer than {min_patients} patients of the "
                             f"control class {classes[control]}; not compared with the controls there.")
    per_fold = pd.DataFrame(rows, columns=["class", "feature", "fold", "dim", "n_patients", "n_class", "auc", "z", "p",
                                           "selection_score", "selection_folds", "expected_direction", "agrees",
                                           "n_control", "auc_control", "z_control"])
    return Confirmation(per_fold, combine(per_fold, boot, level), pd.DataFrame(power), notes)


def combine(per_fold: pd.DataFrame, boot: dict[tuple[str, str, int], np.ndarray], level: float) -> pd.DataFrame:
    """Per (class, feature): Stouffer z over its tested folds, weighted AUC and its bootstrap CI, BH q per class."""
    columns = ["class", "feature", "folds_tested", "folds_agree", "expected_direction", "auc", "auc_low", "auc_high",
               "z", "p", "q", "n_patients", "auc_control", "z_control", "p_control", "q_control"]
    if per_fold.empty:
        return pd.DataFrame(columns=columns)
    out = []
    for (cls, feature), part in per_fold.groupby(["class", "feature"], sort=False):
        weights = np.sqrt(part["n_patients"].to_numpy(float))
        z = float((weights * part["z"]).sum() / np.sqrt((weights**2).sum()))
        n = part["n_patients"].to_numpy(float)
        auc = float((n * part["auc"]).sum() / n.sum())
        draws = np.sum([n_k * boot[(cls, feature, int(f))] for n_k, f in zip(n, part["fold"])], axis=0) / n.sum()
        low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
        expected = int(np.sign(part["expected_direction"].sum())) or int(part["expected_direction"].iloc[0])
        out.append({"class": cls, "feature": feature, "folds_tested": len(part), "folds_agree": int(part["agrees"].sum()),
                    "expected_direction": expected, "auc": auc, "auc_low": float(low), "auc_high": float(high), "z": z,
                    "p": float(2 * stats.norm.sf(abs(z))), "n_patients": int(n.sum()), **_combine_control(part)})
    combined = pd.DataFrame(out)
    combined["q"] = combined["q_control"] = np.nan
    for _, index in combined.groupby("class").groups.items():
        combined.loc[index, "q"] = benjamini_hochberg(combined.loc[index, "p"].to_numpy())
        combined.loc[index, "q_control"] = benjamini_hochberg(combined.loc[index, "p_control"].to_numpy(float))
    return combined[columns]


def _combine_control(part: pd.DataFrame) -> dict[str, float]:
    """The comparison with the controls over the folds where it ran: Stouffer z, weighted AUC, two-sided p."""
    ran = part[np.isfinite(part["z_control"].to_numpy(float)) & (part["n_control"] > 0)]
    if ran.empty:
        return {"auc_control": np.nan, "z_control": np.nan, "p_control": np.nan}
    n = (ran["n_class"] + ran["n_control"]).to_numpy(float)
    z = float((np.sqrt(n) * ran["z_control"]).sum() / np.sqrt(n.sum()))
    return {"auc_control": float((n * ran["auc_control"]).sum() / n.sum()), "z_control": z,
            "p_control": float(2 * stats.norm.sf(abs(z)))}


def acquisition_tests(per_fold: pd.DataFrame, tables: dict[int, PatientTable], classes: list[str], *,
                      min_patients: int = 3) -> pd.DataFrame:
    """Per (class, feature, target): is the feature's patient value predicted by the source (a covariate) within class?

    The feature's values are percentile-ranked within each fold (each fold has its own dim), pooled
    over its tested folds; within each class, a Kruskal-Wallis test across the target's known values
    with at least ``min_patients`` patients; H and its degrees of freedom are summed over classes
    (independent groups: the sum is chi-squared).
    """
    out = []
    if per_fold.empty:
        return pd.DataFrame(columns=["class", "feature", "target", "statistic", "df", "p"])
    targets = sorted({t for table in tables.values() for t in table.targets})
    for (cls, feature), part in per_fold.groupby(["class", "feature"], sort=False):
        pooled: dict[str, list[np.ndarray]] = {t: [] for t in ["value", "y", *targets]}
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


def gate(combined: pd.DataFrame, acquisition: pd.DataFrame, audit: pd.DataFrame | None, settings: Any,
         control: str | None = None) -> pd.DataFrame:
    """Every tested feature with each gate's outcome, ``passed`` and ``failed_gates``; passing ones first.

    ``audit``: class, feature, flagged (any audited dim a likely shortcut); None when the audit
    did not run (its gate is then 'not run' and a feature cannot pass while ``gate_audit`` holds).
    ``control``: the control class's name; None: no control class, the control gate is not run. A
    feature of another class that could not be compared with the controls (too few of them) does
    not pass while ``gate_control`` holds; for the control class itself the gate does not apply.
    """
    frame = combined.copy()
    use_control = control is not None and bool(getattr(settings, "gate_control", False))
    if use_control:
        same_side = np.sign(frame["auc_control"].astype(float) - 0.5) == frame["expected_direction"]
        outcome = np.where(frame["q_control"].notna(), (frame["q_control"] < settings.gate_q) & same_side, np.nan)
        frame["gate_control"] = np.where(frame["class"] == control, True, outcome)
    frame["gate_confirmation"] = frame["q"] < settings.gate_q
    frame["gate_direction"] = frame["folds_agree"] >= settings.gate_min_folds
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
    required = ["gate_confirmation", "gate_direction", "gate_acquisition"] + (["gate_audit"] if settings.gate_audit else []) \
        + (["gate_control"] if use_control else [])
    outcome = frame[required].astype(object).where(frame[required].notna(), False).astype(bool)
    frame["passed"] = outcome.all(axis=1)
    untested = {"gate_audit": " (not audited)", "gate_control": " (not tested)"}
    frame["failed_gates"] = [", ".join(g.removeprefix("gate_") + (untested.get(g, "") if pd.isna(raw) else "")
                                       for g, ok, raw in zip(required, ok_row, raw_row) if not ok)
                             for ok_row, raw_row in zip(outcome.to_numpy(), frame[required].to_numpy())]
    return frame.sort_values(["class", "passed", "p"], ascending=[True, False, True]).reset_index(drop=True)
