"""The analysis of one space: the frames the stage writes under analysis/<space>/ (schemas: docs/analysis.md).

Per strategy, fold by fold: statistics on the fold's out-of-fold embeddings, SHAP of the fold's
head, the top dims per class (candidates), their radiomics descriptors, CCA, UMAP and the
shortcut audit; then stability across folds and the ranking. The radiomics space gets the same
treatment (analysis/radiomics/), with its own classifier as the baseline. Which spaces are
redone, and writing the result, is the stage's business (:mod:`cxrbio.stages.analyze`): this
module returns a :class:`SpaceResult` and writes nothing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from cxrbio.analysis import association, attribution, stability
from cxrbio.analysis.inputs import AnalysisInputs, clean_columns, load_fold_embeddings
from cxrbio.analysis.projection import project, projection_table
from cxrbio.analysis.stats import class_tests
from cxrbio.confounding.source_probe import covariate_probes, covariate_targets, source_probe
from cxrbio.errors import ConfigError
from cxrbio.models import saving
from cxrbio.run.artifacts import RADIOMICS_SPACE
from cxrbio.run.fold_layout import model_file, predictions_file
from cxrbio.runtime.timing import timed

PARTS = ("attribution", "stats", "association", "stability", "projection", "audit")  # stability: radiomics bootstrap
RADIOMICS = RADIOMICS_SPACE
Say = Callable[[str], None]


@dataclass
class SpaceResult:
    """What the analysis of one space found: its ranking, and every table, document and array to keep.

    ``tables`` become ``<name>.parquet``, ``documents`` ``<name>.json`` and ``arrays`` a compressed
    ``<name>.npz`` of named arrays (:func:`cxrbio.run.analysis_files.write_space`).
    """

    ranking: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


@dataclass
class AnalysisSummary:
    strategies: list[str]
    timings: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    notes: list[str] = field(default_factory=list)
    candidates: dict[str, pd.DataFrame] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def probes(inputs: AnalysisInputs, space: str, values: np.ndarray, y: np.ndarray, ids: np.ndarray) -> pd.DataFrame:
    """Within each class: can the space tell the sources apart, or the covariates' values (docs/confounding.md)?"""
    settings = inputs.config.confounding
    rows = inputs.manifest.loc[ids]
    groups = rows["fold_group"].to_numpy()
    found = source_probe(space, values, y, rows["source"].to_numpy(), groups, inputs.classes,
                         permutations=settings.permutations, seed=settings.seed)
    targets = {k: v.to_numpy() for k, v in covariate_targets(rows, settings.covariates).items() if k != "source"}
    covariates = covariate_probes(space, values, y, targets, groups, inputs.classes, permutations=settings.permutations,
                                  seed=settings.seed)
    parts = [f for f in (found, covariates) if not f.empty]
    return pd.concat(parts, ignore_index=True) if parts else found


def analyze_radiomics(inputs: AnalysisInputs, summary: AnalysisSummary, say: Say) -> SpaceResult:
    """analysis/radiomics/*: tests, classifier (baseline) + SHAP, bootstrap stability, UMAP, ranking."""
    from cxrbio.evaluation.metrics import bootstrap_ci, paper_metrics

    settings = inputs.config.analysis
    values, names, ids, dropped = inputs.radiomics_space
    y = inputs.labels(ids)
    say(f"radiomics: {len(ids)} images x {len(names)} features ({len(dropped)} dropped)")
    with timed(summary.timings, "stats"):
        tests, notes = class_tests(values, y, names, inputs.classes, settings.min_group)
        summary.notes += [f"radiomics: {n}" for n in notes]
    with timed(summary.timings, "attribution"):
        folds = inputs.outer_fold.loc[ids].to_numpy()  # the CNN's folds, whatever the scheme
        tables, predictions = [], []
        for fold in sorted(set(folds)):
            test = folds == fold
            if len(set(y[~test])) < 2:
                summary.notes.append(f"radiomics fold {fold}: training folds hold one class; no classifier.")
                continue
            result = attribution.radiomics_fold(values[~test], y[~test], values[test], ids[test], names,
                                                inputs.classes, settings.radiomics_c, settings.seed, int(fold))
            tables.append(result.table.assign(fold=int(fold)))
            predictions.append(pd.DataFrame({"image_id": result.test_ids, "fold": int(fold),
                                             "true": y[test], "predicted": result.predicted}))
        shap_table = pd.concat(tables, ignore_index=True)
        predicted = pd.concat(predictions, ignore_index=True)
        metrics = paper_metrics(predicted["true"].to_numpy(), predicted["predicted"].to_numpy(), inputs.classes,
                                inputs.config.data.positive_class)
        patients = inputs.manifest.loc[predicted["image_id"], "patient_id"].to_numpy()
        evaluation = inputs.config.evaluation
        metrics["ci95"] = bootstrap_ci(predicted["true"].to_numpy(), predicted["predicted"].to_numpy(), patients,
                                       inputs.classes, inputs.config.data.positive_class, n_boot=evaluation.bootstrap,
                                       seed=evaluation.seed, level=evaluation.level)
        metrics["bootstrap"] = {"unit": "patient", "resamples": evaluation.bootstrap, "seed": evaluation.seed,
                                "level": evaluation.level}
        metrics["scheme"] = inputs.config.folds.scheme
        metrics["per_fold_accuracy"] = {str(f): float((g["true"] == g["predicted"]).mean()) for f, g in predicted.groupby("fold")}
        metrics["classifier"] = f"StandardScaler + LogisticRegression(C={settings.radiomics_c}, L2), per fold"
        metrics["features"] = len(names)
        say(f"radiomics baseline: 7-class accuracy {metrics['accuracy']:.3f} "
            f"[{metrics['ci95']['accuracy'][0]:.3f}, {metrics['ci95']['accuracy'][1]:.3f}]")
    with timed(summary.timings, "stability"):
        patients_all = inputs.manifest.loc[ids, "patient_id"].to_numpy()
        boot_summary, boot_freq = stability.bootstrap_ranking(values, y, patients_all, names, inputs.classes,
                                                              settings.stability_top, settings.bootstrap, settings.seed)
    with timed(summary.timings, "projection"):
        coords, separation = project(values, y, settings.umap_neighbors, settings.umap_min_dist, settings.seed,
                                     groups=inputs.manifest.loc[ids, "fold_group"].to_numpy())
    with timed(summary.timings, "source_probe"):
        probe = probes(inputs, RADIOMICS, values, y, ids)
    # Ranking: per class, features by |AUC - 0.5| (one-vs-rest), the statistic the bootstrap resamples, so the
    # ranking and its stability are one ranking; mean |SHAP| of the baseline classifier beside.
    importance = (shap_table.groupby(["class", "feature"])
                  .agg(mean_abs_shap=("mean_abs_shap", "mean"), direction=("direction", lambda d: int(np.sign(d.sum()))))
                  .reset_index())
    mw = tests[tests["test"] == "mannwhitney"][["class", "feature", "auc", "p", "q"]]
    boot_freq = boot_freq.rename(columns={"top_frequency": "effect_top_frequency"})
    ranking = importance.merge(mw, on=["class", "feature"], how="left").merge(boot_freq, on=["class", "feature"], how="left")
    ranking["effect"] = (ranking["auc"] - 0.5).abs()
    ranking = ranking.sort_values(["class", "effect"], ascending=[True, False])
    ranking["rank"] = ranking.groupby("class").cumcount() + 1
    kept = {"tests": tests, "attribution": shap_table, "predictions": predicted,
              "dropped": pd.DataFrame(dropped, columns=["feature", "reason"]), "bootstrap": boot_summary,
              "umap": projection_table(ids, inputs.manifest.loc[ids, "label"].tolist(), coords),
              "separation": pd.DataFrame(separation), "source_probe": probe, "candidates": ranking}
    return SpaceResult(ranking, kept, documents={"baseline": metrics})


def analyze_strategy(inputs: AnalysisInputs, strategy: str, parts: tuple[str, ...], summary: AnalysisSummary,
                     say: Say, audit_images: Any = None) -> SpaceResult:
    """analysis/<strategy>/*: per fold tests, SHAP, CCA, UMAP, probes; then matched features, confirmation, gates."""
    import keras

    from cxrbio.analysis import confirmation, matching

    settings = inputs.config.analysis
    arrays: dict[str, dict[str, np.ndarray]] = {}
    folds = load_fold_embeddings(inputs, strategy)
    if settings.gate_min_folds > len(folds):
        raise ConfigError(f"analysis.gate_min_folds is {settings.gate_min_folds} but {strategy} has {len(folds)} fold "
                          f"model(s): no feature could pass; set analysis.gate_min_folds to at most {len(folds)}.")
    control = control_class(inputs, strategy, summary)
    design, designs, tiers = class_designs(inputs, control)
    located = confirmation.with_strata(inputs.manifest)
    rad_values, rad_names, rad_ids, _ = inputs.radiomics_space
    rad_row = {image_id: i for i, image_id in enumerate(rad_ids)}
    targets = patient_targets(inputs, summary.notes)
    every = np.sort(inputs.manifest.index.to_numpy())  # every model embeds every image: matching uses them all
    collected: dict[str, list[pd.DataFrame]] = defaultdict(list)
    contrasts: list[pd.DataFrame] = []  # each class against the controls, per fold (selection only; not written)
    tables: dict[int, confirmation.PatientTable] = {}
    live: dict[int, tuple[list[str], np.ndarray]] = {}
    for fold in folds:
        say(f"{strategy} fold {fold.fold}: {len(fold.test_ids)} out-of-fold images x {len(fold.dims)} dims")
        values, kept, dropped = clean_columns(fold.test, fold.dims)
        collected["dropped"].append(pd.DataFrame(dropped, columns=["feature", "reason"]).assign(fold=fold.fold))
        if dropped:
            summary.notes.append(f"{strategy} fold {fold.fold}: {len(dropped)} dead or non-finite dim(s) left out "
                                 "(dropped.parquet).")
        with timed(summary.timings, "stats"):
            tests, notes = class_tests(values, fold.y_test, kept, inputs.classes, settings.min_group)
            collected["tests"].append(tests.assign(fold=fold.fold))
            if control is not None:
                contrasts.append(confirmation.control_effects(fold.fold, values, fold.y_test, kept, inputs.classes,
                                                              control, settings.min_group))
            summary.notes += [f"{strategy} fold {fold.fold}: {n}" for n in notes]
        model = saving.load_model(model_file(inputs.run, strategy, fold.fold),
                                        compile=False)
        with timed(summary.timings, "attribution"):
            result = attribution.cnn_fold_attribution(model, fold.train, fold.y_train, fold.test, fold.y_test, fold.dims,
                                                      inputs.classes, settings.shap_background, settings.shap_max_images,
                                                      settings.seed)
            if result.additivity_error > 1e-3:
                summary.notes.append(f"{strategy} fold {fold.fold}: SHAP additivity error {result.additivity_error:.2g}.")
            if not result.head_error <= 1e-4:
                summary.notes.append(f"{strategy} fold {fold.fold}: the folded head differs from the model's own head by "
                                     f"{result.head_error:.2g} (probability); its SHAP values are suspect.")
            table = result.table[result.table["feature"].isin(kept)].assign(
                fold=fold.fold, additivity_error=result.additivity_error, head_error=result.head_error)
            collected["attribution"].append(table)
        del model
        keras.backend.clear_session()
        tables[fold.fold] = confirmation.patient_table(fold.fold, fold.test_ids, values, kept, located, targets)
        both = pd.DataFrame(np.concatenate([fold.test, fold.train]), index=np.concatenate([fold.test_ids, fold.train_ids]),
                            columns=fold.dims)
        live[fold.fold] = (kept, both.reindex(every)[kept].to_numpy(np.float64))
        with_features = np.array([i in rad_row for i in fold.test_ids])
        if "association" in parts and with_features.sum() > 3:
            with timed(summary.timings, "association"):
                radiomics = rad_values[[rad_row[i] for i in fold.test_ids[with_features]]]
                collected["cca"].append(association.cca_with_baseline(
                    values[with_features], radiomics, settings.cca_components, settings.permutations,
                    settings.seed, y=fold.y_test[with_features]).assign(fold=fold.fold))
        if "projection" in parts:
            with timed(summary.timings, "projection"):
                coords, separation = project(values, fold.y_test, settings.umap_neighbors, settings.umap_min_dist,
                                             settings.seed, groups=inputs.manifest.loc[fold.test_ids, "fold_group"].to_numpy())
                labels = [inputs.classes[c] for c in fold.y_test]
                collected["umap"].append(projection_table(fold.test_ids, labels, coords, fold=fold.fold))
                collected["separation"].append(pd.DataFrame(separation).assign(fold=fold.fold))
        with timed(summary.timings, "source_probe"):
            collected["source_probe"].append(probes(inputs, strategy, values, fold.y_test, fold.test_ids).assign(fold=fold.fold))

    frames = {name: pd.concat(parts_, ignore_index=True) for name, parts_ in collected.items() if parts_}
    with timed(summary.timings, "matching"):
        held_out, predicted = out_of_fold_predictions(inputs, strategy, folds, every, summary)
        matched = matching.match_folds(live, predicted, min_rho=settings.match_min_rho,
                                       null_quantile=settings.match_null_quantile, held_out=held_out,
                                       seed=settings.seed)
        summary.notes += [f"{strategy} matching {n}" for n in matched.notes]
        if strategy == "offshelf":
            summary.notes.append("offshelf: the frozen ImageNet backbone is the same in every fold, so its dims are "
                                 "identical across folds; agreement across folds is not informative about replication.")
    shap_table = frames["attribution"].rename(columns={"feature": "dim"})
    tests = frames["tests"]
    effects = tests[tests["test"] == "mannwhitney"][["fold", "class", "feature", "auc"]].rename(columns={"feature": "dim"})
    if contrasts:
        effects = effects.merge(pd.concat(contrasts, ignore_index=True), on=["fold", "class", "dim"], how="left")
    with timed(summary.timings, "confirmation"):
        confirmed = confirmation.confirm(matched, tables, confirmation.percentile_ranks(shap_table), effects,
                                         inputs.classes, top=settings.top_k, min_patients=settings.confirm_min_patients,
                                         resamples=settings.confirm_bootstrap, level=inputs.config.evaluation.level,
                                         seed=settings.seed, control=control, designs=designs,
                                         permutation_below=settings.permutation_below,
                                         permutations=settings.stratum_permutations)
        summary.notes += [f"{strategy}: {n}" for n in confirmed.notes]
        acquisition = confirmation.acquisition_tests(confirmed.per_fold, tables, inputs.classes)
        equivalence = confirmation.source_equivalence(confirmed.per_fold, tables, inputs.classes,
                                                      margin=settings.source_equivalence_margin, alpha=settings.gate_q)
    audit_summary = None
    if "audit" in parts and audit_images is not None and settings.audit_dims:
        with timed(summary.timings, "audit"):
            audit_summary = audit_confirmed(inputs, strategy, folds, confirmed, shap_table, audit_images, frames, arrays)
    descriptor_tables = []
    if "association" in parts:
        with timed(summary.timings, "association"):
            descriptor_tables = feature_descriptors(inputs, folds, confirmed.per_fold, rad_values, rad_names, rad_row,
                                                    control=control)
    gate_settings = settings if ("audit" in parts and audit_images is not None and settings.audit_dims) \
        else settings.model_copy(update={"gate_audit": False})
    ranking = confirmation.gate(confirmed.combined, acquisition, audit_summary, gate_settings, tiers=tiers,
                                equivalence=equivalence)
    ranking = describe_candidates(ranking, descriptor_tables, confirmed.per_fold, shap_table, frames.get("audit_dims"),
                                  settings.descriptors)
    with timed(summary.timings, "confirmation"):
        profile = confirmation.specificity_profile(confirmed.per_fold, tables, inputs.classes,
                                                   min_patients=settings.min_group)
    if not ranking.empty:
        ranking = ranking.merge(confirmation.profile_columns(profile), on=["class", "feature"], how="left")
        ranking["marker"] = [confirmation.marker_kind(int(d), str(c))
                             for d, c in zip(ranking["expected_direction"], ranking["contrast"])]
    frames["specificity"] = profile
    frames.update(matching=matched.table(), matching_null=matched.pairs, confirmation=confirmed.per_fold, power=confirmed.power,
                  acquisition=acquisition, source_equivalence=equivalence, design=design, candidates=ranking,
                  stability=consistency(ranking, matched, inputs.classes))
    if descriptor_tables:
        frames["descriptors"] = pd.concat(descriptor_tables, ignore_index=True)
    elif "association" in parts:  # too few patients within every disease: an empty table, said
        frames["descriptors"] = pd.DataFrame(columns=DESCRIPTOR_COLUMNS)
        summary.notes.append(f"{strategy}: no tested feature has 5 patients of its disease with radiomics features in "
                             "its held-out folds: no descriptors.")
    say(f"{strategy}: {len(ranking)} (class, feature) pairs tested; the error rate across every strategy's "
        "families is applied once all are analysed")
    return SpaceResult(ranking, frames, arrays=arrays)


def out_of_fold_predictions(inputs: AnalysisInputs, strategy: str, folds: list[Any], every: np.ndarray,
                            summary: AnalysisSummary) -> tuple[np.ndarray, np.ndarray]:
    """For ``every`` image: the fold that held it out, and that fold model's predicted class for it.

    Matching partials on the predicted class, not the label, so that no held-out patient's label
    shapes which dims are one feature. An image without a prediction (a fold trained before
    predictions were written) gets group -1, with a note.
    """
    held_out = pd.Series(-1, index=every)
    predicted = pd.Series(-1, index=every)
    missing = []
    for fold in folds:
        held_out.loc[held_out.index.intersection(fold.test_ids)] = fold.fold
        path = predictions_file(inputs.run, strategy, fold.fold)
        if not path.is_file():
            missing.append(fold.fold)
            continue
        frame = pd.read_parquet(path, columns=["image_id", "predicted"]).set_index("image_id")["predicted"]
        frame = frame[frame.index.isin(predicted.index)]
        predicted.loc[frame.index] = frame.to_numpy()
    if missing:
        summary.notes.append(f"{strategy}: fold(s) {', '.join(map(str, missing))} have no predictions.parquet; "
                             "their held-out images are matched as one group (run 'cxrbio train' again to write them).")
    return held_out.to_numpy(), predicted.to_numpy()


def control_class(inputs: AnalysisInputs, strategy: str, summary: AnalysisSummary) -> int | None:
    """The control class's index, or None (said in the notes); a control class set in the config but absent is refused."""
    from cxrbio.confounding.design import control_of

    name, notes = control_of(inputs.config.analysis, inputs.classes)
    summary.notes += [f"{strategy}: {note}" for note in notes]
    return inputs.classes.index(name) if name is not None else None


def patient_targets(inputs: AnalysisInputs, notes: list[str] | None = None) -> dict[str, pd.Series]:
    """What the covariate gate asks a feature not to predict within class: the categorical covariates (sex, view,
    device, ...). Not the source: the contrasts are estimated within sources, and its equivalence is flagged; nor a
    covariate nested in the recorded source (a 'site' column that names the source again): the strata cover it."""
    from cxrbio.data.provenance import UNKNOWN

    source = inputs.manifest["source"].astype(str) if "source" in inputs.manifest else None
    targets = {}
    for name, series in covariate_targets(inputs.manifest, inputs.config.confounding.covariates).items():
        if name == "source":
            continue
        if source is not None:
            known = (source != UNKNOWN) & series.astype(str).str.strip().ne("") & series.notna()
            if known.any() and (series[known].astype(str).groupby(source[known]).nunique() <= 1).all():
                if notes is not None:
                    notes.append(f"covariate '{name}' takes one value within each recorded source: the within-source "
                                 "estimates cover it (not a covariate gate target).")
                continue
        targets[name] = series
    return targets


def class_designs(inputs: AnalysisInputs, control: int | None) -> tuple[pd.DataFrame, dict[str, Any], dict[str, str]]:
    """(the design table of the analysed images, each class's :class:`ClassDesign`, its source tier).

    The same check as the scan's (:mod:`cxrbio.confounding.design`), on the included images with the
    analysis' control class; the acquisition baseline's verdict comes from the scan
    (confounding/acquisition.json): a class it names that no recorded source separates is
    ``acquisition-confounded``.
    """
    from cxrbio.analysis.confirmation import designs_from_table, tiers_of
    from cxrbio.confounding.design import design_table

    flagged: list[str] = []
    path = inputs.run.path("acquisition")
    if path.is_file():
        flagged = list(json.loads(path.read_text()).get("flagged") or [])
    settings = inputs.config
    table, _notes = design_table(inputs.manifest, inputs.classes,
                                 control=inputs.classes[control] if control is not None else None,
                                 alpha=settings.analysis.gate_q, power=settings.confounding.design_power,
                                 acquisition_flagged=flagged)
    designs = designs_from_table(table)
    return table, designs, tiers_of(designs, flagged)


def audit_confirmed(inputs: AnalysisInputs, strategy: str, folds: list[Any], confirmed: Any, shap_table: pd.DataFrame,
                    audit_images: Any, frames: dict[str, pd.DataFrame],
                    arrays: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    """The shortcut audit of each held-out fold's dims of the tested features, strongest confirmation first.

    Up to ``audit_dims`` per fold and class: those that confirmed (q < gate_q) come first, so a
    feature that could pass is audited; the rest of the budget goes to the next strongest, so the
    gallery shows what the models read even where nothing confirms. Returns class, feature,
    audited_dims, flagged_dims; the per-dim rows go to ``frames['audit_dims']``, the maps to
    ``arrays['saliency']``.
    """
    import keras

    from cxrbio.analysis import audit as audit_module

    combined = confirmed.combined[["class", "feature", "p"]]
    wanted = confirmed.per_fold.merge(combined, on=["class", "feature"], suffixes=("", "_combined"))
    rows, models, maps, predictions = [], [], {}, []
    for fold in folds:
        part = wanted[wanted["fold"] == fold.fold].sort_values("p_combined")  # audit_fold keeps audit_dims per class
        if part.empty:
            continue
        shap = shap_table[shap_table["fold"] == fold.fold][["class", "dim", "mean_abs_shap"]]
        chosen = part[["class", "dim", "feature"]].merge(shap, on=["class", "dim"], how="left")
        model = saving.load_model(model_file(inputs.run, strategy, fold.fold),
                                        compile=False)
        result = audit_module.audit_fold(model, fold.fold, fold.test_ids, fold.test, fold.y_test, fold.dims,
                                         chosen, audit_images, inputs.classes, inputs.config.analysis)
        dims = result.dims.merge(chosen[["class", "dim", "feature"]], on=["class", "dim"], how="left")
        rows.append(dims)
        models.append(result.model)
        predictions.append(result.predictions)
        maps.update(result.maps)
        del model
        keras.backend.clear_session()
    if not rows:
        return pd.DataFrame(columns=["class", "feature", "audited_dims", "flagged_dims"])
    frames["audit_dims"] = pd.concat(rows, ignore_index=True)
    frames["audit_model"] = pd.concat(models, ignore_index=True)
    settings = inputs.config.analysis
    frames["audit_predictions"] = pd.concat(predictions, ignore_index=True)
    frames["audit_verdicts"] = audit_module.occlusion_verdicts(
        frames["audit_predictions"], inputs.manifest["patient_id"].astype(str), margin=settings.occlusion_margin,
        resamples=settings.confirm_bootstrap, level=inputs.config.evaluation.level, seed=settings.seed)
    frames["shortcut_scores"] = audit_module.shortcut_scores(frames["audit_dims"])
    frames["audit_sources"] = audit_module.flagged_by_source(frames["audit_dims"])
    if maps:
        arrays["saliency"] = maps
    audited = frames["audit_dims"].dropna(subset=["outside_ratio"])
    return (audited.groupby(["class", "feature"])["likely_shortcut"]
            .agg(audited_dims="size", flagged_dims=lambda f: int(f.astype(bool).sum())).reset_index())


DESCRIPTOR_COLUMNS = ["feature", "rho_disease", "p_disease", "q_disease", "n_disease", "rho_control", "p_control",
                      "n_control", "z_difference", "p_difference", "descriptor_tier", "rho", "p", "q", "rho_pooled",
                      "q_pooled", *association.MEDIATION_COLUMNS, "class", "feature_id"]


def feature_descriptors(inputs: AnalysisInputs, folds: list[Any], per_fold: pd.DataFrame, rad_values: np.ndarray,
                        rad_names: list[str], rad_row: dict[str, int], control: int | None = None) -> list[pd.DataFrame]:
    """Per tested (class, feature): partial Spearman with every radiomics feature within the disease and within the controls.

    One value per *patient* (the mean over the patient's held-out images, of the unit and of
    each radiomics feature), so p-values count patients, not images. Within each held-out fold,
    ranks are residualised on source indicators among the disease's patients, and separately among
    the control class's; the folds are pooled as strata (:func:`association.contrasted_descriptors`).
    The all-class descriptor (class and source partialled, every class pooled) stays beside them
    as ``rho_pooled`` / ``q_pooled``: a nuisance flag, not a description of the disease.
    """
    if per_fold.empty or not rad_names:
        return []
    by_fold: dict[int, dict[str, Any]] = {}
    n_within, n_pooled = 0, 0
    for fold in folds:
        with_features = np.array([i in rad_row for i in fold.test_ids])
        if with_features.sum() < 4:
            continue
        ids = fold.test_ids[with_features]
        rows = inputs.manifest.loc[ids]
        patients = rows["patient_id"].astype(str).to_numpy()
        radiomics = pd.DataFrame(rad_values[[rad_row[i] for i in ids]]).groupby(patients).mean()
        dims = pd.DataFrame(fold.test[with_features], columns=fold.dims).groupby(patients).mean()
        first = rows.assign(_patient=patients).groupby("_patient").first().reindex(radiomics.index)
        y = first["y"].to_numpy()
        source = first["source"].astype(str).to_numpy() if "source" in first else np.zeros(len(y)).astype(str)
        pooled_covariates = association.indicators(y, source)
        n_pooled = max(n_pooled, pooled_covariates.shape[1])
        within = {}
        for c in np.unique(y):
            members = y == c
            covariates = association.indicators(source[members])
            n_within = max(n_within, covariates.shape[1])
            within[int(c)] = (members, covariates, association.residual_ranks(radiomics.to_numpy()[members], covariates))
        by_fold[fold.fold] = {"dims": dims, "within": within, "y": y, "source": source, "radiomics": radiomics.to_numpy(),
                              "pooled": (
            pooled_covariates, association.residual_ranks(radiomics.to_numpy(), pooled_covariates))}
    out = []
    cls: Any  # pandas types rows and group keys loosely
    feature: Any
    for (cls, feature), part in per_fold.groupby(["class", "feature"], sort=False):
        c = inputs.classes.index(cls)
        disease: list[tuple[np.ndarray, Any]] = []
        controls: list[tuple[np.ndarray, Any]] = []
        pooled: list[tuple[np.ndarray, Any]] = []
        item: Any  # pandas types rows and group keys loosely
        for item in part.itertuples():
            found = by_fold.get(int(item.fold))
            if found is None:
                continue
            unit = found["dims"][item.dim].to_numpy(np.float64)[:, None]
            for target, group in ((disease, c), (controls, control if control != c else None)):
                if group is None or group not in found["within"]:
                    continue
                members, covariates, radiomics = found["within"][group]
                if members.sum() >= 3:
                    target.append((association.residual_ranks(unit[members], covariates)[:, 0], radiomics))
            covariates, radiomics = found["pooled"]
            pooled.append((association.residual_ranks(unit, covariates)[:, 0], radiomics))
        if not disease or sum(len(a) for a, _ in disease) < 5:
            continue
        table = association.contrasted_descriptors(disease, controls, rad_names, n_within,
                                                   alpha=inputs.config.analysis.gate_q)
        everyone = association.partial_descriptors(pooled, rad_names, n_pooled)
        table["rho_pooled"], table["q_pooled"] = everyone["rho"].to_numpy(), everyone["q"].to_numpy()
        if control is not None and control != c:
            table = table.merge(descriptor_mediation(inputs, part, by_fold, table, c, control), on="feature", how="left")
        for column in association.MEDIATION_COLUMNS:
            if column not in table:
                table[column] = np.nan
        table["mediates"] = table["mediates"].astype("boolean").fillna(False).astype(bool)
        out.append(table.assign(**{"class": cls, "feature_id": feature}))
    return out


def descriptor_mediation(inputs: AnalysisInputs, part: pd.DataFrame, by_fold: dict[int, dict[str, Any]],
                         table: pd.DataFrame, disease: int, control: int) -> pd.DataFrame:
    """Mediation shares of a tested feature's strongest within-disease descriptors, disease against controls.

    Per held-out fold the disease's and the control class's patients, the unit and each radiomics
    feature as ranks within the fold; fold and source are covariates (:func:`association.mediation`).
    """
    settings = inputs.config.analysis
    chosen = table[table["q_disease"] < settings.gate_q]
    chosen = chosen.reindex(chosen["rho_disease"].abs().sort_values(ascending=False).index).head(settings.mediation_features)
    if chosen.empty:
        return pd.DataFrame(columns=["feature", *association.MEDIATION_COLUMNS])
    columns = [int(i) for i in chosen.index]  # the table's rows follow the radiomics columns
    units, radiomics, sick, strata, sources = [], [], [], [], []
    item: Any  # pandas types rows and group keys loosely
    for item in part.itertuples():
        found = by_fold.get(int(item.fold))
        if found is None:
            continue
        members = np.isin(found["y"], [disease, control])
        if (found["y"] == disease).sum() < 3 or (found["y"] == control).sum() < 3:
            continue
        units.append(stats.rankdata(found["dims"][item.dim].to_numpy(np.float64)[members]) / members.sum())
        radiomics.append(stats.rankdata(found["radiomics"][members][:, columns], axis=0) / members.sum())
        sick.append(found["y"][members] == disease)
        strata.append(np.full(members.sum(), int(item.fold)))
        sources.append(found["source"][members])
    if not units:
        return pd.DataFrame(columns=["feature", *association.MEDIATION_COLUMNS])
    covariates = association.indicators(np.concatenate(strata), np.concatenate(sources))
    return association.mediation(np.concatenate(units), np.concatenate(sick), np.concatenate(radiomics), covariates,
                                 list(chosen["feature"]), resamples=settings.mediation_bootstrap,
                                 level=inputs.config.evaluation.level, seed=settings.seed + disease)


def describe_candidates(ranking: pd.DataFrame, descriptor_tables: list[pd.DataFrame], per_fold: pd.DataFrame,
                        shap_table: pd.DataFrame, audit_dims: pd.DataFrame | None, top: int) -> pd.DataFrame:
    """The gated table with what describes each feature: its dims, mean SHAP rank, descriptors (tier), audit figures."""
    if ranking.empty:
        return ranking.assign(dims="", descriptors="", top_descriptor="", described=False, rank=0)
    dims = (per_fold.assign(fold_dim=per_fold["fold"].astype(str) + ":" + per_fold["dim"])
            .groupby(["class", "feature"]).agg(dims=("fold_dim", "|".join), selection_score=("selection_score", "mean"))
            .reset_index())
    ranking = ranking.merge(dims, on=["class", "feature"], how="left")
    named, first, tiers, nuisance, mediators = {}, {}, {}, {}, {}
    for table in descriptor_tables:
        key = (str(table["class"].iloc[0]), str(table["feature_id"].iloc[0]))
        tier = association.candidate_tier(table)
        # described by what is specific to the disease (or, without controls, significant within it)
        shown = table[table["descriptor_tier"] == (tier if tier != association.NUISANCE else "-")]
        pairs = association.descriptors(shown.assign(dim=key[1]).drop(columns=["feature_id", "class"]), top).get(key[1], [])
        flagged = association.descriptors(table[table["descriptor_tier"] == association.NUISANCE]
                                          .assign(dim=key[1]).drop(columns=["feature_id", "class"]), top).get(key[1], [])
        named[key], first[key] = association.describe(pairs), (pairs[0][0] if pairs else "")
        tiers[key], nuisance[key] = tier, association.describe(flagged)
        carried = table[table["mediates"].astype(bool)] if "mediates" in table else table.iloc[:0]
        carried = carried.sort_values("mediation_share", ascending=False).head(top)
        mediators[key] = "; ".join(f"{association.short_name(str(r.feature))} {r.mediation_share:.0%} "
                                   f"[{r.mediation_low:.0%}, {r.mediation_high:.0%}]" for r in carried.itertuples())
    keys = list(zip(ranking["class"], ranking["feature"]))
    ranking["descriptors"] = [named.get(k, "") for k in keys]
    ranking["top_descriptor"] = [first.get(k, "") for k in keys]
    ranking["descriptor_tier"] = [tiers.get(k, association.NO_DESCRIPTOR) for k in keys]
    ranking["nuisance_descriptors"] = [nuisance.get(k, "") for k in keys]
    ranking["described"] = ranking["descriptor_tier"] == association.DISEASE_SPECIFIC
    ranking["mediated_by"] = [mediators.get(k, "") for k in keys]
    if audit_dims is not None and not audit_dims.empty:
        figures = (audit_dims.groupby(["class", "feature"])
                   .agg(lung_density=("lung_density", "mean"), body_density=("body_density", "mean"),
                        outside_density=("outside_density", "mean"), outside_ratio=("outside_ratio", "max"),
                        map_unreliable=("map_unreliable", "any"), likely_shortcut=("likely_shortcut", "any"))
                   .reset_index())
        ranking = ranking.merge(figures, on=["class", "feature"], how="left")
    ranking["direction"] = ranking["expected_direction"]
    ranking["rank"] = ranking.groupby("class").cumcount() + 1
    first_columns = ["class", "rank", "feature", "passed", "failed_gates", "auc", "auc_low", "auc_high", "q",
                     "folds_agree", "folds_tested", "direction", "descriptors", "described", "dims"]
    return ranking[first_columns + [c for c in ranking if c not in first_columns]].reset_index(drop=True)


def consistency(ranking: pd.DataFrame, matched: Any, classes: list[str]) -> pd.DataFrame:
    """Per class: features tested and passed, and how consistent the tested ones were across folds."""
    rho = matched.table()
    rho = rho[rho["fold"] != matched.reference].groupby("feature")["match_rho"].median()
    rows = []
    for cls in classes:
        part = ranking[ranking["class"] == cls] if not ranking.empty else ranking
        tested = int(len(part))
        rows.append({"class": cls, "folds": len(matched.folds), "tested": tested,
                     "passed": int(part["passed"].sum()) if tested else 0,
                     "median_match_rho": float(rho.reindex(part["feature"]).median()) if tested else np.nan,
                     "direction_agreement": float((part["folds_agree"] / part["folds_tested"]).mean()) if tested else np.nan})
    return pd.DataFrame(rows)
