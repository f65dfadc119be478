"""Summary and provenance: the data the run saw, the settings it used, the software that ran it."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from typing import Any

import pandas as pd

from cxrbio.config import config_to_yaml
from cxrbio.data.summary import summarize
from cxrbio.report.contents import RunContents

PACKAGES = ("cxrbio", "tensorflow", "keras", "numpy", "scikit-learn", "scipy", "pyradiomics", "SimpleITK", "shap",
            "umap-learn", "statsmodels", "pandas", "plotly", "ray")


def package_versions() -> list[dict[str, str]]:
    rows = [{"package": "python", "version": sys.version.split()[0]}, {"package": "platform", "version": platform.platform()}]
    for name in PACKAGES:
        try:
            rows.append({"package": name, "version": importlib.metadata.version(name)})
        except importlib.metadata.PackageNotFoundError:
            rows.append({"package": name, "version": "not installed"})
    return rows


def _frame_rows(frame: pd.DataFrame, index_name: str) -> dict[str, Any]:
    frame = frame.reset_index().rename(columns={"index": index_name})
    return {"columns": [str(c) for c in frame.columns],
            "rows": [[str(v) for v in row] for row in frame.itertuples(index=False)]}


def where(row: pd.Series, show_file_names: bool) -> str:
    """How a user finds an image: its file name or CSV row, or only its id when names are hidden."""
    return str(row.get("row") or row["image_id"]) if show_file_names else str(row["image_id"])


def unit_summary(contents: RunContents) -> dict[str, Any]:
    """Fresh and stale units, and the analysis settings that differ from the run's config (from the stamps)."""
    from cxrbio.run.artifacts import flatten

    own = {f"analysis.{k}": v for k, v in flatten(contents.config.analysis.model_dump(mode="json")).items()}
    differing = []
    for unit in contents.units:
        if unit.stage != "analyze":
            continue
        for key, value in unit.settings.items():
            if key in own and own[key] != value:
                differing.append({"unit": unit.label, "key": key, "used": repr(value), "config": repr(own[key])})
    return {"fresh": sum(u.state == "fresh" for u in contents.units),
            "stale": [u for u in contents.units if u.state == "stale"], "analysis_settings": differing}


def provenance_section(contents: RunContents) -> dict[str, Any]:
    manifest = contents.manifest
    summary = summarize(manifest, contents.classes)
    show = contents.config.report.show_file_names
    exclusions = [{"where": where(row, show), "image_id": str(row["image_id"]), "label": str(row["label"]),
                   "status": str(row["qc_status"]), "reason": str(row.get("qc_reason") or "")}
                  for _, row in manifest[~manifest["included"]].iterrows()]
    readable = manifest[manifest["dup_group"] >= 0]
    sizes = readable.groupby("dup_group")["image_id"].transform("size")
    groups = []
    for _, members in readable[sizes > 1].groupby("dup_group"):
        groups.append({"images": [where(r, show) for _, r in members.iterrows()],
                       "labels": sorted({str(v) for v in members["label"]}),
                       "patients": int(members["patient_id"].nunique()), "folds": sorted({int(v) for v in members["fold"]})})
    masks = None
    if "mask_source" in manifest.columns:
        used = manifest[manifest["included"]]
        masks = {"sources": {str(k): int(v) for k, v in used["mask_source"].value_counts().items()},
                 "flagged": int((used["mask_note"].fillna("") != "").sum())}
    radiomics = None
    if contents.radiomics_status is not None:
        status = contents.radiomics_status
        radiomics = {str(k): int(v) for k, v in status["status"].value_counts().items()} if "status" in status else None
    config = contents.config
    return {
        "images": len(manifest), "included": int(manifest["included"].sum()),
        "patients": int(manifest.loc[manifest["included"], "patient_id"].nunique()),
        "sources": int(manifest["source"].nunique()),
        "per_class": _frame_rows(summary.per_class, "class"),
        "per_source": _frame_rows(summary.per_source, "source"),
        "folds": _frame_rows(summary.folds, "fold") if summary.folds is not None else None,
        "exclusions": exclusions, "duplicates": summary.duplicates, "duplicate_groups": groups[:50],
        "duplicate_groups_total": len(groups), "confounding": summary.confounding,
        "masks": masks, "radiomics_status": radiomics, "thumbnails": config.report.thumbnails,
        "config_yaml": config_to_yaml(config), "packages": package_versions(), "units": unit_summary(contents),
        "settings": [
            ("classes", ", ".join(config.data.classes)), ("image size", f"{config.data.image_size} px"),
            ("folds", f"{config.folds.k} ({config.folds.scheme})"), ("MobileNetV2 width", str(config.model.alpha)),
            ("head", f"Dense({config.model.dense_units}) + BatchNorm + Dropout({config.model.dropout})"),
            ("strategies", ", ".join(config.train.strategies)),
            ("augmentation", f"±{config.augment.rotation_degrees:g}°, ±{config.augment.shift_pixels:g} px at "
                             f"{config.augment.reference_size} px" if config.augment.enabled else "off"),
        ],
    }
