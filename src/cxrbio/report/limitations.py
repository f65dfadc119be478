"""Limitations written from the run's own data, not boilerplate.

Each check reads what the stages wrote and speaks only when the data give it reason to; the
thresholds are stated in the sentence so a reader can judge them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from cxrbio.config import load_config
from cxrbio.data.provenance import UNKNOWN
from cxrbio.features.lung_masks import SEGMENTED
from cxrbio.report.contents import RunContents

SMALL_CLASS_IMAGES = 50
NEAR_DUPLICATE_SHARE = 0.05
FALLBACK_MASK_SHARE = 0.10
OUTSIDE_DROP = 0.2


def _known_sources(manifest: pd.DataFrame) -> pd.DataFrame:
    return manifest[manifest["source"].astype(str) != UNKNOWN]


def _source_confounding(manifest: pd.DataFrame) -> list[str]:
    manifest = _known_sources(manifest)
    if manifest["source"].nunique() < 2:
        return []
    table = pd.crosstab(manifest["label"], manifest["source"])
    notes = []
    for label, row in table.iterrows():
        share = row.max() / row.sum() if row.sum() else 0.0
        if share >= 0.9:
            source = row.idxmax()
            others = table.drop(index=label)[source].sum() / max(table.drop(index=label).to_numpy().sum(), 1)
            if others < 0.5:
                notes.append(f"{share:.0%} of {label} images come from source '{source}', which supplies only "
                             f"{others:.0%} of the other classes: a network can learn the source's look "
                             "(scanner, processing, markers) instead of the disease. Validate with "
                             "folds.scheme: leave-one-source-out where every class has several sources "
                             "(a class from one source only cannot be tested that way).")
    return notes


def _single_source(manifest: pd.DataFrame) -> list[str]:
    unknown = float((manifest["source"].astype(str) == UNKNOWN).mean()) if len(manifest) else 0.0
    if unknown == 1.0:
        return ["The source (hospital, collection) of every image is unknown, so confounding by source cannot be "
                "checked: a class drawn from one collection may be recognised by the collection's look. Give a "
                "'source' column in a CSV, or data.source_from: subfolder for DATA/<class>/<source>/ (docs/data.md)."]
    notes = []
    if unknown > 0:
        notes.append(f"{unknown:.0%} of images have an unknown source; the source checks leave them out.")
    sources = _known_sources(manifest)["source"].unique()
    if len(sources) == 1 and str(sources[0]) == "phantom":
        notes.append("The images are the built-in synthetic phantom: every number here checks the software against "
                     "planted ground truth and says nothing about real chest X-rays.")
    elif len(sources) == 1:
        notes.append(f"All images of known source come from one source ('{sources[0]}'): results may not transfer to "
                     "other hospitals or scanners, and a source shortcut cannot be tested (leave-one-source-out needs "
                     "two sources).")
    return notes


def _small_classes(contents: RunContents) -> list[str]:
    used = contents.included
    counts = used.groupby("label").size().reindex(contents.classes, fill_value=0)
    patients = used.groupby("label")["patient_id"].nunique().reindex(contents.classes, fill_value=0)
    small = [f"{name} ({counts[name]} images, {patients[name]} patients)" for name in contents.classes
             if counts[name] < SMALL_CLASS_IMAGES]
    notes = []
    if small:
        notes.append(f"Small classes (< {SMALL_CLASS_IMAGES} images): {'; '.join(small)}. Their per-class metrics have "
                     "wide intervals and their candidate tests little power.")
    if len(counts) and counts.max() > 5 * max(counts.min(), 1):
        notes.append(f"Classes are imbalanced ({counts.idxmax()}: {counts.max()} images, {counts.idxmin()}: "
                     f"{counts.min()}): pooled accuracy is dominated by the large classes; read balanced accuracy and "
                     "the per-class table.")
    return notes


def _duplicates(manifest: pd.DataFrame) -> list[str]:
    readable = manifest[manifest["dup_group"] >= 0]
    if readable.empty:
        return []
    sizes = readable.groupby("dup_group")["dup_group"].transform("size")
    share = float((sizes > 1).mean())
    notes = []
    if share >= NEAR_DUPLICATE_SHARE:
        notes.append(f"{share:.0%} of readable images have a near-duplicate (≥ {NEAR_DUPLICATE_SHARE:.0%}): they are kept "
                     "in one fold so no copy is tested against itself, but the effective sample is smaller than the "
                     "image count.")
    multi = readable[sizes > 1]
    spanning = int((multi.groupby("dup_group")["label"].nunique() > 1).sum()) if not multi.empty else 0
    if spanning:
        notes.append(f"{spanning} near-duplicate groups carry more than one label: label noise, or the same "
                     "radiograph filed under two diseases.")
    return notes


def _exclusions(manifest: pd.DataFrame) -> list[str]:
    excluded = int((~manifest["included"]).sum())
    if not excluded:
        return []
    reasons = manifest.loc[~manifest["included"], "qc_status"].value_counts()
    listed = ", ".join(f"{k} {v}" for k, v in reasons.items())
    return [f"{excluded} of {len(manifest)} images were excluded by QC ({listed}); see Summary."]


def _masks(contents: RunContents) -> list[str]:
    used = contents.included
    if "mask_source" not in used.columns or used.empty:
        return []
    notes = []
    flagged = used["mask_note"].fillna("") != ""
    if flagged.mean() >= FALLBACK_MASK_SHARE:
        notes.append(f"{flagged.mean():.0%} of lung masks are flagged (segmentation below QC, fell back to the "
                     "whole image, or missing): radiomics and lung shares for those images are not lung-specific.")
    if (used["mask_source"] == SEGMENTED).any():
        notes.append("Lung masks come from cxrbio's classical segmentation, which can join air above the shoulders "
                     "to an apex or leave out consolidated lung; pass expert masks with 'cxrbio masks --masks FOLDER'.")
    return notes


def _shortcuts(contents: RunContents) -> list[str]:
    notes = []
    for result in contents.analysed():
        candidates = result.analysis["candidates"]
        if "likely_shortcut" in candidates:
            audited = candidates["likely_shortcut"].notna()
            flagged = candidates["likely_shortcut"].fillna(False).astype(bool)
            if flagged.any():
                per_class = candidates[flagged].groupby("class").size().sort_values(ascending=False)
                listed = ", ".join(f"{k} {v}" for k, v in per_class.items())
                notes.append(f"{result.name}: {int(flagged.sum())} of {int(audited.sum())} audited candidate dims are "
                             f"flagged as likely shortcuts ({listed}): occluding the outside of the body moves them "
                             "more than equal-area random regions do. Look at the gallery; a body mask that missed "
                             "part of the patient also puts body evidence outside.")
        audit = result.analysis.get("audit_model")
        if audit is not None and not audit.empty:
            means = audit.groupby("class")[["accuracy", "outside_blanked_accuracy"]].mean()
            drops = means["accuracy"] - means["outside_blanked_accuracy"]
            name: Any  # pandas types an index label loosely
            for name, drop in drops[drops >= OUTSIDE_DROP].items():
                notes.append(f"{result.name}: filling the outside of the body with air drops {name} accuracy by "
                             f"{drop:.2f} ({means.loc[name, 'accuracy']:.2f} → "
                             f"{means.loc[name, 'outside_blanked_accuracy']:.2f}): the model reads something outside "
                             "the patient (markers, text, collimation) for this class.")
    return notes


def _protocol(contents: RunContents) -> list[str]:
    config = contents.config
    paper = load_config(None)
    notes = []
    changed = []
    if config.data.image_size != paper.data.image_size:
        changed.append(f"{config.data.image_size} px images (paper {paper.data.image_size})")
    if config.folds.k != paper.folds.k:
        changed.append(f"{config.folds.k} folds (paper {paper.folds.k})")
    if config.model.alpha != paper.model.alpha:
        changed.append(f"MobileNetV2 width {config.model.alpha} (paper {paper.model.alpha})")
    if config.model.dense_units != paper.model.dense_units:
        changed.append(f"Dense({config.model.dense_units}) head (paper Dense({paper.model.dense_units}))")
    if changed:
        notes.append("This run deviates from the published protocol: " + "; ".join(changed)
                     + ". Compare its numbers with the paper's with that in mind.")
    skipped = [(r.name, r.metrics) for r in contents.strategies.values() if r.metrics and r.metrics.get("status") == "skipped"]
    for name, metrics in skipped:
        notes.append(f"{name} was not trained: {metrics.get('reason', 'skipped')}")
    return notes


def _analysis_notes(contents: RunContents) -> list[str]:
    notes = []
    attribution_issues = []
    for result in contents.analysed():
        attribution = result.analysis.get("attribution")
        if attribution is not None and "additivity_error" in attribution and attribution["additivity_error"].max() > 1e-3:
            attribution_issues.append(f"{result.name} (max {attribution['additivity_error'].max():.1e})")
    if attribution_issues:
        notes.append("SHAP additivity error above 1e-3: " + ", ".join(attribution_issues)
                     + "; attributions are approximate there.")
    summary = contents.analysis_summary or {}
    notes += [str(n) for n in summary.get("notes", [])[:10]]
    if contents.config.folds.k < 5:
        notes.append(f"Only {contents.config.folds.k} folds: stability across folds rests on "
                     f"{contents.config.folds.k} models, and per-fold statistics on few images.")
    return notes


def _acquisition(contents: RunContents) -> list[str]:
    found = contents.acquisition or {}
    if found.get("status") != "done" or not found.get("flagged"):
        return []
    from cxrbio.confounding.acquisition import AcquisitionBaseline, describe

    return [describe(AcquisitionBaseline.from_json(found))]


def _covariates(contents: RunContents) -> list[str]:
    rows = [r for r in (contents.covariates or {}).get("rows", []) if r.get("significant")]
    notes = [f"{r['covariate']} differs by class ({r['sentence']}; {r['test']}, q = {r['q']:.2g}): a model can read it "
             "instead of the disease (see Confounding)." for r in rows]
    notes += [str(n) for n in (contents.covariates or {}).get("notes", []) if "several findings" in str(n)]
    return notes


def limitations(contents: RunContents) -> list[str]:
    manifest = contents.manifest
    checks: list[Any] = [
        _acquisition(contents), _covariates(contents), _single_source(manifest), _source_confounding(manifest),
        _small_classes(contents), _duplicates(manifest),
        _exclusions(manifest), _masks(contents), _shortcuts(contents), _protocol(contents), _analysis_notes(contents),
    ]
    return [note for found in checks for note in found]
