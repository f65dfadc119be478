"""A methods paragraph, generated from the run's config and what actually ran, ready to paste into a paper.

Why generated: a methods section written by hand drifts from the settings that produced the
numbers (a gate changed after an analysis, a fold count lowered for speed). Every figure here is
read from the run: the manifest and design check, the config, the analysis log's last entry (the
gates the candidates were judged by), the installed package versions, and the limitations the
report found (the page takes them from its limitations section, built once).
"""

from __future__ import annotations

from typing import Any

from cxrbio.report.contents import RunContents


def _versions(names: tuple[str, ...]) -> str:
    import importlib.metadata

    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def _data_sentence(contents: RunContents) -> str:
    manifest = contents.manifest
    if manifest is None or manifest.empty:
        return "No data set has been scanned yet."
    included = manifest[manifest["included"]] if "included" in manifest else manifest
    counts = included["label"].value_counts()
    per_class = ", ".join(f"{cls} {int(counts.get(cls, 0))}" for cls in contents.classes)
    sources = sorted(included["source"].astype(str).unique()) if "source" in included else []
    excluded = len(manifest) - len(included)
    sentence = (f"We analysed {len(included)} chest X-rays of {included['patient_id'].nunique()} patients in "
                f"{len(contents.classes)} classes ({per_class})")
    sentence += f" from {len(sources)} recorded source(s) ({', '.join(sources)})" if sources else ""
    sentence += f"; {excluded} image(s) were excluded by quality control or as duplicates." if excluded else "."
    design = contents.design
    if design is not None and not design.empty and "design" in design:
        groups = {kind: sorted(design.loc[design["design"] == kind, "class"].astype(str))
                  for kind in ("estimable", "source unverified", "not estimable")}
        parts = [f"{kind}: {', '.join(names)}" for kind, names in groups.items() if names]
        sentence += (" A design check at scan time asked, per class, whether a disease effect can be estimated "
                     "within sources holding both the class and the controls (" + "; ".join(parts) + ").")
    return sentence


def _model_sentence(contents: RunContents) -> str:
    config = contents.config
    m, t, a, f = config.model, config.train, config.augment, config.folds
    augmentation = (f"augmented by rotations of up to ±{a.rotation_degrees:g}° and shifts of up to "
                    f"±{a.shift_pixels:g} px (at {a.reference_size} px)") if a.enabled else "not augmented"
    return (f"Images were letterboxed to {config.data.image_size}×{config.data.image_size} px and {augmentation}. "
            f"MobileNetV2 (width {m.alpha:g}) with global average pooling, a dense layer of {m.dense_units} units, "
            f"batch normalisation and dropout {m.dropout:g} was trained as {', '.join(t.strategies)} "
            f"({t.optimizer}, learning rate {t.learning_rate:g}, batch {t.batch_size}, up to {t.epochs} epochs, early "
            f"stopping after {t.early_stopping_patience}) under {f.k}-fold cross-validation with folds grouped by "
            f"patient ({f.scheme}). Accuracy, sensitivity, specificity and AUROC are reported on the pooled "
            f"out-of-fold predictions with {100 * config.evaluation.level:g}% intervals from "
            f"{config.evaluation.bootstrap} patient-bootstrap resamples.")


def _candidate_sentence(contents: RunContents) -> str:
    from cxrbio.report.candidates import gate_settings

    if not contents.analysed():
        return "No candidate biomarker analysis has been run."
    g = gate_settings(contents)
    control = f"against the control class ({g['control']})" if g["control"] else "against the other classes"
    pooling = ("every strategy in one hierarchy" if not g["primary_strategy"]
               else f"{g['primary_strategy']} confirmatory, the other strategies exploratory")
    rule = " and a Hartung-Knapp random-effects pooling over folds" if g["direction_rule"] == "random-effects" else ""
    return (f"Candidate biomarkers were units of the global-average-pooled embedding matched across fold models "
            f"(correlation within predicted class on held-out images above the {g['match_null_quantile']} quantile of "
            f"a shuffle null). For each held-out fold the {g['top_k']} best per class were selected on the other "
            f"folds (SHAP) and confirmed on the held-out fold's patients, one value per patient, {control}, within "
            f"strata of fold × source (van Elteren's stratified Wilcoxon, one-sided in the direction the selection "
            f"folds predicted). A candidate passed when its Benjamini–Bogomolov hierarchical false discovery rate "
            f"across every (strategy, class) family was below {g['q']:g} ({pooling}; on the larger of the "
            f"against-controls and one-vs-rest p-values), when it was tested in at least {g['min_folds']} folds with a "
            f"majority and the combined effect on the predicted side{rule}, when its class was estimable free of "
            f"source or with sources unverified (never not estimable or acquisition-confounded), when no covariate "
            f"predicted it within class"
            + (f", and when no audited unit of it was flagged as a likely shortcut (occlusion ratio ≥ {g['margin']:g})"
               if g["audit"] else "") + ". Radiomics descriptors were tiered disease-specific or nuisance by "
            "comparing partial correlations within the disease and within the controls (Fisher z), and the strongest "
            "were given a mediation share of the unit's disease-versus-control difference with a patient-bootstrap "
            "interval. The audit also replaced the region outside the body with another source's image (the change "
            "in the class logit against equal-area random regions swapped the same way), and read each class's "
            "accuracy with its lungs filled, with patient-bootstrap intervals.")


def methods_section(contents: RunContents) -> dict[str, Any]:
    """The paragraph (one string) with the software sentence; the page adds the limitations section's notes."""
    software = _versions(("cxrbio", "tensorflow", "keras", "scikit-learn", "scipy", "statsmodels", "pyradiomics",
                          "shap", "umap-learn"))
    paragraph = " ".join([_data_sentence(contents), _model_sentence(contents), _candidate_sentence(contents),
                          f"Software: {software}." if software else ""]).strip()
    return {"paragraph": paragraph}
