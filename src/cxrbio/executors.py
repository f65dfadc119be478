"""Where (strategy, fold) jobs run: in this process, or as Ray tasks on a cluster.

Jobs communicate only through the run directory (shared storage for a multi-machine Ray
cluster), so both executors produce the same files, and with op determinism the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cxrbio.config import Config

Job = tuple[str, int]
FoldDone = Callable[[str, int, str], None]


@dataclass
class InProcessExecutor:
    """Runs jobs one after another in this process (the default)."""

    def run(self, jobs: list[Job], run_dir: str, config: Config, data: Any,
            on_epoch: Callable[..., None] | None, on_fold_done: FoldDone | None) -> None:
        from cxrbio.rundir import RunDir
        from cxrbio.train import FoldTrainer

        folds = {f.fold: f for f in data.folds}
        for strategy, fold in jobs:
            status = FoldTrainer(RunDir(run_dir), config, data, strategy, folds[fold], on_epoch=on_epoch).train()
            if on_fold_done:
                on_fold_done(strategy, fold, status)


def _train_remote(run_dir: str, config_json: dict[str, Any], strategy: str, fold: int, threads: int) -> tuple[str, int, str]:
    """Body of one Ray task: load the run's data from disk and train one fold."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    from cxrbio.config import Config
    from cxrbio.rundir import RunDir
    from cxrbio.train import FoldTrainer, configure_tensorflow, load_training_data

    config = Config.model_validate(config_json)
    configure_tensorflow(config)
    run = RunDir(run_dir)
    data = load_training_data(run, config)
    target = next(f for f in data.folds if f.fold == fold)
    return strategy, fold, FoldTrainer(run, config, data, strategy, target).train()


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


@dataclass
class RayExecutor:
    """One Ray task per (strategy, fold) with declared CPU/GPU needs.

    ``address``: None or 'local' starts a local Ray instance; 'auto' or 'ray://host:port' joins a
    cluster. The run directory must be on storage every node sees. Training images are read from
    the run's disk cache, which the driver builds before submitting tasks.
    """

    address: str | None = None
    cpus_per_task: float = 1
    gpus_per_task: float = 0

    def run(self, jobs: list[Job], run_dir: str, config: Config, data: Any,
            on_epoch: Callable[..., None] | None, on_fold_done: FoldDone | None) -> None:
        import ray

        with ray_session(self.address):
            remote = ray.remote(num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task, max_retries=0)(_train_remote)
            threads = max(1, int(self.cpus_per_task))
            config_json = config.model_dump(mode="json")
            pending = [remote.remote(str(run_dir), config_json, s, f, threads) for s, f in jobs]
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                strategy, fold, status = ray.get(ready[0])
                if on_fold_done:
                    on_fold_done(strategy, fold, status)
