"""A run directory on disk: paths from the declarations, atomic writes, the run's identity.

Every path comes from :mod:`cxrbio.run.artifacts` (``run.path("embeddings", strategy=..., fold=...)``);
a stage asks for the paths it writes with ``run.output(stage, artifact, ...)``, which refuses an
artifact that another stage owns, so "a stage writes only its own artifacts" is checked, not
hoped. Every write goes through :func:`atomic_write` (temp file beside the target, then
``os.replace``): an interrupted stage or a full disk never leaves a half-written file that a
later stage would take for a finished one.

``run.json`` records the layout version, the cxrbio release that created the run, where its data
came from, and a history of config changes. A folder that has a config and a manifest but no
``run.json`` was made by a release before layout 2 and is refused with what to re-run.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd

from cxrbio import __version__
from cxrbio.config import Config, load_config
from cxrbio.errors import CxrbioError
from cxrbio.run.artifacts import ARTIFACTS, LAYOUT_VERSION, STAMPS, missing_error
from cxrbio.run.atomic import atomic_write_text


class RunDir:
    """Paths of one run directory; creating the object touches nothing on disk."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, artifact: str, **params: Any) -> Path:
        """Where ``artifact`` (one unit of it, named by ``params``) lives."""
        return self.root / ARTIFACTS[artifact].relative(**params)

    def output(self, stage: str, artifact: str, **params: Any) -> Path:
        """The path ``stage`` writes ``artifact`` to; an artifact of another stage is refused."""
        owner = ARTIFACTS[artifact].stage
        if owner != stage:
            raise RuntimeError(f"stage {stage!r} may not write {artifact!r} (it belongs to {owner!r})")
        return self.path(artifact, **params)

    def glob(self, artifact: str, **bound: Any) -> list[Path]:
        """Existing paths of ``artifact``'s units; unbound fields match anything."""
        declared = ARTIFACTS[artifact]
        pattern = declared.pattern.format(**{p: bound.get(p, "*") for p in declared.params})
        return sorted(p for p in self.root.glob(pattern) if p.is_dir() == declared.folder)

    @property
    def manifest(self) -> Path:
        return self.path("manifest")

    @property
    def config(self) -> Path:
        return self.path("config")

    @property
    def salt(self) -> Path:
        """Secret salt for patient pseudonyms: never copy it into anything you share."""
        return self.path("salt")

    @property
    def cache(self) -> Path:
        return self.path("image_cache")

    @property
    def info_file(self) -> Path:
        return self.path("run_info")

    def read_manifest(self) -> pd.DataFrame:
        if not self.manifest.is_file():
            raise missing_error("manifest", self.root)
        return pd.read_parquet(self.manifest)

    def info(self) -> dict[str, Any]:
        try:
            return json.loads(self.info_file.read_text())
        except (OSError, ValueError):
            return {}

    def record(self, event: str, **details: Any) -> None:
        """Append an event (created, reconfigured, re-scanned) to run.json's history."""
        info = self.info() or {"layout": LAYOUT_VERSION, "created_by": __version__, "history": []}
        info.setdefault("history", []).append({"when": _now(), "event": event, "cxrbio": __version__, **details})
        info.update({k: v for k, v in details.items() if k in ("data", "layout_name")})
        atomic_write_text(self.info_file, json.dumps(info, indent=1, default=str))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def check_layout(run: RunDir) -> None:
    """Refuse a run directory of an older layout, saying what to re-run (no migration is attempted)."""
    if run.info_file.is_file():
        layout = run.info().get("layout")
        if layout != LAYOUT_VERSION:
            raise CxrbioError(
                f"{run.root} has run-directory layout {layout}; this cxrbio ({__version__}) reads layout {LAYOUT_VERSION}.",
                fix=f"use the cxrbio release that made it, or re-run into a new folder: "
                    f"cxrbio data scan DATA NEW_RUN --config {run.config}, then the later stages.")
        return
    if run.config.is_file() or run.manifest.is_file():
        raise CxrbioError(
            f"{run.root} was made by a cxrbio release before layout {LAYOUT_VERSION} (it has no run.json); its "
            "files do not record what they were made from, so this release cannot judge or reuse them.",
            fix=f"re-run from the scan into a new folder (the old one is left as it is): cxrbio data scan DATA "
                f"NEW_RUN --config {run.config}, then cxrbio train/embed/masks/radiomics/analyze on NEW_RUN.")


def open_run(run_dir: str | Path) -> tuple[RunDir, Config]:
    """A run directory and the config it was made with, or an error saying why this folder is not one."""
    run = RunDir(run_dir)
    if not run.root.is_dir():
        raise CxrbioError(f"{run_dir} does not exist.",
                          fix="pass a run directory made by 'cxrbio data scan DATA RUN_DIR' or 'cxrbio demo RUN_DIR'.")
    check_layout(run)
    if not run.config.is_file() or not run.manifest.is_file():
        raise CxrbioError(
            f"{run_dir} is not a cxrbio run directory (it has no config.yaml and manifest.parquet).",
            fix="pass a run directory made by 'cxrbio data scan DATA RUN_DIR' or 'cxrbio demo RUN_DIR', "
            "or create one with 'cxrbio data scan DATA RUN_DIR'.",
        )
    return run, load_config(run.config)


def supersede(run: RunDir, relative_paths: list[str], reason: str) -> Path | None:
    """Move the given paths (and their stamps) into ``superseded-<time>/``, keeping their layout.

    Nothing is deleted: a user who forced a change can still open what was there before.
    """
    existing = [p for p in dict.fromkeys(relative_paths) if (run.root / p).exists()]
    stamps = [f"{STAMPS}/{p}.json" for p in relative_paths if (run.root / STAMPS / f"{p}.json").exists()]
    stamp_dirs = [f"{STAMPS}/{p}" for p in relative_paths if (run.root / STAMPS / p).is_dir()]
    moving = [p for p in dict.fromkeys(existing + stamps + stamp_dirs) if (run.root / p).exists()]
    if not moving:
        return None
    aside = run.root / f"superseded-{time.strftime('%Y%m%d-%H%M%S')}"
    suffix = 1
    while aside.exists():
        aside = run.root / f"superseded-{time.strftime('%Y%m%d-%H%M%S')}-{suffix}"
        suffix += 1
    for relative in moving:
        source = run.root / relative
        if not source.exists():  # inside a folder moved already
            continue
        target = aside / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), str(target))
    atomic_write_text(aside / "REASON.txt", reason + "\n")
    return aside
