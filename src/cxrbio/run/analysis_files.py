"""The files of one analysed space (``analysis/<space>/``): a space's result written, its candidates read.

The analysis (:mod:`cxrbio.analysis.spaces`) returns frames; the stage hands them here, where
each table becomes ``<name>.parquet``, each document ``<name>.json`` and each set of arrays a
compressed ``<name>.npz`` (schemas: docs/analysis.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cxrbio.run.atomic import atomic_write, atomic_write_parquet, atomic_write_text
from cxrbio.run.rundir import RunDir

if TYPE_CHECKING:
    from cxrbio.analysis.spaces import SpaceResult

STAGE = "analyze"
CANDIDATES = "candidates.parquet"


def space_dir(run: RunDir, space: str) -> Path:
    return run.path("analysis", strategy=space)


def write_space(run: RunDir, space: str, result: SpaceResult) -> Path:
    """Every table, document and array of ``result`` under the space's directory; returns it."""
    out = run.output(STAGE, "analysis", strategy=space)
    for name, frame in result.tables.items():
        atomic_write_parquet(out / f"{name}.parquet", frame)
    for name, document in result.documents.items():
        atomic_write_text(out / f"{name}.json", json.dumps(document, indent=1, default=float))
    for name, arrays in result.arrays.items():
        atomic_write(out / f"{name}.npz", _npz_writer(arrays))
    return out


def candidates_file(run: RunDir, space: str) -> Path:
    return space_dir(run, space) / CANDIDATES


def _npz_writer(arrays: dict[str, Any]) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        np.savez_compressed(tmp, **arrays)

    return write


def read_candidates(run: RunDir, space: str) -> pd.DataFrame:
    return pd.read_parquet(candidates_file(run, space))


def write_candidates(run: RunDir, space: str, frame: pd.DataFrame) -> None:
    """The space's ranking again, after the error rate across every strategy's families changed it."""
    atomic_write_parquet(space_dir(run, space) / CANDIDATES, frame)


def table_file(run: RunDir, space: str, name: str) -> Path:
    """``analysis/<space>/<name>.parquet``."""
    return space_dir(run, space) / f"{name}.parquet"


def document_file(run: RunDir, space: str, name: str) -> Path:
    """``analysis/<space>/<name>.json`` (the radiomics baseline's metrics)."""
    return space_dir(run, space) / f"{name}.json"


def arrays_file(run: RunDir, space: str, name: str) -> Path:
    """``analysis/<space>/<name>.npz`` (the audit's saliency maps)."""
    return space_dir(run, space) / f"{name}.npz"
