"""The report's Confounding section: disease or hospital? Right after the summary.

Where each class comes from (sources, and the public data sets recognised from file names), how
well acquisition alone predicts each class beside each strategy's accuracy on it, whether each
space tells a class's sources apart (the source probe), covariates that differ by class, and a
plain-language verdict per class. Everything here was computed by ``cxrbio data scan`` and
``cxrbio analyze`` (docs/confounding.md); this module only words it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from cxrbio.data.provenance import UNKNOWN, dataset_from_filename
from cxrbio.report.contents import RunContents
from cxrbio.report.formatting import number, p_value, pct
from cxrbio.run.artifacts import RADIOMICS_SPACE
from cxrbio.run.external_files import read_replication


def _counts(values: pd.Series) -> str:
    counts = values.value_counts()
    return ", ".join(f"{name} {count}" for name, count in counts.items())


def provenance_rows(contents: RunContents) -> list[dict[str, Any]]:
    """Per class: images, sources (as the run records them), public data sets recognised from the file names."""
    used = contents.included
    recognised = used["path"].map(dataset_from_filename) if "path" in used else pd.Series(UNKNOWN, index=used.index)
    rows = []
    for name in contents.classes:
        part = used["label"] == name
        rows.append({"class": name, "images": int(part.sum()), "sources": _counts(used.loc[part, "source"].astype(str)),
                     "recognised": _counts(recognised[part]),
                     "unknown": pct(float((used.loc[part, "source"].astype(str) == UNKNOWN).mean()) if part.any() else None)})
    return rows


def acquisition_rows(contents: RunContents) -> list[dict[str, Any]]:
    """Per class: the acquisition baseline's AUROC and verdict, beside each trained strategy's sensitivity and AUROC."""
    found = contents.acquisition or {}
    by_class = {row["class"]: row for row in found.get("per_class", [])}
    rows = []
    for name in contents.classes:
        row = by_class.get(name, {})
        strategies = []
        for result in contents.trained():
            pooled = result.trained_metrics["pooled"]
            strategies.append(f"{result.name} {pct(pooled['per_class'].get(name, {}).get('sensitivity'))}% / "
                              f"{number(pooled.get('auroc', {}).get(name), 2)}")
        rows.append({"class": name, "auroc": number(row.get("auroc"), 2), "null_p95": number(row.get("auroc_null_p95"), 2),
                     "p_holm": p_value(row.get("p_holm")), "flagged": bool(row.get("flagged")),
                     "strategies": "; ".join(strategies) or "–"})
    return rows


def probe_rows(contents: RunContents) -> list[dict[str, Any]]:
    """The source probe per space and class (per fold for a strategy: the fold models' dims differ)."""
    rows = []
    spaces = [(r.name, (r.analysis or {}).get("source_probe")) for r in contents.analysed()]
    spaces.append((RADIOMICS_SPACE, contents.radiomics_analysis.get("source_probe")))
    for space, frame in spaces:
        if frame is None or frame.empty:
            continue
        for _, row in frame.iterrows():
            rows.append({"space": space, "fold": str(int(row["fold"])) if "fold" in row and pd.notna(row["fold"]) else "all",
                         "target": row.get("target", "source"), "class": row["class"], "sources": row["sources"],
                         "images": int(row["images"]),
                         "balanced_accuracy": number(row["balanced_accuracy"], 2), "null": number(row["null_p95"], 2),
                         "p": p_value(row["p"]), "significant": bool(row["p"] < contents.config.confounding.alpha)})
    return rows


def design_rows(contents: RunContents) -> list[dict[str, Any]]:
    """The scan's design check per class (confounding/design.parquet), for the report's table."""
    if contents.design is None or contents.design.empty:
        return []
    rows = []
    for row in contents.design.to_dict("records"):
        mda = row["min_detectable_auc"]
        rows.append({"class": row["class"], "contrast": row["contrast"], "design": row["design"],
                     "strata": row["strata"] or "–", "patients": f"{row['patients_class']} vs {row['patients_control']}",
                     "mda": "–" if mda != mda else (number(mda, 2) if mda <= 1 else "none"), "note": row["note"]})
    return rows


def tiers_and_passes(contents: RunContents) -> dict[str, tuple[str, int]]:
    """Per class: (the source tier the analyses gave it, candidates that passed every gate, over the strategies)."""
    out: dict[str, tuple[str, int]] = {}
    for result in contents.analysed():
        frame = (result.analysis or {}).get("candidates")
        if frame is None or frame.empty or "source_tier" not in frame:
            continue
        for name, part in frame.groupby("class"):
            tier, passed = out.get(str(name), ("", 0))
            out[str(name)] = (str(part["source_tier"].iloc[0]) or tier, passed + int(part["passed"].sum()))
    return out


def _design_sentence(row: dict[str, Any] | None, tier: str, passed: int) -> str:
    """What the data can support for a class: its design, its tier, what would make it estimable."""
    if row is None:
        return ""
    note = str(row["note"]).removeprefix(f"{row['class']}: ")  # the verdict names the class already
    row = {**row, "note": note[:1].upper() + note[1:]}
    if tier == "acquisition-confounded":
        return ("acquisition-confounded: the acquisition baseline names it and no recorded source separates a claim "
                f"from the collection's look; no candidate can pass. {row['note']}").strip()
    if row["design"] == "not estimable":
        return f"not estimable free of source: {row['note']}"
    mda = row["min_detectable_auc"]
    where = (f"{row['design']} within {row['strata']} ({row['patients_class']} vs {row['patients_control']} patients"
             + (f"; smallest detectable AUC {mda:.2f}" if mda == mda and mda <= 1 else "") + ")")
    counted = f"; {passed} candidate(s) passed every gate" if tier else ""
    return where + counted + (f". {row['note']}" if row["note"] else "")


def verdicts(contents: RunContents, probes: list[dict[str, Any]]) -> list[str]:
    """One sentence per class: what the design allows, what speaks against its accuracy being a lung finding."""
    found = contents.acquisition or {}
    by_class = {row["class"]: row for row in found.get("per_class", [])}
    covariates = [r for r in (contents.covariates or {}).get("rows", []) if r.get("significant")]
    used = contents.included
    design: dict[str, dict[str, Any]] = ({str(r["class"]): {str(k): v for k, v in r.items()} for r in contents.design.to_dict("records")}
                                         if contents.design is not None else {})
    tiers = tiers_and_passes(contents)
    sentences = []
    for name in contents.classes:
        reasons = []
        tier, passed = tiers.get(name, ("", 0))
        stated = _design_sentence(design.get(name), tier, passed)
        if stated:
            reasons.append(stated)
        row = by_class.get(name, {})
        if row.get("flagged"):
            from cxrbio.confounding.acquisition import DESCRIPTIONS

            leading = ", ".join(DESCRIPTIONS.get(k, k) for k in list(found.get("importance", {}))[:2])
            reasons.append(f"acquisition alone reaches AUROC {number(row.get('auroc'), 2)} ({leading}); the CNN's "
                           f"{name} accuracy is not evidence of a lung finding")
        read = sorted({p["space"] for p in probes if p["class"] == name and p["significant"] and p["target"] == "source"})
        if read:
            reasons.append(f"{', '.join(read)} tell its sources apart: the features carry the collection's look")
        sources = used.loc[used["label"] == name, "source"].astype(str)
        known = sources[sources != UNKNOWN]
        if len(known) and known.value_counts(normalize=True).iloc[0] >= 0.9 and used["source"].nunique() > 1:
            reasons.append(f"{known.value_counts(normalize=True).iloc[0]:.0%} of its images come from "
                           f"'{known.value_counts().index[0]}'")
        for result in contents.analysed():
            occluded = (result.analysis or {}).get("audit_verdicts")
            if occluded is not None and name in set(occluded["class"]):
                found_row = occluded[occluded["class"] == name].iloc[0]
                reasons.append(f"{result.name}: " + str(found_row["sentence"]).removeprefix(f"{name} "))
        if reasons:
            sentences.append(f"{name}: " + "; ".join(r.rstrip(".") for r in reasons) + ".")
        elif row:
            sentences.append(f"{name}: no acquisition or source signal found (acquisition AUROC "
                             f"{number(row.get('auroc'), 2)}).")
    for covariate in covariates:
        sentences.append(f"Covariate {covariate['covariate']} differs by class ({covariate['test']}, q = "
                         f"{p_value(covariate.get('q'))}): {covariate['sentence']}.")
    return sentences


def source_rows(contents: RunContents) -> list[dict[str, Any]]:
    """Per strategy and source: how its out-of-fold images fared (held-out sources under leave-one-source-out)."""
    from sklearn.metrics import balanced_accuracy_score

    rows = []
    for result in contents.trained():
        frame = result.predictions
        if frame is None or "source" not in frame or frame["source"].nunique() < 2:
            continue
        for source, part in frame.groupby("source", sort=True):
            present = sorted(part["label"].unique(), key=contents.classes.index)
            hits = part["predicted"] == part["true"]
            per_class = ", ".join(f"{name} {pct(float(hits[part['label'] == name].mean()))}%" for name in present)
            rows.append({"strategy": result.name, "source": str(source), "images": len(part),
                         "patients": int(part["patient_id"].nunique()),
                         "accuracy": pct(float((part["true"] == part["predicted"]).mean())),
                         "balanced_accuracy": pct(float(balanced_accuracy_score(part["true"], part["predicted"]))),
                         "per_class": per_class})
    return rows


def audit_rows(contents: RunContents) -> list[dict[str, Any]]:
    """Per strategy and mask source: audited dims, flagged as likely shortcut, unreliable saliency maps."""
    rows = []
    for result in contents.analysed():
        table = (result.analysis or {}).get("audit_sources")
        if table is None:
            continue
        for _, row in table.iterrows():
            rows.append({"strategy": result.name, "lung_masks": row["mask_sources"], "body_masks": row["body_sources"],
                         "audited": int(row["audited"]), "flagged": int(row["flagged"]),
                         "share": pct(float(row["flagged_share"])), "unreliable": int(row["unreliable_maps"])})
    return rows


def blanked_rows(contents: RunContents) -> list[dict[str, Any]]:
    """Per strategy and class: accuracy as is, with the lungs filled, with the outside of the body filled (mean over folds)."""
    rows = []
    for result in contents.analysed():
        frame = (result.analysis or {}).get("audit_model")
        if frame is None or frame.empty:
            continue
        means = frame.groupby("class")[["accuracy", "lungs_blanked_accuracy", "outside_blanked_accuracy"]].mean()
        for name in [c for c in contents.classes if c in means.index]:
            row: Any = means.loc[name]  # one class's row of means
            rows.append({"strategy": result.name, "class": name, "accuracy": pct(float(row["accuracy"])),
                         "lungs": pct(float(row["lungs_blanked_accuracy"])),
                         "outside": pct(float(row["outside_blanked_accuracy"])),
                         "outside_drop": bool(row["accuracy"] - row["outside_blanked_accuracy"] >= 0.2)})
    return rows


def lungs_removed_rows(contents: RunContents) -> list[dict[str, Any]]:
    """Per retrained strategy and class: AUROC and sensitivity with the image centre blacked out, beside the normal model's."""
    rows = []
    for name, found in contents.lungs_removed.items():
        for row in found.get("per_class", []):
            low, high = row["removed_auroc_ci"]
            rows.append({"strategy": name, "class": row["class"], "images": row["images"],
                         "normal_auroc": number(row["normal_auroc"], 2), "removed_auroc": number(row["removed_auroc"], 2),
                         "ci": f"[{number(low, 2)}, {number(high, 2)}]",
                         "sensitivity": f"{pct(row['normal_sensitivity'])} → {pct(row['removed_sensitivity'])}",
                         "recognised": bool(row["recognised_without_lungs"])})
    return rows


def lungs_removed_summaries(contents: RunContents) -> list[dict[str, Any]]:
    out = []
    for name, found in contents.lungs_removed.items():
        normal, removed = found["normal"], found["removed"]
        low, high = removed["balanced_accuracy_ci"]
        out.append({"strategy": name, "box": pct(found["box_fraction"]), "folds": found["folds"],
                    "normal": pct(normal["balanced_accuracy"]), "removed": pct(removed["balanced_accuracy"]),
                    "ci": f"[{pct(low)}, {pct(high)}]", "chance": pct(found["chance_balanced_accuracy"]),
                    "recognised": [r["class"] for r in found["per_class"] if r["recognised_without_lungs"]]})
    return out


def external_rows(contents: RunContents) -> list[dict[str, Any]]:
    """Per external set and strategy: internal → external for each compared figure, the drop with its CI, ECE."""
    from cxrbio.evaluation.external import COMPARED

    rows = []
    for name, by_strategy in contents.external.items():
        for strategy, found in by_strategy.items():
            figures = []
            for key, label in COMPARED.items():
                d = found["drop"][key]
                low, high = d["drop_ci"]
                figures.append({"label": label, "internal": number(d["internal"], 3), "external": number(d["external"], 3),
                                "drop": f"{d['drop']:+.3f}", "ci": f"[{low:+.3f}, {high:+.3f}]",
                                "significant": bool(low > 0 or high < 0)})
            calibration = found["metrics"].get("calibration", {}).get("uncalibrated", {})
            rows.append({"set": name, "strategy": strategy, "images": found["images"], "patients": found["patients"],
                         "sources": ", ".join(found.get("sources", [])), "figures": figures,
                         "ece": number(calibration.get("ece"), 3),
                         "fold_models": number(found["metrics"]["fold_models_summary"]["fold_mean"].get("accuracy"), 3),
                         "fold_sd": number(found["metrics"]["fold_models_summary"]["fold_sd"].get("accuracy"), 3),
                         "notes": found.get("notes", []), "replication": replication_rows(contents, name, strategy),
                         "replication_counts": found.get("replication")})
    return rows


def replication_rows(contents: RunContents, name: str, strategy: str) -> list[dict[str, Any]]:
    """Each passing candidate re-tested on the external patients (external/<name>/<strategy>/replication.parquet)."""

    frame = read_replication(contents.run, name, strategy)
    if frame is None:
        return []
    return [{"class": row["class"], "feature": row["feature"], "contrast": row["contrast"],
             "direction": "higher" if row["expected_direction"] > 0 else "lower",
             "internal": number(row["internal_auc"], 2), "external": number(row["auc"], 2),
             "patients": f"{int(row['n_class'])} vs {int(row['n_reference'])}", "q": number(row["q"], 3),
             "verdict": row["verdict"]} for _, row in frame.iterrows()]


def confounding_section(contents: RunContents) -> dict[str, Any]:
    from cxrbio.confounding.acquisition import DESCRIPTIONS, AcquisitionBaseline, describe

    found = contents.acquisition
    probes = probe_rows(contents)
    covariates = contents.covariates or {}
    return {
        "provenance": provenance_rows(contents),
        "acquisition": describe(AcquisitionBaseline.from_json(found)) if found else None,
        "acquisition_rows": acquisition_rows(contents) if found else [],
        "importance": [{"property": DESCRIPTIONS.get(k, k), "share": pct(v)} for k, v in (found or {}).get("importance", {}).items()],
        "thresholds": (found or {}).get("thresholds", {}),
        "probes": probes,
        "covariates": covariates.get("rows", []),
        "covariate_notes": covariates.get("notes", []),
        "verdicts": verdicts(contents, probes),
        "design": design_rows(contents),
        "scheme": contents.config.folds.scheme,
        "lungs_removed": lungs_removed_rows(contents),
        "run": str(contents.run.root),
        "external": external_rows(contents),
        "lungs_removed_summaries": lungs_removed_summaries(contents),
        "sources": source_rows(contents),
        "audit": audit_rows(contents),
        "blanked": blanked_rows(contents),
        "margin": contents.config.analysis.shortcut_margin,
        "sanity_max_rho": contents.config.analysis.sanity_max_rho,
        "missing": None if found else "re-scan the data ('cxrbio data scan DATA RUN --force') for the acquisition "
                                      "baseline and the covariate audit",
    }
