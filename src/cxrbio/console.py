"""Rich rendering shared by the CLI commands."""

from __future__ import annotations

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


def frame_table(frame: pd.DataFrame, title: str, index_name: str = "", *, show_lines: bool = False) -> Table:
    table = Table(title=title, title_justify="left", show_lines=show_lines)
    table.add_column(index_name or (frame.index.name or ""), style="bold")
    for column in frame.columns:
        table.add_column(str(column), justify="right")
    for index, row in frame.iterrows():
        table.add_row(str(index), *[str(v) for v in row.tolist()])
    return table
