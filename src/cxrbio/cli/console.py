"""Rich rendering shared by the CLI commands."""

from __future__ import annotations

import logging
import os
import sys

import pandas as pd
from rich.console import Console
from rich.table import Table

# Piped into a file or CI log, rich would assume 80 columns and fold every table; use 140
# there (COLUMNS still wins), the real width on a terminal.
_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 140
console = Console(highlight=False, width=_WIDTH)
err_console = Console(stderr=True, highlight=False)


def render_library_logging(level: int = logging.WARNING) -> None:
    """Show what the library logs (``cxrbio.*`` loggers) through rich on stderr, once per process.

    The CLI passes a progress callback to every stage, so a stage's lines reach the terminal as
    progress; the library's log records (warnings from code that has no callback to hand) come
    here instead of Python's bare last-resort handler.
    """
    from rich.logging import RichHandler

    logger = logging.getLogger("cxrbio")
    if any(isinstance(h, RichHandler) for h in logger.handlers):
        return
    handler = RichHandler(console=err_console, show_time=False, show_path=False, markup=False)
    handler.setLevel(level)
    logger.addHandler(handler)
    logger.setLevel(min(logger.level or level, level))


def frame_table(frame: pd.DataFrame, title: str, index_name: str = "", *, show_lines: bool = False) -> Table:
    table = Table(title=title, title_justify="left", show_lines=show_lines)
    table.add_column(index_name or str(frame.index.name or ""), style="bold")
    for column in frame.columns:
        table.add_column(str(column), justify="right")
    for index, row in frame.iterrows():
        table.add_row(str(index), *[str(v) for v in row.tolist()])
    return table
