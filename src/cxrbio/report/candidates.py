"""Per disease: the candidate biomarkers that passed every gate, then every tested one; and a saliency gallery.

Reads ``analysis/<strategy>/`` (docs/analysis.md). A candidate is a matched feature (one dim per
fold model, matched by within-class correlation), selected on other folds and confirmed on each
held-out fold's patients; the gates it was judged by are printed with it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from cxrbio.report.contents import RunContents, StrategyResults
from cxrbio.report.figures import saliency_figure
from cxrbio.report.formatting import number, p_value, sort_key
from cxrbio.report.gallery import overlay, png_data_uri


def _flag(row: pd.Series) -> str:
    value = row.get("likely_shortcut")
    if pd.isna(value):
        return "not audited"
    return "likely shortcut" if bool(value) else "in body"


def _equivalence(row: pd.Series) -> str:
    """The within-class source flag in words: equivalent, differs, or not tested (one source)."""
    flag = row.get("source_equivalent")
    if flag is None or (isinstance(flag, float) and np.isnan(flag)) or pd.isna(flag):
        return "–"
    auc = number(row.get("source_auc"))
    return f"equivalent (AUC {auc})" if bool(flag) else f"not shown equivalent (AUC {auc})"


def _descriptor_text(row: pd.Series) -> str:
    """The radiomics descriptors with their tier: specific to the disease, a nuisance every image has, or none."""
    tier = str(row.get("descriptor_tier") or "")
    if tier == "nuisance":
        return f"nuisance (also within the controls): {row.get('nuisance_descriptors') or ''}"
    if tier in ("disease-specific", "not compared"):
        mediated = str(row.get("mediated_by") or "")
        return f"{tier}: {row.get('descriptors') or ''}" + (f"; carries the difference from the controls: {mediated}"
                                                           if mediated else "")
    return str(row.get("descriptors") or "–") if not tier else "none"


def candidate_rows(frame: pd.DataFrame, limit: int) -> list[dict[str, Any]]:
    rows = []
    ordered = frame.sort_values(["passed", "p"], ascending=[False, True]).head(limit)
    for _, row in ordered.iterrows():
        direction = int(row["direction"]) if pd.notna(row.get("direction")) else 0
        rows.append({
            "feature": str(row["feature"]), "dims": str(row.get("dims") or "").replace("|", " "),
            "passed": bool(row["passed"]), "failed": str(row.get("failed_gates") or ""),
            "direction": "higher → class" if direction > 0 else "lower → class" if direction < 0 else "–",
            "auc": number(row.get("auc")), "auc_key": sort_key(row.get("auc")),
            "auc_ci": f"[{number(row.get('auc_low'))}, {number(row.get('auc_high'))}]",
            # the q the confirmation gate read: the hierarchy's across every family (older analyses: within the family)
            "q": p_value(row.get("q_hier", row.get("q"))), "q_key": sort_key(row.get("q_hier", row.get("q"))),
            "i2": number(row.get("i2"), 2),
            "folds": f"{int(row['folds_agree'])}/{int(row['folds_tested'])}",
            "contrast": str(row.get("contrast") or ""), "tier": str(row.get("source_tier") or "–"),
            "strata": int(row.get("strata") or 0),
            "auc_rest": number(row.get("auc_rest")), "auc_rest_key": sort_key(row.get("auc_rest")),
            "q_rest": p_value(row.get("q_rest")),
            "patients": int(row.get("n_patients") or 0),
            "equivalence": _equivalence(row),
            "acquisition": p_value(row.get("acquisition_p_adjusted")), "acquisition_key": sort_key(row.get("acquisition_p_adjusted")),
            "descriptors": _descriptor_text(row),
            "lung_density": number(row.get("lung_density"), 2), "lung_key": sort_key(row.get("lung_density")),
            "outside_ratio": number(row.get("outside_ratio"), 2), "outside_key": sort_key(row.get("outside_ratio")),
            "flag": _flag(row),
            "marker": str(row.get("marker") or "–").split(" (")[0],
            "weakest": (f"{row.get('weakest_other')} {number(row.get('min_auc_other'), 2)}"
                        if row.get("weakest_other") else "–"),
            "weakest_key": sort_key(row.get("min_auc_other")), "specificity": str(row.get("specificity") or ""),
        })
    return rows


class ImageSource:
    """Letterboxed images and masks for thumbnails, read on demand from the manifest's paths."""

    def __init__(self, contents: RunContents) -> None:
        self.contents = contents
        self.paths = contents.manifest.set_index("image_id")["path"].to_dict()
        self.size = contents.config.data.image_size
        self.thumbnails = contents.config.report.thumbnails  # False: no X-ray pixel is read into the report
        self.unreadable: list[str] = []

    def image(self, image_id: str) -> np.ndarray | None:
        from cxrbio.data.input_pipeline import load_letterboxed

        path = self.paths.get(image_id)
        try:
            return load_letterboxed((str(path), self.size)) if path is not None else None
        except Exception:  # noqa: BLE001 - a moved or damaged file costs one thumbnail, said in the report
            self.unreadable.append(image_id)
            return None

    def mask(self, image_id: str) -> np.ndarray | None:
        from cxrbio.run.mask_files import read_mask

        try:
            return read_mask(self.contents.run, image_id)
        except OSError:
            return None


def gallery(result: StrategyResults, saliency_maps: Mapping[str, np.ndarray], disease: str, frame: pd.DataFrame,
            images: ImageSource, count: int, px: int) -> list[dict[str, Any]]:
    audit = result.analysis.get("audit_dims")
    if audit is None or count == 0:
        return []
    slug = f"{_slug(result.name)}-{_slug(disease)}"
    tiles: list[dict[str, Any]] = []
    passing = frame.sort_values(["passed", "p"], ascending=[False, True])
    for _, row in passing.iterrows():
        matches = audit[(audit["feature"] == row["feature"]) & (audit["class"] == disease)] if "feature" in audit else audit[:0]
        match = matches.head(1)
        key = f"fold-{int(match.iloc[0]['fold'])}/{match.iloc[0]['dim']}" if not match.empty else ""
        saliency = saliency_maps[key].astype(np.float32) if key in saliency_maps else None
        if saliency is None or match.empty:
            continue
        ids = [i for i in str(match.iloc[0]["images"]).split("|") if i]
        if not ids:
            continue
        mask = images.mask(ids[0])
        if images.thumbnails:
            image = images.image(ids[0])
            if image is None:
                continue
            drawn = {"src": png_data_uri(overlay(image, saliency, mask, px)), "figure": ""}
        else:  # no patient pixels: the map alone, as a plotly heatmap (numbers, not an embedded picture)
            drawn = {"src": "", "figure": saliency_figure(saliency, mask, f"saliency-{slug}-{len(tiles)}", px)}
        tiles.append({
            **drawn, "fold": int(match.iloc[0]["fold"]),
            "dim": str(match.iloc[0]["dim"]), "feature": str(row["feature"]), "passed": bool(row["passed"]),
            "lung_density": number(row.get("lung_density"), 2), "outside_ratio": number(row.get("outside_ratio"), 2),
            "unreliable": bool(match.iloc[0].get("map_unreliable", False)), "map_rho": number(match.iloc[0].get("map_rho"), 2),
            "flag": _flag(row), "images": len(ids), "has_mask": mask is not None and bool(mask.any()),
            "auc": number(row.get("auc")), "px": px,
        })
        if len(tiles) >= count:
            break
    return tiles


def _by_class(frame: pd.DataFrame | None, disease: str) -> pd.DataFrame:
    if frame is None or "class" not in frame.columns:
        return pd.DataFrame()
    return frame[frame["class"] == disease]


def disease_panels(contents: RunContents, result: StrategyResults, images: ImageSource,
                   saliency_maps: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    settings = contents.config.report
    panels = []
    candidates = result.analysis["candidates"]
    for index, disease in enumerate(contents.classes):
        frame = candidates[candidates["class"] == disease]
        stability = _by_class(result.analysis.get("stability"), disease)
        power = _by_class(result.analysis.get("power"), disease)
        audit_model = _by_class(result.analysis.get("audit_model"), disease)
        scores = _by_class(result.analysis.get("shortcut_scores"), disease)
        flagged = int(frame["likely_shortcut"].fillna(False).astype(bool).sum()) if "likely_shortcut" in frame else 0
        panel: dict[str, Any] = {
            "disease": disease, "anchor": f"{result.name}-{index}-{_slug(disease)}",
            "rows": candidate_rows(frame, settings.table_rows) if "passed" in frame else [], "total": len(frame),
            "passed": int(frame["passed"].sum()) if "passed" in frame else 0, "flagged": flagged,
            "audited": int(frame["likely_shortcut"].notna().sum()) if "likely_shortcut" in frame else 0,
            "stability": None, "power": None, "audit": None,
            "shortcut_score": number(scores["shortcut_score"].mean(), 2) if not scores.empty else "–",
            "gallery": gallery(result, saliency_maps, disease, frame, images, settings.gallery_dims, settings.thumbnail_px)
            if "passed" in frame else [],
            "failed_counts": _failed_counts(frame),
            "tier": str(frame["source_tier"].iloc[0]) if "source_tier" in frame and len(frame) else "",
            "contrast": str(frame["contrast"].iloc[0]) if "contrast" in frame and len(frame) else "",
        }
        if not stability.empty and "median_match_rho" in stability:
            s = stability.iloc[0]
            panel["stability"] = {"folds": int(s["folds"]), "match_rho": number(s["median_match_rho"], 2),
                                  "agreement": number(s["direction_agreement"], 2)}
        if not power.empty:
            confirmed = power[power["confirmed"].astype(bool)]
            panel["power"] = {"folds": len(confirmed), "of": len(power),
                              "class_patients": int(confirmed["n_class"].sum()),
                              "rest_patients": int(confirmed["n_reference"].sum())}
        if not audit_model.empty:
            panel["audit"] = {"accuracy": number(audit_model["accuracy"].mean(), 2),
                              "lungs_blanked": number(audit_model["lungs_blanked_accuracy"].mean(), 2),
                              "outside_blanked": number(audit_model["outside_blanked_accuracy"].mean(), 2),
                              "reading": ""}
            verdict = _by_class(result.analysis.get("audit_verdicts"), disease)
            if not verdict.empty:
                panel["audit"]["reading"] = str(verdict["sentence"].iloc[0])
        panels.append(panel)
    return panels


def _failed_counts(frame: pd.DataFrame) -> str:
    """'confirmation 40, direction 35, ...': how many tested features each gate stopped (one feature may fail several)."""
    if "failed_gates" not in frame or frame.empty:
        return ""
    names = [g.split(" (")[0] for text in frame["failed_gates"].fillna("") for g in str(text).split(", ") if g]
    counts = pd.Series(names).value_counts() if names else pd.Series(dtype=int)
    return ", ".join(f"{name} {int(n)}" for name, n in counts.items())


def gate_settings(contents: RunContents) -> dict[str, Any]:
    """The gates the last analysis used (its entry in analysis/log.jsonl), printed with every candidate table.

    The run's config may have changed since (``cxrbio analyze --config`` or an edited config):
    the header shows what the candidates were judged by, and ``changed`` names every gate the
    config now sets otherwise. Runs analysed before the log existed fall back to the config.
    """
    from cxrbio.config import AnalysisConfig
    from cxrbio.run import analysis_log

    entries = analysis_log.read(contents.run)
    configured = contents.config.analysis
    used = AnalysisConfig.model_validate(entries[-1]["settings"]) if entries else configured
    changed = {key: [value, getattr(configured, key, None)] for key, value in used.model_dump(mode="json").items()
               if key in analysis_log.GATE_KEYS and configured.model_dump(mode="json").get(key) != value}
    return {"q": used.gate_q, "min_folds": used.gate_min_folds, "audit": used.gate_audit,
            "direction_rule": used.direction_rule, "primary_strategy": used.primary_strategy,
            "contrasts": used.error_rate_contrasts, "match_null_quantile": used.match_null_quantile,
            "control": used.active_control(contents.classes), "margin_equivalence": used.source_equivalence_margin,
            "permutation_below": used.permutation_below,
            "margin": used.shortcut_margin, "top_k": used.top_k, "match_min_rho": used.match_min_rho,
            "min_patients": used.confirm_min_patients, "folds": contents.config.folds.k,
            "from_log": bool(entries), "changed": changed}


def analysis_log_rows(contents: RunContents) -> list[dict[str, Any]]:
    """One row per logged analysis: when, release, what changed, tests and passes, the error rate's families."""
    from cxrbio.run import analysis_log

    rows = []
    for entry in analysis_log.read(contents.run):
        tested = sum(c["tested"] for per_class in entry.get("counts", {}).values() for c in per_class.values())
        passed = sum(c["passed"] for per_class in entry.get("counts", {}).values() for c in per_class.values())
        changes = entry.get("changed_since_previous") or {}
        families = "; ".join(f"{r['scope']}: {r['tests']} tests, {r['families']} families, {r['selected']} selected"
                             for r in entry.get("error_rate", []))
        rows.append({"time": entry.get("time", ""), "release": entry.get("release", ""),
                     "analysed": ", ".join(entry.get("analysed", [])) or "none (all reused)",
                     "changed": "; ".join(f"{k} {a} → {b}" for k, (a, b) in changes.items()) or "",
                     "tested": tested, "passed": passed, "families": families})
    return rows


def _slug(text: str) -> str:
    """An element id from a label of any characters (ids are attributes, escaped again by the template)."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "class"


def descriptors_note(frame: pd.DataFrame | None) -> str:
    """Said when the passing candidates' within-disease descriptors are mostly empty: what that means, and that it is not a failure."""
    if frame is None or frame.empty or "descriptor_tier" not in frame:
        return ""
    passing = frame[frame["passed"].astype(bool)]
    if passing.empty:
        return ""
    specific = int((passing["descriptor_tier"] == "disease-specific").sum())
    if specific * 2 >= len(passing):
        return ""
    return (f"Within-disease descriptors are mostly empty: {specific} of {len(passing)} passing candidates have a "
            "disease-specific one. A descriptor can only name what varies among the disease's own patients (the "
            "finding's severity or extent); where the finding barely varies within the disease, no radiomics feature "
            "can follow the unit there. This says nothing against the candidates themselves.")


def candidates_section(contents: RunContents) -> dict[str, Any]:
    images = ImageSource(contents)
    strategies = []
    for result in contents.analysed():
        # An npz reads each map on access: only the gallery's few maps leave the file.
        with contextlib.ExitStack() as stack:
            maps = stack.enter_context(np.load(result.saliency_file)) if result.saliency_file else {}
            strategies.append({"name": result.name, "panels": disease_panels(contents, result, images, maps),
                               "descriptors_note": descriptors_note(result.analysis.get("candidates"))})
    return {"strategies": strategies, "unreadable": sorted(set(images.unreadable)),
            "gallery_dims": contents.config.report.gallery_dims, "margin": contents.config.analysis.shortcut_margin,
            "thumbnails": contents.config.report.thumbnails,
            "gates": gate_settings(contents), "log": analysis_log_rows(contents)}
