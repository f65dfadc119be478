"""What each command prints after its stage: one printer per stage result type, behind one protocol.

:func:`print_result` picks the printer by the result's type, so a command and the demo print a
stage's summary the same way, and the demo needs no switch on stage names. A new stage adds its
result type and printer to :func:`_printers`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from rich.markup import escape

from cxrbio.cli.console import console, frame_table
from cxrbio.run.rundir import RunDir


def print_scan_summary(result: Any, cfg: Any, out: Path, seconds: float) -> None:
    """What the scan found: per class, per source, exclusions, duplicates, folds."""
    from cxrbio.data.summary import summarize

    summary = summarize(result.manifest, cfg.data.classes)
    console.print(f"[bold]Scanned[/] {len(result.manifest)} images (layout: {result.layout}) in {seconds:.1f} s")
    console.print(frame_table(summary.per_class, "Images and patients per class", "class"))
    console.print(frame_table(summary.per_source, "Images per source and class", "source"))
    if not summary.exclusions.empty:
        shown = summary.exclusions.head(15)
        table = frame_table(shown.set_index("path"), f"QC exclusions ({len(summary.exclusions)})", "file")
        console.print(table)
    else:
        console.print("QC exclusions: none")
    dup_lines = ", ".join(f"{name}: {value}" for name, value in summary.duplicates.items())
    console.print(f"Duplicates -- {dup_lines}")
    for note in [*result.notes, *summary.confounding]:
        console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    if summary.folds is not None:
        console.print(frame_table(summary.folds, f"Images per fold ({cfg.folds.k} folds, patient-grouped)", "fold"))
    acquisition = getattr(result, "acquisition", None)
    if acquisition is not None:
        from cxrbio.confounding.acquisition import describe

        colour = "yellow" if acquisition.flagged else "default"
        label = "confounding warning:" if acquisition.flagged else "acquisition:"
        console.print(f"[{colour}]{label}[/] {describe(acquisition)}", soft_wrap=True)
    design = getattr(result, "design", None)
    if design is not None and not design.empty:
        print_design(design, getattr(result, "design_notes", []))
    covariates = getattr(result, "covariates", None)
    if covariates is not None:
        for row in covariates.significant:
            console.print(f"[yellow]covariate:[/] {row['covariate']} differs by class ({row['test']}, q = {row['q']:.2g}): "
                          f"{row['sentence']}", soft_wrap=True)
        for note in covariates.notes:
            console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    console.print(f"Manifest: {RunDir(out).manifest}")


def print_design(design: Any, notes: list[str]) -> None:
    """The design check: per class, whether its effect can be estimated within sources that hold its controls."""
    from rich.table import Table

    table = Table(title="Design check: can each class's effect be told from its source? (confounding/design.parquet)",
                  title_justify="left")
    for column in ("class", "contrast", "design", "strata", "patients", "smallest detectable AUC"):
        table.add_column(column)
    colours = {"estimable": "green", "source unverified": "yellow", "not estimable": "red"}
    for row in design.to_dict("records"):
        mda = row["min_detectable_auc"]
        shown = "–" if mda != mda else (f"{mda:.2f}" if mda <= 1 else "none")
        table.add_row(escape(row["class"]), escape(row["contrast"]),
                      f"[{colours.get(row['design'], 'default')}]{row['design']}[/]", escape(row["strata"] or "–"),
                      f"{row['patients_class']} vs {row['patients_control']}", shown)
    console.print(table)
    alpha, power = design["alpha"].iloc[0], design["power"].iloc[0]
    console.print(f"(smallest AUC detectable with power {power:.0%} at two-sided alpha {alpha:g}, stratified Wilcoxon)")
    for text in [*notes, *[n for n in design["note"] if n]]:
        console.print(f"[yellow]design:[/] {escape(text)}", soft_wrap=True)


def print_embed_summary(summary: Any, run_dir: Path) -> None:
    for strategy, reason in summary.skipped_strategies.items():
        console.print(f"[yellow]{escape(strategy)} was skipped in training[/]: {escape(reason)}", soft_wrap=True)
    for strategy, folds in summary.missing_folds.items():
        console.print(f"[yellow]{strategy}: folds {folds} are not trained[/]; its out-of-fold set is incomplete "
                      f"(run 'cxrbio train {run_dir} --strategies {strategy}').", soft_wrap=True)
    for strategy, dims in summary.dims.items():
        console.print(f"{strategy}: {summary.images} images x {dims} dims, one out-of-fold row each "
                      f"-> {RunDir(run_dir).path('embeddings', strategy=strategy, fold=0).parent}")
    console.print(f"Embeddings done in {summary.seconds:.1f} s.")


def print_masks_summary(result: Any, run_dir: Path) -> None:
    counts = result.table["mask_source"].value_counts()
    state = "up to date" if result.up_to_date else f"{result.seconds:.1f} s"
    console.print("Lung masks: " + ", ".join(f"{source} {n}" for source, n in counts.items())
                  + f" ({state}) -> {RunDir(run_dir).path('masks')}")
    flagged = result.flagged
    for row in flagged.head(10).itertuples():
        console.print(f"  {row.mask_source}: {row.path}: {row.mask_note}", soft_wrap=True, markup=False)
    if len(flagged) > 10:
        console.print(f"  ... and {len(flagged) - 10} more (masks/masks.parquet: mask_source, mask_note).")
    if "body_source" in result.table:
        bodies = result.table["body_source"].value_counts()
        console.print("Body masks (for the shortcut audit): " + ", ".join(f"{source} {n}" for source, n in bodies.items()))
        missing = result.without_body
        for row in missing.head(5).itertuples():
            console.print(f"  no body mask: {row.path}: {row.body_note}", soft_wrap=True, markup=False)
        if len(missing) > 5:
            console.print(f"  ... and {len(missing) - 5} more (masks/masks.parquet: body_source, body_note).")


def print_radiomics_summary(result: Any, run_dir: Path) -> None:
    from cxrbio.features.radiomic_features import STATUS_OK

    run = RunDir(run_dir)
    if result.masks is not None and not result.masks.up_to_date:
        print_masks_summary(result.masks, run_dir)
    status = result.status
    ok = status["status"] == STATUS_OK
    hits = int((status["cache"] == "hit").sum())
    n_features = result.features.shape[1] - 1 if len(result.features) else 0
    where = run.path("radiomics")
    if result.up_to_date:
        console.print(f"Radiomics: up to date ({int(ok.sum())} of {len(status)} images, {n_features} features) -> {where}")
    else:
        console.print(f"Radiomics: {int(ok.sum())} of {len(status)} images, {n_features} features each "
                      f"({hits} from the cache) in {result.seconds:.1f} s -> {where}")
    problems = result.problems
    if len(problems):
        console.print(f"[yellow]{len(problems)} image(s) lack features or have non-finite values[/] "
                      f"(listed in {run.path('radiomics_status')}):")
        paths = run.read_manifest().set_index("image_id")["path"]
        for row in problems.head(10).itertuples():
            detail = row.message if row.status != STATUS_OK else f"non-finite: {row.nonfinite}"
            console.print(f"  {row.status}: {paths.get(row.image_id, row.image_id)}: {detail}", soft_wrap=True, markup=False)
        if len(problems) > 10:
            console.print(f"  ... and {len(problems) - 10} more.")


def print_analysis_summary(summary: Any, run_dir: Path, top: int | None) -> None:
    for name in summary.skipped:
        console.print(f"{name}: inputs unchanged since the last analysis, kept (--force redoes it).")
    shown = top or 3
    for name, ranking in summary.candidates.items():
        print_candidates(name, ranking, shown)
    for note in summary.notes[:12]:
        console.print(f"[yellow]note[/] {escape(note)}", soft_wrap=True)
    if len(summary.notes) > 12:
        console.print(f"... {len(summary.notes) - 12} more notes in {RunDir(run_dir).path('analysis_summary')}")
    parts_time = ", ".join(f"{k} {v:.1f} s" for k, v in summary.timings.items())
    console.print(f"Analysis done in {summary.seconds:.1f} s ({parts_time}) -> {RunDir(run_dir).path('analysis_summary').parent}")


def print_lungs_removed(name: str, found: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"Lungs removed, {name}: central {found['box_fraction']:.0%} box blacked out, "
                        f"{found['folds']} folds, {found['images']} images", title_justify="left")
    for column in ("class", "images", "AUROC normal", "AUROC lungs removed [CI]", "sensitivity normal → removed", ""):
        table.add_column(column)

    def ci(values: list[float]) -> str:
        return f"[{values[0]:.2f}, {values[1]:.2f}]"

    for row in found["per_class"]:
        table.add_row(row["class"], str(row["images"]), f"{row['normal_auroc']:.2f}",
                      f"{row['removed_auroc']:.2f} {ci(row['removed_auroc_ci'])}",
                      f"{row['normal_sensitivity']:.2f} → {row['removed_sensitivity']:.2f}",
                      "recognised without the centre" if row["recognised_without_lungs"] else "")
    console.print(table)
    removed, normal = found["removed"], found["normal"]
    console.print(f"balanced accuracy {normal['balanced_accuracy']:.3f} → {removed['balanced_accuracy']:.3f} "
                  f"{ci(removed['balanced_accuracy_ci'])} (chance {found['chance_balanced_accuracy']:.3f}); a class "
                  "whose AUROC CI lies above 0.5 is recognised from outside the box (docs/confounding.md).")


def print_external(result: Any) -> None:
    from rich.table import Table

    from cxrbio.evaluation.external import COMPARED

    table = Table(title=f"External set '{result.name}' ({result.images} images): internal out-of-fold → external "
                        "ensemble", title_justify="left")
    for column in ("strategy", "figure", "internal", "external", "drop [95% CI]"):
        table.add_column(column)
    for strategy, found in result.results.items():
        for key, label in COMPARED.items():
            d = found["drop"][key]
            table.add_row(strategy, label, f"{d['internal']:.3f}", f"{d['external']:.3f}",
                          f"{d['drop']:+.3f} [{d['drop_ci'][0]:+.3f}, {d['drop_ci'][1]:+.3f}]")
    console.print(table)
    for strategy, found in result.results.items():
        counts = found.get("replication")
        if counts is None:
            console.print(f"{strategy}: no analysis, no candidate to replicate (run 'cxrbio analyze' first).")
        elif not counts["candidates"]:
            console.print(f"{strategy}: no candidate passed every gate: nothing to replicate.")
        else:
            console.print(f"{strategy}: of {counts['candidates']} passing candidate(s), {counts['replicated']} replicated on "
                          f"the external patients, {counts['not replicated']} not replicated, {counts['not testable']} not "
                          f"testable (RUN/external/{result.name}/{strategy}/replication.parquet)")
    for note in result.notes:
        console.print(f"[yellow]note[/] {escape(note)}", soft_wrap=True)
    console.print(f"Done in {result.seconds:.0f} s -> RUN/external/{result.name}/ (docs/confounding.md)")


def print_report_summary(result: Any, seconds: float) -> None:
    for item in result.missing:
        console.print(f"[yellow]missing[/] {escape(item.what)}: run '{escape(item.command)}'", soft_wrap=True)
    if result.thumbnails:
        console.print("[yellow]note[/] the report embeds X-ray thumbnails: burned-in names and dates travel with it; "
                      "--no-thumbnails (report.thumbnails: false) writes one with no patient pixels.", soft_wrap=True)
    console.print(f"Report: {result.path} ({result.size_bytes / 1e6:.1f} MB, {seconds:.1f} s); "
                  "open it in any browser, no network needed.", soft_wrap=True)


def print_candidates(name: str, ranking: Any, shown: int) -> None:
    """A compact table per space: the top `shown` per disease, short feature names."""
    from rich.table import Table

    from cxrbio.analysis.association import short_name

    radiomics = name == "radiomics"
    if ranking is None or ranking.empty:
        if not radiomics:
            console.print(f"Candidate features, {name}: none tested (too few patients per held-out fold, or no "
                          "matched feature; see the notes).")
        return
    if not radiomics:
        print_gated_candidates(name, ranking, shown)
        return
    table = Table(title=f"Radiomics features: top {shown} per disease by |AUC - 0.5|", title_justify="left")
    for column in ["class", "feature", "SHAP", "dir", "AUC", "q", "boot"]:
        table.add_column(column, no_wrap=column in ("dir", "AUC", "q"))
    for cls, part in ranking.groupby("class", sort=True):
        for item in part.head(shown).to_dict("records"):
            direction = "+" if item["direction"] > 0 else "-"
            table.add_row(cls, short_name(item["feature"]), _num(item["mean_abs_shap"], ".3f"), direction,
                          _num(item["auc"], ".2f"), _num(item["q"], ".0e"), _num(item.get("effect_top_frequency"), ".2f"))
    console.print(table)


def _num(value: Any, fmt: str) -> str:
    return "" if value is None or value != value else format(value, fmt)


def print_gated_candidates(name: str, ranking: Any, shown: int) -> None:
    """Per disease: how many matched features were tested and passed, and the best ones with their gates."""
    from rich.table import Table

    from cxrbio.analysis.association import short_name

    passed = int(ranking["passed"].sum())
    table = Table(title=f"Candidate features, {name}: {passed} of {len(ranking)} tested (class, feature) pairs pass "
                  f"every gate; best {shown} per disease", title_justify="left")
    for column in ["class", "feature", "contrast", "source tier", "AUC [CI]", "q (all)", "folds", "passed",
                   "failed gates", "top descriptor"]:
        table.add_column(column, no_wrap=column in ("feature", "AUC [CI]", "q (all)", "folds"))
    for cls, part in ranking.groupby("class", sort=True):
        for item in part.head(shown).to_dict("records"):
            descriptor = item["descriptors"].split("; ")[0] if item.get("descriptors") else ""
            if descriptor:
                feature, _, rho = descriptor.partition(" (")
                descriptor = f"{short_name(feature)} ({rho}"
            table.add_row(cls, str(item["feature"]), str(item.get("contrast") or ""), str(item.get("source_tier") or ""),
                          f"{_num(item['auc'], '.2f')} [{_num(item['auc_low'], '.2f')}, {_num(item['auc_high'], '.2f')}]",
                          _num(item.get("q_hier", item["q"]), ".0e"), f"{item['folds_agree']}/{item['folds_tested']}",
                          "[green]yes[/]" if item["passed"] else "no", str(item.get("failed_gates") or ""), descriptor)
    console.print(table)


def print_metrics_table(results: dict[str, Any], run_dir: Path, seconds: float) -> None:
    import pandas as pd

    from cxrbio.config import load_config

    cfg = load_config(RunDir(run_dir).config)
    if not results:
        console.print("No strategy has all its folds finished yet.")
        return
    rows = {}

    def pct(value: float | None) -> str:
        return "-" if value is None or value != value else f"{100 * value:.1f}"

    for name, m in results.items():
        ci, pooled = m["ci95"], m["pooled"]
        binary = pooled.get("binary", {})
        row = {}
        for label, key, value in (("7-class acc %", "accuracy", pooled["accuracy"]),
                                  ("2-class acc %", "binary_accuracy", binary.get("accuracy")),
                                  ("sensitivity %", "sensitivity", binary.get("sensitivity")),
                                  ("specificity %", "specificity", binary.get("specificity"))):
            mean, sd = m["fold_mean"][key], m["fold_sd"][key]
            low, high = ci[key]
            row[label] = f"{pct(mean)} ± {pct(sd)}\n{pct(value)} [{pct(low)}, {pct(high)}]"
        calibration = m.get("calibration", {})
        raw, scaled = calibration.get("uncalibrated", {}), calibration.get("scaled")
        row["ECE"] = f"{raw.get('ece', float('nan')):.3f}" + (f"\nscaled {scaled['ece']:.3f}" if scaled else "")
        row["Brier"] = f"{raw.get('brier', float('nan')):.3f}" + (f"\nscaled {scaled['brier']:.3f}" if scaled else "")
        rows[name] = row
    title = (f"Per cell: mean over folds ± SD (the paper's kind of figure), below it pooled out-of-fold [95% CI, "
             f"patient bootstrap]; {cfg.data.positive_class} vs rest; calibration: ECE, Brier (below: temperature-scaled) "
             f"-- {seconds:.0f} s")
    console.print(frame_table(pd.DataFrame(rows).T, title, "strategy", show_lines=True))


#: A stage result's printer: (result, run directory, seconds shown where the result carries none, --top).
Printer = Callable[[Any, Path, float | None, int | None], None]


def print_result(result: Any, *, run_dir: Path, seconds: float | None = None, top: int | None = None) -> None:
    """Print a stage's summary by the result's type; ``seconds`` is shown where the result does not carry it."""
    printers = _printers()
    kind = next((k for k in type(result).__mro__ if k in printers), None)
    if kind is None:
        raise TypeError(f"no printer for {type(result).__name__}")
    printers[kind](result, run_dir, seconds, top)


@cache
def _printers() -> dict[type, Printer]:
    """Printers per result type, made on first use: the result types' modules (the analysis's scipy and
    scikit-learn among them) are not imported by ``cxrbio --help``."""
    from cxrbio.analysis.spaces import AnalysisSummary
    from cxrbio.config import load_config
    from cxrbio.features.radiomic_features import RadiomicsResult
    from cxrbio.report.build import ReportResult
    from cxrbio.stages.embed import EmbedResult
    from cxrbio.stages.evaluate import EvaluateResult
    from cxrbio.stages.lungs_removed import LungsRemovedResult
    from cxrbio.stages.masks import MasksResult
    from cxrbio.stages.scan import ScanStageResult
    from cxrbio.stages.train import TrainResult

    def lungs_removed(result: Any, run_dir: Path, seconds: float | None, top: int | None) -> None:
        for name, found in result.results.items():
            print_lungs_removed(name, found)

    return {
        ScanStageResult: lambda result, run_dir, seconds, top: print_scan_summary(
            result, load_config(RunDir(run_dir).config), run_dir, seconds or 0.0),
        TrainResult: lambda result, run_dir, seconds, top: print_metrics_table(result.metrics, run_dir, result.seconds),
        EmbedResult: lambda result, run_dir, seconds, top: print_embed_summary(result, run_dir),
        MasksResult: lambda result, run_dir, seconds, top: print_masks_summary(result, run_dir),
        RadiomicsResult: lambda result, run_dir, seconds, top: print_radiomics_summary(result, run_dir),
        AnalysisSummary: lambda result, run_dir, seconds, top: print_analysis_summary(result, run_dir, top),
        LungsRemovedResult: lungs_removed,
        EvaluateResult: lambda result, run_dir, seconds, top: print_external(result),
        ReportResult: lambda result, run_dir, seconds, top: print_report_summary(result, seconds or 0.0),
    }
