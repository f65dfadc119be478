"""Rich rendering shared by the CLI commands."""

from __future__ import annotations

import pandas as pd
from rich.console import Console
from rich.table import Table

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def frame_table(frame: pd.DataFrame, title: str, index_name: str = "") -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column(index_name or (frame.index.name or ""), style="bold")
    for column in frame.columns:
        table.add_column(str(column), justify="right")
    for index, row in frame.iterrows():
        table.add_row(str(index), *[str(v) for v in row.tolist()])
    return table
