"""A Parquet file written from a stream of tables, atomically: memory bounded by one table, never half a file."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cxrbio.run.atomic import atomic_write


def write_table_stream(target: Path, schema: Any, tables: Iterable[Any]) -> None:
    """Write every pyarrow table of ``tables`` (one row group each) to ``target`` under ``schema``."""
    import pyarrow.parquet as pq

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, schema) as writer:
            for table in tables:
                writer.write_table(table)

    atomic_write(target, write)
