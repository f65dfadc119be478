"""Mask images on disk: a lung or body mask written as a 0/255 PNG, read back as a bool array.

The mask jobs (:mod:`cxrbio.features.lung_masks`) run in worker processes and write each mask
where the run's layout puts it (``masks/lungs/<image_id>.png``, ``masks/body/...``), so masks
never travel back to the parent; this module is how they write and read one, and how every
reader gets a run's masks and the masks stage's table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrbio.run.atomic import atomic_write
from cxrbio.run.rundir import RunDir

#: The masks stage's table (``masks/masks.parquet``), beside image_id; the manifest is never edited.
BODY_COLUMNS = ("body_source", "body_qc", "body_note")
MASK_COLUMNS = ("mask_source", "mask_qc", "mask_note", *BODY_COLUMNS)


def write_mask_png(path: Path, mask: np.ndarray) -> None:
    payload = mask.astype(np.uint8) * 255
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Image.fromarray(payload).save(tmp, format="PNG"))


def read_mask_file(path: str | Path) -> np.ndarray:
    """A mask PNG as a bool array (non-zero = lung); OSError when unreadable."""
    with Image.open(path) as handle:
        return np.asarray(handle.convert("L")) > 0


def read_mask_table(run: RunDir) -> pd.DataFrame | None:
    """image_id, mask_source, mask_qc, mask_note per included image; None before ``cxrbio masks``."""
    path = run.path("masks")
    return pd.read_parquet(path) if path.is_file() else None


def with_masks(manifest: pd.DataFrame, run: RunDir) -> pd.DataFrame:
    """``manifest`` with the mask columns joined on image_id (absent columns when there are no masks)."""
    table = read_mask_table(run)
    if table is None:
        return manifest
    indexed = "image_id" not in manifest.columns
    frame = manifest.reset_index() if indexed else manifest
    frame = frame.drop(columns=[c for c in MASK_COLUMNS if c in frame]).merge(table, on="image_id", how="left")
    return frame.set_index("image_id") if indexed else frame


def read_mask(run: RunDir, image_id: str) -> np.ndarray | None:
    """The run's mask of one image, or None where it has none."""
    path = run.path("mask_file", image_id=image_id)
    return read_mask_file(path) if path.is_file() else None


def read_body_mask(run: RunDir, image_id: str) -> np.ndarray | None:
    """The run's body mask of one image (lungs included), or None where it has none."""
    path = run.path("body_file", image_id=image_id)
    return read_mask_file(path) if path.is_file() else None
