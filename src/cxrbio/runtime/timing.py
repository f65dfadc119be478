"""Stage timings: add the wall time of a block to a named entry (the demo and analyze print them)."""

from __future__ import annotations

import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager


@contextmanager
def timed(timings: MutableMapping[str, float], part: str) -> Iterator[None]:
    """Add the block's wall time to ``timings[part]`` (accumulates over repeated blocks)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[part] = timings.get(part, 0.0) + time.perf_counter() - started
