"""Content digests of files outside the run directory, cached by size and modification time.

A unit made from a file outside the run (a weights file, user masks, the radiomics parameter
file, an external data set) must go stale when that file's *content* changes, and only then:
judging by the path alone reuses stale results after a replacement in place, and judging by the
modification time alone redoes hours of work after a ``touch``. So the fingerprint records the
content's SHA-256. Hashing a large file on every check would be slow, so a digest is kept in a
small cache keyed by (absolute path, size, mtime): an unchanged file is not read again, a touched
one is re-hashed once and found unchanged.

The cache is ``digests.json`` under ``$CXRBIO_CACHE_DIR`` (default ``~/.cache/cxrbio``); it is a
cache only (safe to delete) and is written atomically, so concurrent processes can at worst
re-hash a file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from cxrbio.data.duplicates import sha256_file
from cxrbio.run.atomic import atomic_write_text

#: The digest recorded for a file that does not exist (a missing input is a change, never a crash).
MISSING = "missing"
#: Hex digits kept of each SHA-256: 64 bits, ample to notice a change, short enough for thousands of masks per stamp.
DIGEST_CHARS = 16

_memory: dict[str, dict[str, str | int]] | None = None


def cache_file() -> Path:
    base = os.environ.get("CXRBIO_CACHE_DIR") or Path.home() / ".cache" / "cxrbio"
    return Path(base).expanduser() / "digests.json"


def _load() -> dict[str, dict[str, str | int]]:
    global _memory
    location = str(cache_file())
    if _memory is None or _memory.get("__file__", {}).get("path") != location:
        try:
            loaded = json.loads(Path(location).read_text())
            _memory = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            _memory = {}
        _memory["__file__"] = {"path": location}
    return _memory


def _save(entries: dict[str, dict[str, str | int]]) -> None:
    try:
        atomic_write_text(cache_file(), json.dumps({k: v for k, v in entries.items() if k != "__file__"}))
    except OSError:  # a read-only home: digests are then recomputed per process, which is only slower
        pass


def file_digests(paths: Iterable[str | Path]) -> dict[str, str]:
    """Absolute path -> content digest (``MISSING`` where the file does not exist), re-hashing only changed files."""
    entries = _load()
    found: dict[str, str] = {}
    changed = False
    for given in paths:
        path = Path(given).expanduser().absolute()
        key = str(path)
        try:
            info = path.stat()
        except OSError:
            found[key] = MISSING
            continue
        if not path.is_file():
            found[key] = MISSING
            continue
        cached = entries.get(key)
        if cached and cached.get("size") == info.st_size and cached.get("mtime_ns") == info.st_mtime_ns:
            found[key] = str(cached["digest"])
            continue
        digest = sha256_file(path)[:DIGEST_CHARS]
        entries[key] = {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "digest": digest}
        found[key] = digest
        changed = True
    if changed:
        _save(entries)
    return found


def file_digest(path: str | Path) -> str:
    """The content digest of one file (``MISSING`` when it does not exist)."""
    return next(iter(file_digests([path]).values()))
