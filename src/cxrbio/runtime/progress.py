"""One progress protocol for every stage: a callable that receives :class:`ProgressEvent`.

A stage reports counted work (``task``, ``done``, ``total``: "scan 120/700", "scratch fold 2
epochs 40/130") and lines worth printing (``message`` alone: "scratch fold 0: trained"). The
CLI turns events into rich progress bars and lines; a library caller may pass any callable, or
nothing. With nothing, the lines are not lost: :func:`say` logs them on the calling module's
logger (``logging.getLogger(__name__)`` of the stage), INFO for a line and WARNING for a note
(a stale model, a skipped audit, a changed setting), so ``logging.basicConfig(level=logging.INFO)``
shows a stage's lines and Python's last-resort handler shows its warnings even unconfigured.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    """``task``: what is being counted; ``done``/``total``: how far (``total`` None: unknown);
    ``message``: a line to show (with no counts, a line to print once)."""

    task: str = ""
    done: int | None = None
    total: int | None = None
    message: str = ""

    @property
    def is_line(self) -> bool:
        return self.done is None and bool(self.message)


Progress = Callable[[ProgressEvent], None]


def silent(_event: ProgressEvent) -> None:
    """The default: report nothing."""


def counter(progress: Progress | None, task: str) -> Callable[[int, int], None]:
    """A (done, total) callback for ``task`` that forwards to ``progress`` (the process pool's shape)."""
    report = progress or silent

    def update(done: int, total: int) -> None:
        report(ProgressEvent(task, done, total))

    return update


def say(progress: Progress | None, message: str, task: str = "", *, level: int = logging.INFO,
        logger: logging.Logger | None = None) -> None:
    """A line to the progress callback; without one, to ``logger`` (default: the calling module's) at ``level``."""
    if progress is not None:
        progress(ProgressEvent(task, message=message))
        return
    (logger or _caller_logger(2)).log(level, message)


def warn(progress: Progress | None, message: str, task: str = "") -> None:
    """A note worth a warning (a stale model, a skipped part): to the callback, or logged at WARNING."""
    say(progress, message, task, level=logging.WARNING, logger=_caller_logger(2))


def _caller_logger(depth: int) -> logging.Logger:
    """The logger of the module ``depth`` frames up (``getLogger(__name__)`` of the stage); "cxrbio" outside the package."""
    caller = str(sys._getframe(depth).f_globals.get("__name__", "cxrbio"))
    return logging.getLogger(caller if caller.startswith("cxrbio") else "cxrbio")
