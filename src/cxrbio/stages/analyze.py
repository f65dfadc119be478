"""Stage ``analyze``: candidate biomarkers per strategy and disease, and the radiomics baseline.

Each analysed space (a strategy's embeddings, or ``radiomics``) is one unit with a stamp whose
fingerprint covers its inputs (embeddings of every fold, radiomics, masks, manifest) and the
analysis settings and parts. A fresh unit is kept (``force`` redoes it, moving the old one to
``superseded-<time>/``). Analysis settings may
differ from the run's config (a ``config`` that differs only in ``analysis``/``report``;
:mod:`cxrbio.run.runconfig`): every result records, in its stamp, the settings it was made with,
and the report shows them.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from cxrbio.analysis.error_rate import across_families
from cxrbio.analysis.inputs import analysable_strategies, load_inputs
from cxrbio.analysis.spaces import PARTS, RADIOMICS, AnalysisSummary, analyze_radiomics, analyze_strategy
from cxrbio.config import Config
from cxrbio.errors import ConfigError, CxrbioError
from cxrbio.run import analysis_log, freshness, runconfig
from cxrbio.run.analysis_files import STAGE, read_candidates, write_candidates, write_space
from cxrbio.run.artifacts import command_for
from cxrbio.run.atomic import atomic_write_text
from cxrbio.run.rundir import open_run, supersede
from cxrbio.runtime.progress import Progress, say, warn
from cxrbio.runtime.timing import timed

__all__ = ["AnalysisSummary", "run"]

log = logging.getLogger(__name__)


def require_tensorflow_backend() -> None:
    """The analysis's SHAP (DeepExplainer) and saliency (GradientTape) need TensorFlow: say so before any work."""
    from cxrbio.runtime.backend import TENSORFLOW, configured_name

    active = configured_name()
    if active != TENSORFLOW:
        raise ConfigError(f"cxrbio analyze needs the TensorFlow backend (SHAP's DeepExplainer and the audit's "
                          f"saliency run on it); KERAS_BACKEND is {active}.",
                          fix="run it with KERAS_BACKEND=tensorflow where TensorFlow is installed: models trained on "
                              f"{active} load there unchanged.")


def run(run_dir: str | Path, *, strategies: list[str] | None = None, top: int | None = None, audit: bool = True,
        config: Config | None = None, force: bool = False, progress: Progress | None = None) -> AnalysisSummary:
    """Analyse the run's embedded strategies (default: all) and its radiomics space."""
    from cxrbio.runtime.backend import initialise_tensorflow

    if top is not None and top < 1:
        raise ConfigError(f"--top must be at least 1, got {top}.")
    require_tensorflow_backend()
    started = time.perf_counter()
    initialise_tensorflow()
    run, own = open_run(run_dir)
    effective = runconfig.adopt(run, config, stage=STAGE) if config is not None else own
    if top is not None:
        effective = effective.model_copy(update={"analysis": effective.analysis.model_copy(update={"top_k": top})})
    parts = PARTS if audit else tuple(p for p in PARTS if p != "audit")
    inputs = load_inputs(run, effective)
    chosen = analysable_strategies(run, strategies)
    summary = AnalysisSummary(chosen, notes=list(inputs.notes))
    tree = effective.model_dump(mode="json")
    options = {"parts": list(parts)}

    def unit(space: str) -> freshness.Expected:
        stale = freshness.stale_inputs(run, "analysis", own.model_dump(mode="json"), {"strategy": space})
        if stale:
            label, stage, reason = stale[0]
            raise CxrbioError(f"the analysis of {space} would read {label}, which is stale ({reason})"
                              + (f", and {len(stale) - 1} more stale input(s)" if len(stale) > 1 else "") + ".",
                              fix=f"run '{command_for(stage, run.root)}' first.")
        return freshness.expected(run, "analysis", tree, {"strategy": space}, options)

    def message(text: str) -> None:
        say(progress, text)

    def set_aside_if_forced(space: str, fresh: bool) -> None:
        if force and fresh:
            supersede(run, [freshness.unit_label("analysis", {"strategy": space})], reason="forced (--force)")

    want = unit(RADIOMICS)
    fresh = freshness.status(run, want).fresh
    if force or not fresh:
        set_aside_if_forced(RADIOMICS, fresh)
        result = analyze_radiomics(inputs, summary, message)
        write_space(run, RADIOMICS, result)
        summary.candidates[RADIOMICS] = result.ranking
        freshness.write_stamp(run, want, info={"settings_differ_from_run": effective.analysis != own.analysis})
    else:
        summary.skipped.append(RADIOMICS)
        summary.candidates[RADIOMICS] = read_candidates(run, RADIOMICS)
    audit_images = None
    for strategy in chosen:
        want = unit(strategy)
        fresh = freshness.status(run, want).fresh
        if fresh and not force:
            summary.skipped.append(strategy)
            summary.candidates[strategy] = read_candidates(run, strategy)
            continue
        set_aside_if_forced(strategy, fresh)
        if "audit" in parts and audit_images is None:
            from cxrbio.analysis.audit import load_audit_images

            if "mask_source" in inputs.manifest:
                with timed(summary.timings, "audit"):
                    audit_images = load_audit_images(run, effective, inputs.manifest)
                with_lungs = len(audit_images.lung)
                without_body = with_lungs - len(audit_images.body)
                if not with_lungs:
                    summary.notes.append("no image has a real lung mask (all fell back to the whole image): "
                                         "shortcut audit skipped.")
                elif without_body:
                    summary.notes.append(f"{without_body} of {with_lungs} images with a lung mask have no body mask "
                                         "(masks/masks.parquet: body_note; masks made before body masks existed: "
                                         f"run 'cxrbio masks {run.root}'): left out of the shortcut audit.")
            else:
                summary.notes.append(f"no lung masks: shortcut audit skipped (run 'cxrbio masks {run.root}').")
        result = analyze_strategy(inputs, strategy, parts, summary, message, audit_images)
        write_space(run, strategy, result)
        summary.candidates[strategy] = result.ranking
        freshness.write_stamp(run, want, info={"settings_differ_from_run": effective.analysis != own.analysis})
    strategies_seen = {name: frame for name, frame in summary.candidates.items() if name != RADIOMICS}
    adjusted, error_rate = across_families(strategies_seen, effective.analysis)
    for name, frame in adjusted.items():
        if not frame.equals(summary.candidates[name]):
            write_candidates(run, name, frame)
        summary.candidates[name] = frame
        tested, passed = len(frame), int(frame["passed"].sum()) if "passed" in frame else 0
        if name not in summary.skipped:
            message(f"{name}: {tested} (class, feature) pairs tested, {passed} passed every gate")
    for row in error_rate:
        message(f"error rate ({row['scope']}): {row['tests']} tests in {row['families']} (strategy, class) families, "
                f"{row['selected']} families selected at {row['level']:g} (Benjamini-Bogomolov)")
    settings = effective.analysis.model_dump(mode="json")
    entry = analysis_log.append(run, settings=settings, analysed=[s for s in [RADIOMICS, *chosen] if s not in summary.skipped],
                                reused=list(summary.skipped), candidates=summary.candidates, error_rate=error_rate,
                                differs_from_run=effective.analysis != own.analysis)
    if entry["changed_since_previous"]:
        names = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in entry["changed_since_previous"].items())
        summary.notes.append(f"analysis settings changed since the previous analysis: {names} (analysis/log.jsonl).")
        if progress is not None:  # without a callback it is logged once, with the other notes, below
            warn(progress, f"note: analysis settings changed since the previous analysis: {names}")
    if progress is None:  # a library caller without a callback still hears the notes (the CLI prints them itself)
        for note in summary.notes:
            log.warning(note)
    summary.seconds = time.perf_counter() - started
    atomic_write_text(run.output(STAGE, "analysis_summary"), json.dumps(
        {"strategies": chosen, "timings_s": dict(summary.timings), "notes": summary.notes,
         "skipped_unchanged": summary.skipped, "settings": effective.analysis.model_dump(mode="json"),
         "parts": list(parts), "error_rate": error_rate}, indent=1))
    return summary
