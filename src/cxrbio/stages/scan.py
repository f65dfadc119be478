"""Stage ``scan``: a data set -> the run directory's manifest, config and identity.

The stage that creates a run: it writes ``config.yaml`` (every later stage reads it),
``run.json`` (layout version, where the data came from) and ``manifest.parquet`` with its stamp.
Re-scanning an existing run with another config is refused unless ``reconfigure``
(:mod:`cxrbio.run.runconfig`); re-scanning one whose later stages have results needs ``force`` (or
``reconfigure``), and a manifest that then differs from the old one is moved aside with every result
made from it. A failed scan writes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cxrbio.config import Config, load_config
from cxrbio.confounding.acquisition import AcquisitionBaseline, acquisition_baseline
from cxrbio.confounding.covariates import CovariateAudit, audit_covariates
from cxrbio.confounding.design import control_of, design_table
from cxrbio.data.manifest import ScanResult, build_manifest, manifest_digest
from cxrbio.errors import DataError
from cxrbio.run import freshness, runconfig
from cxrbio.run.artifacts import downstream
from cxrbio.run.atomic import atomic_write_parquet, atomic_write_text
from cxrbio.run.runconfig import save_config
from cxrbio.run.rundir import RunDir, check_layout, supersede
from cxrbio.run.salt import load_or_create_salt
from cxrbio.runtime.executors import Executor, make_executor
from cxrbio.runtime.progress import Progress, counter

__all__ = ["ScanStageResult", "run"]

STAGE = "scan"


@dataclass
class ScanStageResult(ScanResult):
    """What the scan found, plus what it did to the run directory."""

    run_dir: Path = Path()
    superseded: Path | None = None
    unchanged: bool = False  # the manifest equals the one already there
    acquisition: AcquisitionBaseline | None = None  # None when folds could not be drawn
    covariates: CovariateAudit | None = None
    design: pd.DataFrame | None = None  # confounding/design.parquet (docs/confounding.md)
    design_notes: list[str] = field(default_factory=list)


def _later_results(run: RunDir) -> bool:
    """Whether stages after the scan completed anything (the demo's phantom is its input, not a result)."""
    from cxrbio.run.artifacts import ARTIFACTS

    return any(ARTIFACTS[stamp.artifact].stage not in (STAGE, "demo") for _, stamp in freshness.all_stamps(run.root))


def run(run_dir: str | Path, *, data: str | Path, config: Config | None = None, layout: str | None = None,
        executor: Executor | None = None, force: bool = False, reconfigure: bool = False,
        progress: Progress | None = None) -> ScanStageResult:
    """Scan ``data`` into ``run_dir`` (created if needed); returns the manifest and notes.

    ``config``: a new run's config (default: the study's protocol); on an existing run it must
    equal the run's own unless ``reconfigure``. ``force``: scan again although later stages have
    results (moved aside if the manifest changes). The manifest is written even when folds cannot be
    drawn (``fold_error`` says why; the CLI prints the summary and then the error).
    """

    run = RunDir(run_dir)
    existing = run.config.is_file()
    blocking: list = []
    if existing:
        check_layout(run)
        config, blocking = runconfig.resolve(run, config, stage=STAGE, reconfigure=reconfigure)
    config = config or load_config(None)
    control_of(config.analysis, list(config.data.classes))  # a control class that is no class: refused before any work
    if existing and _later_results(run) and not (force or reconfigure):
        raise DataError(
            f"{run.root} already holds results of later stages; a new manifest could orphan them.",
            fix="scan into a new run directory, or pass --force (results are moved aside only if the manifest changes).")
    salt = None
    if config.data.privacy.pseudonymize_patients:
        run.root.mkdir(parents=True, exist_ok=True)
        salt = load_or_create_salt(run.salt)
    scanned = build_manifest(data, config, salt=salt, layout=layout, executor=executor or make_executor("local"),
                             progress=counter(progress, STAGE))
    if blocking:  # only now that the new manifest exists: a failed scan changes nothing
        runconfig.apply_reconfiguration(run, config, blocking)
    digest = manifest_digest(scanned.manifest)
    previous = freshness.read_stamp(run.root, "manifest", {})
    unchanged = previous is not None and previous.digest == digest
    aside = None
    if previous is not None and not unchanged:
        from cxrbio.run.runconfig import top_level_paths

        aside = supersede(run, top_level_paths(downstream({STAGE}) - {STAGE}) + ["manifest.parquet"],
                          reason=f"re-scanned {data}: the manifest changed")
    if not run.config.is_file():
        save_config(config, run.output(STAGE, "config"))
    atomic_write_parquet(run.output(STAGE, "manifest"), scanned.manifest)
    run.record("scanned", data=str(Path(data).expanduser().resolve()), layout_name=scanned.layout,
               images=len(scanned.manifest), unchanged=unchanged)
    freshness.write_stamp(run, freshness.expected(run, "manifest", config.model_dump(mode="json"),
                                                  options={"layout": layout}), digest=digest,
                          info={"images": len(scanned.manifest), "layout": scanned.layout})
    acquisition = None if scanned.fold_error is not None else write_acquisition(run, config, scanned.manifest)
    covariates = write_covariates(run, config, scanned.manifest)
    design, design_notes = write_design(run, config, scanned.manifest, acquisition)
    return ScanStageResult(manifest=scanned.manifest, layout=scanned.layout, root=scanned.root, notes=scanned.notes,
                           fold_error=scanned.fold_error, run_dir=run.root, superseded=aside, unchanged=unchanged,
                           acquisition=acquisition, covariates=covariates, design=design, design_notes=design_notes)


def write_design(run: RunDir, config: Config, manifest: pd.DataFrame,
                 acquisition: AcquisitionBaseline | None) -> tuple[pd.DataFrame, list[str]]:
    """confounding/design.parquet: per class, can its effect be estimated free of source (:mod:`cxrbio.confounding.design`)?"""
    classes = list(config.data.classes)
    control, notes = control_of(config.analysis, classes)
    included = manifest[manifest["included"]].reset_index(drop=True)
    flagged = acquisition.flagged if acquisition is not None else []
    table, more = design_table(included, classes, control=control, alpha=config.analysis.gate_q,
                               power=config.confounding.design_power, acquisition_flagged=flagged)
    want = freshness.expected(run, "design", config.model_dump(mode="json"))
    atomic_write_parquet(run.output(STAGE, "design"), table)
    freshness.write_stamp(run, want, info={"notes": notes + more})
    return table, notes + more


def write_covariates(run: RunDir, config: Config, manifest: pd.DataFrame) -> CovariateAudit:
    """confounding/covariates.json: recognised covariates against the label (:mod:`cxrbio.confounding.covariates`)."""
    included = manifest[manifest["included"]].reset_index(drop=True)
    audit = audit_covariates(included, list(config.data.classes), listed=config.confounding.covariates,
                             alpha=config.confounding.alpha)
    want = freshness.expected(run, "covariates", config.model_dump(mode="json"))
    atomic_write_text(run.output(STAGE, "covariates"), json.dumps({"rows": audit.rows, "notes": audit.notes}, indent=1,
                                                                  allow_nan=True))
    freshness.write_stamp(run, want)
    return audit


def write_acquisition(run: RunDir, config: Config, manifest: pd.DataFrame) -> AcquisitionBaseline:
    """confounding/acquisition.json: the acquisition baseline on the run's folds (:mod:`cxrbio.confounding.acquisition`)."""
    settings = config.confounding
    included = manifest[manifest["included"]].reset_index(drop=True)
    result = acquisition_baseline(included, list(config.data.classes), image_size=config.data.image_size,
                                  scheme=config.folds.scheme, permutations=settings.permutations, seed=settings.seed,
                                  min_auroc=settings.min_auroc, alpha=settings.alpha, trees=settings.forest_trees)
    want = freshness.expected(run, "acquisition", config.model_dump(mode="json"))
    atomic_write_text(run.output(STAGE, "acquisition"), json.dumps(result.to_json(), indent=1, allow_nan=True))
    freshness.write_stamp(run, want)
    return result

