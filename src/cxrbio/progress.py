"""One progress protocol for every stage: a callable that receives :class:`ProgressEvent`.

A stage reports counted work (``task``, ``done``, ``total``: "scan 120/700", "scratch fold 2
epochs 40/130") and lines worth printing (``message`` alone: "scratch fold 0: trained"). The
CLI turns events into rich progress bars and lines; a library caller may pass any callable, or
nothing (silence).
"""

from __future__ import annotations

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


def say(progress: Progress | None, message: str, task: str = "") -> None:
    (progress or silent)(ProgressEvent(task, message=message))
