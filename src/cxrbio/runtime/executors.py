"""Where the parallel stages' jobs run: ``local`` processes on this machine, or a ``ray`` cluster.

One vocabulary for every parallel stage (scan, train, masks, radiomics): ``--executor
local|ray``, ``--workers N`` (local processes; 1 runs in this process), ``--address A`` (Ray:
``auto``, ``ray://host:port``; omitted: a local Ray instance). Jobs talk only through the run
directory (shared storage for a multi-machine cluster), so both executors produce the same files.

``Executor.map(function, jobs)`` yields ``function(job)`` for every job, in order, reporting
``(done, total)`` as results arrive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from cxrbio.errors import ConfigError

EXECUTORS = ("local", "ray")
T = TypeVar("T")
R = TypeVar("R")
Counter = Callable[[int, int], None]


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
        from cxrbio.runtime.parallel import imap_jobs

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
