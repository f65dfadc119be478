"""Mask images on disk: a lung or body mask written as a 0/255 PNG, read back as a bool array.

The mask jobs (:mod:`cxrbio.features.lung_masks`) run in worker processes and write each mask
where the run's layout puts it (``masks/lungs/<image_id>.png``, ``masks/body/...``), so masks
never travel back to the parent; this module is how they write and read one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cxrbio.run.atomic import atomic_write


def write_mask_png(path: Path, mask: np.ndarray) -> None:
    payload = mask.astype(np.uint8) * 255
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Image.fromarray(payload).save(tmp, format="PNG"))


def read_mask_file(path: str | Path) -> np.ndarray:
    """A mask PNG as a bool array (non-zero = lung); OSError when unreadable."""
    with Image.open(path) as handle:
        return np.asarray(handle.convert("L")) > 0
