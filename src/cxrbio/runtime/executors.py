"""Where the parallel stages' jobs run: ``local`` processes on this machine, or a ``ray`` cluster.

One vocabulary for every parallel stage (scan, train, masks, radiomics): ``--executor
local|ray``, ``--workers N`` (local processes; 1 runs in this process), ``--address A`` (Ray:
``auto``, ``ray://host:port``; omitted: a local Ray instance). Jobs talk only through the run
directory (shared storage for a multi-machine cluster), so both executors produce the same files.

``Executor.map(function, jobs)`` yields ``function(job)`` for every job, in order, reporting
``(done, total)`` as results arrive. The local pool itself (:func:`imap_jobs`) is the one pool
cxrbio uses: workers are spawned, not forked, because the parent may hold TensorFlow threads,
which fork can deadlock; when workers cannot start at all (e.g. a ``__main__`` that cannot be
re-imported), the jobs run in this process instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any, TypeVar

from cxrbio.errors import ConfigError

EXECUTORS = ("local", "ray")
T = TypeVar("T")
R = TypeVar("R")
Counter = Callable[[int, int], None]
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



@dataclass(frozen=True)
class LocalExecutor:
    """Worker processes on this machine (``workers`` None: every available core; 1: this process)."""

    workers: int | None = None
    kind: str = "local"

    @property
    def in_process(self) -> bool:
        return self.workers == 1

    def map(self, function: Callable[[T], R], jobs: Iterable[T], progress: Counter | None = None,
            min_jobs: int = 2, chunksize: int = 1) -> Iterator[R]:
        return imap_jobs(function, jobs, self.workers, progress, min_jobs=min_jobs, chunksize=chunksize)


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Join a Ray cluster ('auto', 'ray://host:port') or start a local instance (None, 'local').

    A session this call started is shut down at the end; one that was already running is left alone.
    """
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        if address in (None, "local"):
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False)
    try:
        yield
    finally:
        if started_here:
            ray.shutdown()


@dataclass(frozen=True)
class RayExecutor:
    """One Ray task per chunk of jobs, each declaring ``cpus_per_task`` and ``gpus_per_task``."""

    address: str | None = None
    cpus_per_task: float = 1
    gpus_per_task: float = 0
    kind: str = "ray"
    in_process: bool = False

    def map(self, function: Callable[[T], R], jobs: Iterable[T], progress: Counter | None = None,
            min_jobs: int = 2, chunksize: int = 1) -> Iterator[R]:
        import ray

        jobs = list(jobs)
        with ray_session(self.address):
            remote = ray.remote(num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task, max_retries=0)(_chunk)
            refs = [remote.remote(function, jobs[i: i + chunksize]) for i in range(0, len(jobs), chunksize)]
            index = {ref: k for k, ref in enumerate(refs)}
            results: dict[int, list[R]] = {}
            pending, next_out, done = list(refs), 0, 0
            while next_out < len(refs):
                if next_out not in results:
                    ready, pending = ray.wait(pending, num_returns=1)
                    results[index[ready[0]]] = ray.get(ready[0])
                    done += len(results[index[ready[0]]])
                    if progress:
                        progress(done, len(jobs))
                    continue
                yield from results.pop(next_out)
                next_out += 1


def _chunk(function: Callable[[Any], Any], jobs: list[Any]) -> list[Any]:
    return [function(job) for job in jobs]


Executor = LocalExecutor | RayExecutor


def make_executor(kind: str = "local", *, workers: int | None = None, address: str | None = None,
                  gpus_per_task: float = 0.0) -> Executor:
    """The executor a ``--executor/--workers/--address`` triple names; a clear error for anything else."""
    if kind not in EXECUTORS:
        raise ConfigError(f"unknown executor {kind!r}.", fix="use --executor local or --executor ray.")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}.")
    if kind == "local":
        if address is not None:
            raise ConfigError("--address is for --executor ray.", fix="add --executor ray, or drop --address.")
        return LocalExecutor(workers)
    return RayExecutor(address, cpus_per_task=1, gpus_per_task=gpus_per_task)
