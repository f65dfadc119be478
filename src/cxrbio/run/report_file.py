"""Where a run's report goes and how it is written: outside the run, atomically, readable by others.

The default is ``reports/<run folder name>.html`` under the working directory (docs/report.md):
the run holds the pseudonym salt, which must not travel with a shared file.
"""

from __future__ import annotations

import os
from pathlib import Path

from cxrbio.run.atomic import atomic_write_text


def default_report_path(run_dir: Path) -> Path:
    """reports/<run folder name>.html under the working directory (docs/report.md)."""
    return Path("reports") / f"{Path(run_dir).resolve().name}.html"


def write_report(target: Path, page: str) -> int:
    """Write the page (an interrupted write leaves any older report intact); returns its size in bytes."""
    atomic_write_text(target, page)
    _readable_by_others(target)
    return target.stat().st_size


def _readable_by_others(path: Path) -> None:
    """A report is meant to be shared: the permissions a new file gets under the umask, not the temp file's 0600."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
