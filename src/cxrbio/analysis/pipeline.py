"""The analysis of one space, written under analysis/<space>/ (schemas: docs/analysis.md).

Per strategy, fold by fold: statistics on the fold's out-of-fold embeddings, SHAP of the fold's
head, the top dims per class (candidates), their radiomics descriptors, CCA, UMAP and the
shortcut audit; then stability across folds and the ranking. The radiomics space gets the same
treatment (analysis/radiomics/), with its own classifier as the baseline. Which spaces are
redone is the stage's business (:mod:`cxrbio.stages.analyze`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cxrbio.analysis import association, attribution, stability
from cxrbio.analysis.inputs import AnalysisInputs, clean_columns, load_fold_embeddings
from cxrbio.analysis.projection import project, projection_table
from cxrbio.analysis.stats import class_tests
from cxrbio.artifacts import RADIOMICS_SPACE
from cxrbio.atomic import atomic_write, atomic_write_parquet, atomic_write_text
from cxrbio.confounding.source_probe import covariate_probes, covariate_targets, source_probe
from cxrbio.timing import timed

PARTS = ("attribution", "stats", "association", "stability", "projection", "audit")
STAGE = "analyze"
RADIOMICS = RADIOMICS_SPACE
Say = Callable[[str], None]


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


def analyze_radiomics(inputs: AnalysisInputs, summary: AnalysisSummary, say: Say) -> pd.DataFrame:
    """analysis/radiomics/*: tests, classifier (baseline) + SHAP, bootstrap stability, UMAP, ranking."""
    from cxrbio.metrics import bootstrap_ci, paper_metrics

    settings = inputs.config.analysis
    out = inputs.run.output(STAGE, "analysis", strategy=RADIOMICS)
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
    # Ranking: per class, features by mean |SHAP| over folds, with the tests and stability beside.
    importance = (shap_table.groupby(["class", "feature"])
                  .agg(mean_abs_shap=("mean_abs_shap", "mean"), direction=("direction", lambda d: int(np.sign(d.sum()))))
                  .reset_index())
    mw = tests[tests["test"] == "mannwhitney"][["class", "feature", "auc", "p", "q"]]
    boot_freq = boot_freq.rename(columns={"top_frequency": "effect_top_frequency"})
    ranking = importance.merge(mw, on=["class", "feature"], how="left").merge(boot_freq, on=["class", "feature"], how="left")
    ranking = ranking.sort_values(["class", "mean_abs_shap"], ascending=[True, False])
    ranking["rank"] = ranking.groupby("class").cumcount() + 1
    atomic_write_parquet(out / "tests.parquet", tests)
    atomic_write_parquet(out / "attribution.parquet", shap_table)
    atomic_write_parquet(out / "predictions.parquet", predicted)
    atomic_write_parquet(out / "dropped.parquet", pd.DataFrame(dropped, columns=["feature", "reason"]))
    atomic_write_parquet(out / "bootstrap.parquet", boot_summary)
    atomic_write_parquet(out / "umap.parquet", projection_table(ids, inputs.manifest.loc[ids, "label"].tolist(), coords))
    atomic_write_parquet(out / "separation.parquet", pd.DataFrame(separation))
    atomic_write_parquet(out / "source_probe.parquet", probe)
    atomic_write_parquet(out / "candidates.parquet", ranking)
    atomic_write_text(out / "baseline.json", json.dumps(metrics, indent=1, default=float))
    return ranking


def analyze_strategy(inputs: AnalysisInputs, strategy: str, parts: tuple[str, ...], summary: AnalysisSummary,
                     say: Say, audit_images: Any = None) -> pd.DataFrame:
    import keras

    from cxrbio.analysis import audit as audit_module

    settings = inputs.config.analysis
    out = inputs.run.output(STAGE, "analysis", strategy=strategy)
    folds = load_fold_embeddings(inputs, strategy)
    rad_values, rad_names, rad_ids, _ = inputs.radiomics_space
    rad_row = {image_id: i for i, image_id in enumerate(rad_ids)}
    collected: dict[str, list[pd.DataFrame]] = defaultdict(list)
    maps: dict[str, np.ndarray] = {}
    for fold in folds:
        say(f"{strategy} fold {fold.fold}: {len(fold.test_ids)} out-of-fold images x {len(fold.dims)} dims")
        values, kept, dropped = clean_columns(fold.test, fold.dims)
        collected["dropped"].append(pd.DataFrame(dropped, columns=["feature", "reason"]).assign(fold=fold.fold))
        with timed(summary.timings, "stats"):
            tests, notes = class_tests(values, fold.y_test, kept, inputs.classes, settings.min_group)
            collected["tests"].append(tests.assign(fold=fold.fold))
            summary.notes += [f"{strategy} fold {fold.fold}: {n}" for n in notes]
        model = keras.models.load_model(inputs.run.path("train_fold", strategy=strategy, fold=fold.fold) / "model.keras",
                                        compile=False)
        with timed(summary.timings, "attribution"):
            result = attribution.cnn_fold_attribution(model, fold.train, fold.y_train, fold.test, fold.y_test, fold.dims,
                                                      inputs.classes, settings.shap_background, settings.shap_max_images,
                                                      settings.seed)
            if result.additivity_error > 1e-3:
                summary.notes.append(f"{strategy} fold {fold.fold}: SHAP additivity error {result.additivity_error:.2g}.")
            table = result.table[result.table["feature"].isin(kept)].assign(fold=fold.fold,
                                                                             additivity_error=result.additivity_error)
            collected["attribution"].append(table)
            table = table.rename(columns={"feature": "dim"})
            totals = table.groupby("class")["mean_abs_shap"].transform("sum")
            table["shap_share"] = table["mean_abs_shap"] / totals.where(totals > 0, 1.0)
            candidates = (table.sort_values(["class", "mean_abs_shap"], ascending=[True, False])
                          .groupby("class", sort=False).head(settings.top_k))
            collected["candidates"].append(candidates)
        with_features = np.array([i in rad_row for i in fold.test_ids])
        column = {d: j for j, d in enumerate(fold.dims)}
        if "association" in parts and with_features.sum() > 3:
            with timed(summary.timings, "association"):
                dims = sorted(set(candidates["dim"]))
                dim_values = fold.test[with_features][:, [column[d] for d in dims]]
                radiomics = rad_values[[rad_row[i] for i in fold.test_ids[with_features]]]
                collected["associations"].append(
                    association.dim_associations(dim_values, dims, radiomics, rad_names).assign(fold=fold.fold))
                collected["cca"].append(association.cca_with_baseline(
                    values[with_features], radiomics, settings.cca_components, settings.permutations,
                    settings.seed).assign(fold=fold.fold))
        if "projection" in parts:
            with timed(summary.timings, "projection"):
                coords, separation = project(values, fold.y_test, settings.umap_neighbors, settings.umap_min_dist,
                                             settings.seed, groups=inputs.manifest.loc[fold.test_ids, "fold_group"].to_numpy())
                labels = [inputs.classes[c] for c in fold.y_test]
                collected["umap"].append(projection_table(fold.test_ids, labels, coords, fold=fold.fold))
                collected["separation"].append(pd.DataFrame(separation).assign(fold=fold.fold))
        with timed(summary.timings, "source_probe"):
            collected["source_probe"].append(probes(inputs, strategy, values, fold.y_test, fold.test_ids).assign(fold=fold.fold))
        if "audit" in parts and audit_images is not None and settings.audit_dims:
            with timed(summary.timings, "audit"):
                fold_audit = audit_module.audit_fold(model, fold.fold, fold.test_ids, fold.test, fold.y_test, fold.dims,
                                                     candidates, audit_images, inputs.classes, settings)
                collected["audit_dims"].append(fold_audit.dims)
                collected["audit_model"].append(fold_audit.model)
                maps.update(fold_audit.maps)
        keras.backend.clear_session()

    frames = {name: pd.concat(parts_, ignore_index=True) for name, parts_ in collected.items() if parts_}
    candidates = frames["candidates"]
    with timed(summary.timings, "stability"):
        associations = frames.get("associations", pd.DataFrame(columns=["fold", "dim", "feature", "rho", "p", "q"]))
        profiles = stability.descriptor_profiles(associations, candidates, rad_names)
        stable, recurrence = stability.cross_fold_stability(profiles, rad_names, settings.stability_top)
    ranking = rank_candidates(candidates, frames, recurrence, settings)
    if "audit_dims" in frames:
        frames["shortcut_scores"] = audit_module.shortcut_scores(frames["audit_dims"])
        frames["audit_sources"] = audit_module.flagged_by_source(frames["audit_dims"])
    frames.update(stability=stable, recurrence=recurrence, candidates=ranking)
    for name, frame in frames.items():
        atomic_write_parquet(out / f"{name}.parquet", frame)
    if maps:
        atomic_write(out / "saliency.npz", lambda tmp: np.savez_compressed(tmp, **maps))
    return ranking


def rank_candidates(candidates: pd.DataFrame, frames: dict[str, pd.DataFrame], recurrence: pd.DataFrame,
                    settings: Any) -> pd.DataFrame:
    """Per class, candidate (fold, dim)s ordered by their share of the class's SHAP, with the evidence beside."""
    tests = frames["tests"]
    mw = tests[tests["test"] == "mannwhitney"][["fold", "class", "feature", "auc", "p", "q"]].rename(columns={"feature": "dim"})
    kw = tests[tests["test"] == "kruskal"][["fold", "feature", "q"]].rename(columns={"feature": "dim", "q": "kruskal_q"})
    ranking = candidates.merge(mw, on=["fold", "class", "dim"], how="left").merge(kw, on=["fold", "dim"], how="left")
    named, top_descriptor = [], []
    associations = frames.get("associations")
    described = {}
    if associations is not None:
        for fold, part in associations.groupby("fold"):
            for dim, pairs in association.descriptors(part, settings.descriptors).items():
                described[(fold, dim)] = pairs
    for row in ranking.itertuples():
        pairs = described.get((row.fold, row.dim), [])
        named.append(association.describe(pairs))
        top_descriptor.append(pairs[0][0] if pairs else "")
    ranking["descriptors"] = named
    ranking["top_descriptor"] = top_descriptor
    recur = recurrence.rename(columns={"feature": "top_descriptor", "recurrence": "descriptor_recurrence"})
    ranking = ranking.merge(recur, on=["class", "top_descriptor"], how="left")
    ranking.loc[ranking["top_descriptor"] == "", "descriptor_recurrence"] = np.nan
    if "audit_dims" in frames:
        audit = frames["audit_dims"][["fold", "class", "dim", "lung_density", "body_density", "outside_density",
                                      "outside_ratio", "map_unreliable", "likely_shortcut"]]
        ranking = ranking.merge(audit, on=["fold", "class", "dim"], how="left")
    ranking = ranking.sort_values(["class", "shap_share"], ascending=[True, False])
    ranking["rank"] = ranking.groupby("class").cumcount() + 1
    first = ["class", "rank", "fold", "dim", "shap_share", "mean_abs_shap", "direction", "auc", "q", "kruskal_q",
             "descriptors", "descriptor_recurrence"]
    return ranking[[c for c in first if c in ranking] + [c for c in ranking if c not in first]].reset_index(drop=True)
