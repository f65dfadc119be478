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
from cxrbio.rundir import RunDir, open_run


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
    def analysed(self) -> bool:
        return "candidates" in self.analysis


ANALYSIS_TABLES = ("candidates", "umap", "separation", "stability", "recurrence", "audit_dims", "audit_model",
                   "shortcut_scores", "cca", "attribution")
RADIOMICS_TABLES = ("candidates", "umap", "separation", "bootstrap", "predictions")


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
    from cxrbio.paper import strategy_order

    found = set(config.train.strategies)
    for folder in ("train", "embeddings", "analysis"):
        base = run.root / folder
        if base.is_dir():
            found |= {p.name for p in base.iterdir() if p.is_dir() and p.name != "radiomics"}
    found |= {p.stem for p in (run.root / "metrics").glob("*.json") if p.stem != "comparison"}
    return sorted(found, key=lambda name: (strategy_order(name), name))


def _histories(run: RunDir, strategy: str) -> dict[int, pd.DataFrame]:
    histories = {}
    for path in sorted((run.root / "train" / strategy).glob("fold-*/history.csv")):
        try:
            histories[int(path.parent.name.split("-")[1])] = pd.read_csv(path)
        except (OSError, ValueError, pd.errors.ParserError):
            continue
    return histories


def load_contents(run_dir: Path) -> RunContents:
    """Read every stage's outputs that exist and list, with its command, every one that does not."""
    from cxrbio.train import read_predictions

    run, config = open_run(run_dir)
    manifest = run.read_manifest()
    root = str(run.root)
    missing: list[Missing] = []
    strategies: dict[str, StrategyResults] = {}
    has_embeddings: dict[str, bool] = {}
    for name in _strategy_names(run, config):
        result = StrategyResults(name, metrics=_read_json(run.metrics(name)))
        if result.trained:
            predictions = read_predictions(run, name)
            result.predictions = predictions if len(predictions) else None
            result.histories = _histories(run, name)
        folder = run.analysis(name)
        for table in ANALYSIS_TABLES:
            frame = _read_parquet(folder / f"{table}.parquet")
            if frame is not None:
                result.analysis[table] = frame
        if (folder / "saliency.npz").is_file():
            result.saliency_file = folder / "saliency.npz"
        has_embeddings[name] = any((run.root / "embeddings" / name).glob("fold-*.parquet"))
        strategies[name] = result
    if not any(s.metrics for s in strategies.values()):
        missing.append(Missing("cross-validated training and its metrics (Tables 1-7, ROC, training curves)",
                               f"cxrbio train --out {root}"))
    for result in strategies.values():
        if result.metrics is None and any(s.metrics for s in strategies.values()):
            missing.append(Missing(f"{result.name}: training", f"cxrbio train --out {root} --strategies {result.name}"))
        if result.trained and not has_embeddings[result.name]:
            missing.append(Missing(f"{result.name}: embeddings", f"cxrbio embed {root} --strategies {result.name}"))
        if result.trained and not result.analysed:
            missing.append(Missing(f"{result.name}: candidate biomarkers, UMAP and shortcut audit",
                                   f"cxrbio analyze {root} --strategies {result.name}"))
    has_masks = (run.root / "masks" / "settings.json").is_file() or "mask_source" in manifest.columns
    if not has_masks:
        missing.append(Missing("lung masks (lung contours in the gallery; radiomics)", f"cxrbio masks {root}"))
    radiomics_status = _read_parquet(run.root / "radiomics" / "status.parquet")
    if not run.radiomics.is_file():
        missing.append(Missing("radiomics features", f"cxrbio radiomics {root}"))
    radiomics_folder = run.analysis("radiomics")
    radiomics_analysis = {t: f for t in RADIOMICS_TABLES if (f := _read_parquet(radiomics_folder / f"{t}.parquet")) is not None}
    baseline = _read_json(radiomics_folder / "baseline.json")
    if baseline is None and run.radiomics.is_file():
        missing.append(Missing("radiomics baseline and its top features", f"cxrbio analyze {root}"))
    return RunContents(
        run=run, config=config, manifest=manifest, strategies=strategies,
        comparison=_read_json(run.comparison), radiomics_status=radiomics_status,
        radiomics_analysis=radiomics_analysis, baseline=baseline,
        analysis_summary=_read_json(run.root / "analysis" / "summary.json"),
        missing=missing,
    )
