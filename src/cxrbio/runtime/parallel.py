"""Map a function over jobs in worker processes, in order, with progress: the one pool cxrbio uses.

Workers are spawned, not forked: the parent may hold TensorFlow threads, which fork can
deadlock. When workers cannot start at all (e.g. a ``__main__`` that cannot be re-imported),
the jobs run in this process instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
ProgressCallback = Callable[[int, int], None]


def available_cores() -> int:
    """Cores this process may use (its affinity mask, e.g. under a container's CPU limit)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def imap_jobs(function: Callable[[T], R], jobs: Iterable[T], workers: int | None = None,
              progress: ProgressCallback | None = None, min_jobs: int = 2, chunksize: int = 1) -> Iterator[R]:
    """Yield ``function(job)`` for every job, in order.

    Processes are used when there are at least ``min_jobs`` jobs and more than one worker
    (default: every available core). A generator: results are handed over as they come, so a
    caller that stores each one holds one chunk at a time.
    """
    jobs = list(jobs)
    workers = workers or available_cores()
    done = 0
    if workers > 1 and len(jobs) >= max(2, min_jobs):
        try:
            with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=get_context("spawn")) as pool:
                for result in pool.map(function, jobs, chunksize=chunksize):
                    done += 1
                    if progress:
                        progress(done, len(jobs))
                    yield result
            return
        except BrokenProcessPool:
            if done:
                raise
    for job in jobs:
        result = function(job)
        done += 1
        if progress:
            progress(done, len(jobs))
        yield result
