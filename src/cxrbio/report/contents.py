"""What a run directory holds, read once for the report, and what it lacks.

Every stage's output is optional here: a report of a partial run shows what exists and, for
each missing piece, the command that makes it (``Missing``). Nothing here computes results;
it only reads the files the stages wrote (docs/architecture.md, run-directory contract).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cxrbio.config import Config
from cxrbio.run import fold_files
from cxrbio.run.analysis_files import arrays_file, document_file, table_file
from cxrbio.run.artifacts import RADIOMICS_SPACE as RADIOMICS
from cxrbio.run.rundir import RunDir, open_run


@dataclass(frozen=True)
class Missing:
    """One absent piece of the run: what the report could not show, and the command that makes it."""

    what: str
    command: str


@dataclass
class StrategyResults:
    """One strategy's training and analysis outputs (each None where that stage has not run)."""

    name: str
    metrics: dict[str, Any] | None = None
    predictions: pd.DataFrame | None = None
    histories: dict[int, pd.DataFrame] = field(default_factory=dict)
    analysis: dict[str, pd.DataFrame] = field(default_factory=dict)
    saliency_file: Path | None = None  # analysis' saliency.npz: maps are read when a thumbnail needs one

    @property
    def trained(self) -> bool:
        return self.metrics is not None and self.metrics.get("status") == "done"

    @property
    def trained_metrics(self) -> dict[str, Any]:
        """The metrics of a trained strategy (for sections that show only trained ones)."""
        if self.metrics is None:
            raise ValueError(f"{self.name} has no metrics: it was not trained")
        return self.metrics

    @property
    def analysed(self) -> bool:
        return "candidates" in self.analysis


ANALYSIS_TABLES = ("candidates", "umap", "separation", "stability", "power", "audit_dims", "audit_model",
                   "audit_verdicts", "shortcut_scores", "audit_sources", "cca", "attribution", "source_probe")
RADIOMICS_TABLES = ("candidates", "umap", "separation", "bootstrap", "predictions", "source_probe")


@dataclass
class RunContents:
    run: RunDir
    config: Config
    manifest: pd.DataFrame
    strategies: dict[str, StrategyResults]
    comparison: dict[str, Any] | None
    radiomics_status: pd.DataFrame | None
    radiomics_analysis: dict[str, pd.DataFrame]
    baseline: dict[str, Any] | None
    analysis_summary: dict[str, Any] | None
    acquisition: dict[str, Any] | None = None  # confounding/acquisition.json (cxrbio data scan)
    covariates: dict[str, Any] | None = None  # confounding/covariates.json (cxrbio data scan)
    design: pd.DataFrame | None = None  # confounding/design.parquet (cxrbio data scan)
    lungs_removed: dict[str, dict[str, Any]] = field(default_factory=dict)  # strategy -> cxrbio lungs-removed's result
    external: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # set -> strategy -> cxrbio evaluate's
    units: list[UnitState] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)

    @property
    def included(self) -> pd.DataFrame:
        return self.manifest[self.manifest["included"]]

    @property
    def classes(self) -> list[str]:
        return list(self.config.data.classes)

    def trained(self) -> list[StrategyResults]:
        return [s for s in self.strategies.values() if s.trained]

    def analysed(self) -> list[StrategyResults]:
        return [s for s in self.strategies.values() if s.analysed]


def _external(run: RunDir) -> dict[str, dict[str, dict[str, Any]]]:
    from cxrbio.stages.evaluate import read_results

    return read_results(run)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_parquet(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError):
        return None


def _strategy_names(run: RunDir, config: Config) -> list[str]:
    """The configured strategies, then any other that left files (trained with --strategies)."""
    from cxrbio.evaluation.paper import strategy_order

    found = set(config.train.strategies)
    for artifact in ("train_fold", "train_skipped", "metrics", "embeddings", "analysis"):
        for path in run.glob(artifact):
            name = path.relative_to(run.root).parts[1]
            found.add(Path(name).stem if artifact == "metrics" else name)
    found -= {"comparison", RADIOMICS}
    return sorted(found, key=lambda name: (strategy_order(name), name))


def _histories(run: RunDir, strategy: str, folds: list[int]) -> dict[int, pd.DataFrame]:
    histories = {}
    for fold in folds:
        try:
            histories[fold] = fold_files.read_history(run, strategy, fold)
        except (OSError, ValueError, pd.errors.ParserError):
            continue
    return histories


@dataclass(frozen=True)
class UnitState:
    """One stamped unit of the run as the report sees it: fresh or stale, and with which settings."""

    label: str
    stage: str
    state: str
    reason: str
    settings: dict[str, Any]


def unit_states(run: RunDir, config: Config) -> list[UnitState]:
    """Every stamped unit, judged against the run's config (analyses: their own recorded settings)."""
    from cxrbio.run import freshness
    from cxrbio.run.artifacts import ARTIFACTS

    tree = config.model_dump(mode="json")
    states = []
    for _path, stamp in freshness.all_stamps(run.root):
        if stamp.artifact not in ARTIFACTS:
            continue
        status = freshness.status(run, freshness.expected(run, stamp.artifact, tree, stamp.unit, stamp.options))
        state, reason = status.state, status.reason
        if stamp.artifact == "analysis" and state == "stale" and not _inputs_changed(run, stamp):
            state, reason = "fresh", "analysis settings differ from the run's config (see below)"
        states.append(UnitState(freshness.unit_label(stamp.artifact, stamp.unit), ARTIFACTS[stamp.artifact].stage,
                                state, reason, stamp.settings))
    return states


def _inputs_changed(run: RunDir, stamp: Any) -> bool:
    from cxrbio.run import freshness
    from cxrbio.run.artifacts import ARTIFACTS

    current = {label: s.digest for label, s in freshness.input_units(run.root, ARTIFACTS[stamp.artifact], stamp.unit).items()}
    return current != stamp.inputs


def load_contents(run_dir: Path, config: Config | None = None) -> RunContents:
    """Read every stage's outputs that exist and list, with its command, every one that does not.

    ``config``: the run's own, with report settings from elsewhere (the report stage passes it).
    """
    from cxrbio.run.artifacts import command_for
    from cxrbio.run.mask_files import with_masks

    run, own = open_run(run_dir)
    config = config or own
    manifest = with_masks(run.read_manifest(), run)
    root = run.root
    missing: list[Missing] = []
    strategies: dict[str, StrategyResults] = {}
    has_embeddings: dict[str, bool] = {}
    folds = fold_files.trained_folds(run)
    from cxrbio.run.embedding_files import embedded_folds

    embedded = embedded_folds(run)
    for name in _strategy_names(run, config):
        result = StrategyResults(name, metrics=_read_json(run.path("metrics", strategy=name)))
        if result.trained:
            predictions = fold_files.read_predictions(run, name)
            result.predictions = predictions if len(predictions) else None
            result.histories = _histories(run, name, folds.get(name, []))
        for table in ANALYSIS_TABLES:
            frame = _read_parquet(table_file(run, name, table))
            if frame is not None:
                result.analysis[table] = frame
        if arrays_file(run, name, "saliency").is_file():
            result.saliency_file = arrays_file(run, name, "saliency")
        has_embeddings[name] = name in embedded
        strategies[name] = result
    if not any(s.metrics for s in strategies.values()):
        missing.append(Missing("cross-validated training and its metrics (Tables 1-7, ROC, training curves)",
                               command_for("train", root)))
    for result in strategies.values():
        if result.metrics is None and any(s.metrics for s in strategies.values()):
            missing.append(Missing(f"{result.name}: training", command_for("train", root, strategies=result.name)))
        if result.trained and not has_embeddings[result.name]:
            missing.append(Missing(f"{result.name}: embeddings", command_for("embed", root, strategies=result.name)))
        if result.trained and not result.analysed:
            missing.append(Missing(f"{result.name}: candidate biomarkers, UMAP and shortcut audit",
                                   command_for("analyze", root, strategies=result.name)))
    if "mask_source" not in manifest.columns:
        missing.append(Missing("lung masks (lung contours in the gallery; radiomics)", command_for("masks", root)))
    radiomics_status = _read_parquet(run.path("radiomics_status"))
    if not run.path("radiomics").is_file():
        missing.append(Missing("radiomics features", command_for("radiomics", root)))
    radiomics_analysis = {t: f for t in RADIOMICS_TABLES
                          if (f := _read_parquet(table_file(run, RADIOMICS, t))) is not None}
    baseline = _read_json(document_file(run, RADIOMICS, "baseline"))
    if baseline is None and run.path("radiomics").is_file():
        missing.append(Missing("radiomics baseline and its top features", command_for("analyze", root)))
    return RunContents(
        run=run, config=config, manifest=manifest, strategies=strategies,
        comparison=_read_json(run.path("comparison")), radiomics_status=radiomics_status,
        radiomics_analysis=radiomics_analysis, baseline=baseline,
        analysis_summary=_read_json(run.path("analysis_summary")),
        acquisition=_read_json(run.path("acquisition")), covariates=_read_json(run.path("covariates")),
        design=_read_parquet(run.path("design")),
        external=_external(run),
        lungs_removed={name: found for name in strategies
                       if (found := _read_json(run.path("lungs_removed", strategy=name))) is not None},
        units=unit_states(run, own), missing=missing,
    )
