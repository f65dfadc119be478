"""Caches kept on disk: the run's image and frozen-feature tables, the machine's radiomics features.

A cache is never an artifact: it has no stamp, deleting it costs only time, and every entry is
named by a key of its inputs' content (never by a path or a time), so a changed input is another
entry. Entries are written atomically, so concurrent processes can at worst compute one twice.

* ``<run>/cache/images-<size>-<key>.npy``: the letterboxed uint8 images (memory-mapped);
* ``<run>/cache/frozen-<cut>-<key>.npy``: a pretrained strategy's frozen-part outputs;
* ``$CXRBIO_CACHE_DIR/radiomics/<params>/<kk>/<key>.json``: one image's radiomics features.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cxrbio.run.atomic import atomic_write, atomic_write_text


def image_cache_file(cache_dir: str | Path, size: int, key: str) -> Path:
    return Path(cache_dir) / f"images-{size}-{key}.npy"


def cached_table(path: Path, write: Callable[[Path], None]) -> np.ndarray:
    """The .npy table at ``path`` memory-mapped, written first by ``write(tmp)`` where it is missing."""
    if not path.is_file():
        atomic_write(path, write)
    return np.load(path, mmap_mode="r")


def cached_array(path: Path, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """The array at ``path``, or ``compute()``'s, kept there for next time."""
    if path.is_file():
        return np.load(path)
    values = compute()
    atomic_write(path, lambda tmp: np.save(tmp.open("wb"), values))
    return values


def frozen_features_file(cache_dir: Path, cut: str, key: str) -> Path:
    return Path(cache_dir) / f"frozen-{cut}-{key}.npy"


def feature_cache_file(cache_dir: str | Path, params_key: str, key: str) -> Path:
    return Path(cache_dir) / params_key / key[:2] / f"{key}.json"


def read_cached_json(path: Path) -> Any | None:
    """A cached JSON entry; None where it is missing, or damaged (then removed, to be computed again)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        path.unlink(missing_ok=True)
        return None


def write_cached_json(path: Path, payload: Any) -> None:
    """Keep ``payload`` at ``path``; OSError where the cache is read-only or full (the caller decides)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(payload, allow_nan=True))
