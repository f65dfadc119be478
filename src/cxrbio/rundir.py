"""The run directory: the only channel between stages (see docs/architecture.md).

Paths are defined here once, and every write goes through an atomic helper (temp file in
the same folder, then ``os.replace``), so an interrupted stage or a full disk never leaves
a half-written file that a later stage would take for a finished one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from cxrbio.config import Config

MANIFEST = "manifest.parquet"
CONFIG = "config.yaml"
SALT = ".pseudonym-salt"


class RunDir:
    """Paths of one run directory; creating the object touches nothing on disk."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def salt(self) -> Path:
        """Secret salt for patient pseudonyms: never copy it into anything you share."""
        return self.root / SALT

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def train_fold(self, strategy: str, fold: int) -> Path:
        return self.root / "train" / strategy / f"fold-{fold}"

    def metrics(self, strategy: str) -> Path:
        return self.root / "metrics" / f"{strategy}.json"

    @property
    def comparison(self) -> Path:
        return self.root / "metrics" / "comparison.json"

    def embeddings(self, strategy: str, fold: int) -> Path:
        return self.root / "embeddings" / strategy / f"fold-{fold}.parquet"

    def mask(self, image_id: str) -> Path:
        return self.root / "masks" / f"{image_id}.png"

    @property
    def radiomics(self) -> Path:
        return self.root / "radiomics" / "features.parquet"

    def analysis(self, strategy: str) -> Path:
        return self.root / "analysis" / strategy

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    def read_manifest(self) -> pd.DataFrame:
        from cxrbio.errors import DataError

        if not self.manifest.is_file():
            raise DataError(
                f"{self.root} has no {MANIFEST}.",
                fix=f"run 'cxrbio data scan DATA --out {self.root}' first.",
            )
        return pd.read_parquet(self.manifest)


def open_run(run_dir: str | Path) -> tuple[RunDir, "Config"]:
    """A run directory and the config it was made with, or an error saying why this folder is not one."""
    from cxrbio.config import load_config
    from cxrbio.errors import CxrbioError

    run = RunDir(run_dir)
    if not run.root.is_dir():
        raise CxrbioError(f"{run_dir} does not exist.", fix="pass the folder given to 'cxrbio train --out' or 'cxrbio demo --out'.")
    if not run.config.is_file() or not run.manifest.is_file():
        raise CxrbioError(
            f"{run_dir} is not a cxrbio run directory (it has no config.yaml and manifest.parquet).",
            fix="pass the folder given to 'cxrbio train --out' or 'cxrbio demo --out', "
            "or create one with 'cxrbio data scan DATA --out RUN_DIR'.",
        )
    return run, load_config(run.config)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temp file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp name ends like the target (".keras", ".weights.h5"): some writers insist on it.
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=f"-{path.name}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_parquet(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
