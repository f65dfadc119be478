"""The files of an external evaluation (``external/<name>/<strategy>/``): per-fold and ensemble
predictions, and the passing candidates re-tested on the external patients."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxrbio.run.atomic import atomic_write_parquet
from cxrbio.run.rundir import RunDir

ENSEMBLE = "ensemble.parquet"
REPLICATION = "replication.parquet"


def predictions_dir(run: RunDir, name: str, strategy: str) -> Path:
    return run.path("external_predictions", name=name, strategy=strategy)


def write_fold_predictions(folder: Path, fold: int, frame: pd.DataFrame) -> None:
    atomic_write_parquet(folder / f"fold-{fold}.parquet", frame)


def write_ensemble(folder: Path, frame: pd.DataFrame) -> None:
    atomic_write_parquet(folder / ENSEMBLE, frame)


def write_replication(folder: Path, frame: pd.DataFrame) -> None:
    atomic_write_parquet(folder / REPLICATION, frame)


def read_replication(run: RunDir, name: str, strategy: str) -> pd.DataFrame | None:
    """The re-tested candidates, or None where this evaluation wrote none."""
    path = predictions_dir(run, name, strategy) / REPLICATION
    return pd.read_parquet(path) if path.is_file() else None
