"""Stage ``masks``: a lung-field mask for every included image, and where each came from.

Sources (``masks.source``, or ``source`` here): a user folder (``folder``), a manifest column
(``masks.column``; the phantom's ground truth), the built-in classical segmentation with a QC
score, or the whole content area. Beside each, a body (thorax outline) mask for the shortcut
audit: given (``masks.body_column``) or segmented. Writes ``masks/<image_id>.png``,
``masks/body/<image_id>.png`` and the table
``masks/masks.parquet`` (the manifest is never edited). A fresh stamp means the masks were made
from today's manifest with today's settings and options: nothing is redone (``force`` redoes all,
moving the old masks to ``superseded-<time>/``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxrbio.errors import CxrbioError
from cxrbio.features.lung_masks import NO_MASK, SEGMENTATION_VERSION, WHOLE_CONTENT, build_mask, plan_masks
from cxrbio.run import freshness
from cxrbio.run.atomic import atomic_write_parquet
from cxrbio.run.mask_files import MASK_COLUMNS, read_mask_table
from cxrbio.run.rundir import open_run, supersede
from cxrbio.runtime.executors import Executor, make_executor
from cxrbio.runtime.progress import Progress, counter

__all__ = ["MasksResult", "run"]

STAGE = "masks"
SOURCES = ("auto", "folder", "column", "segment", "content")


@dataclass
class MasksResult:
    table: pd.DataFrame  # image_id, path, label, mask_source, mask_qc, mask_note (included images)
    up_to_date: bool
    seconds: float

    @property
    def flagged(self) -> pd.DataFrame:
        return self.table[self.table["mask_source"].isin([WHOLE_CONTENT, NO_MASK])]

    @property
    def without_body(self) -> pd.DataFrame:
        """Images with a lung mask but no usable body mask (left out of the shortcut audit)."""
        return self.table[(self.table["body_source"] == NO_MASK) & ~self.table["mask_source"].isin([NO_MASK])]


def run(run_dir: str | Path, *, folder: str | Path | None = None, source: str | None = None, force: bool = False,
        executor: Executor | None = None, progress: Progress | None = None) -> MasksResult:
    """Make (or keep) every included image's mask; returns the table of where each came from."""
    started = time.perf_counter()
    if source is not None and source not in SOURCES:
        raise CxrbioError(f"unknown mask source {source!r}.", fix=f"use {', '.join(SOURCES)}.")
    run, config = open_run(run_dir)
    manifest = run.read_manifest()
    included = manifest[manifest["included"]]
    folder_text = str(Path(folder).expanduser().resolve()) if folder else None
    options = {"folder": folder_text or config.masks.folder, "source": source or config.masks.source,
               "segmentation_version": SEGMENTATION_VERSION}
    want = freshness.expected(run, "masks", config.model_dump(mode="json"), options=options)
    table = read_mask_table(run)
    fresh = table is not None and freshness.status(run, want).fresh
    if table is not None and fresh and not force:
        return MasksResult(_described(table, included), True, time.perf_counter() - started)
    if fresh:
        supersede(run, [freshness.unit_label("masks", {}).split("/", 1)[0]], reason="forced (--force)")
    jobs = plan_masks(run, config, included, folder_text, source)
    runner = executor or make_executor("local")
    rows = list(runner.map(build_mask, jobs, counter(progress, "lung masks"), min_jobs=64, chunksize=8))
    table = pd.DataFrame(rows, columns=["image_id", *MASK_COLUMNS])
    table["mask_qc"] = table["mask_qc"].astype(float)
    table["body_qc"] = table["body_qc"].astype(float)
    for stale in table.loc[table["mask_source"] == NO_MASK, "image_id"]:
        run.path("mask_file", image_id=stale).unlink(missing_ok=True)
    for stale in table.loc[table["body_source"] == NO_MASK, "image_id"]:
        run.path("body_file", image_id=stale).unlink(missing_ok=True)
    atomic_write_parquet(run.output(STAGE, "masks"), table)
    counts = {str(k): int(v) for k, v in table["mask_source"].value_counts().items()}
    bodies = {str(k): int(v) for k, v in table["body_source"].value_counts().items()}
    freshness.write_stamp(run, want, info={"sources": counts, "body_sources": bodies})
    return MasksResult(_described(table, included), False, time.perf_counter() - started)


def _described(table: pd.DataFrame, included: pd.DataFrame) -> pd.DataFrame:
    """The mask table with each image's path and label (for messages), in manifest order."""
    frame = included[["image_id", "path", "label"]].merge(table, on="image_id", how="left")
    frame["mask_qc"] = frame["mask_qc"].astype(float).fillna(np.nan)
    return frame.reset_index(drop=True)
