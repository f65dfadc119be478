"""Stage ``embed``: each trained fold model's GAP embedding of every included image (docs/embeddings.md).

A fold whose embeddings' stamp is fresh is kept (the stamp covers the fold model's digest, so a
retrained fold is re-exported); ``force`` rewrites them all, moving the old ones to ``superseded-<time>/``. A fold that is not trained, or
whose model is stale, is reported and left out; its strategy's out-of-fold set is then
incomplete and the analysis refuses it with the command that fixes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxrbio.errors import DataError
from cxrbio.features.embedding import export_fold
from cxrbio.run import freshness
from cxrbio.run.artifacts import command_for, missing_error
from cxrbio.run.embedding_files import read_out_of_fold
from cxrbio.run.fold_files import trained_folds
from cxrbio.run.fold_layout import model_file
from cxrbio.run.rundir import open_run, supersede
from cxrbio.run.table_files import write_table_stream
from cxrbio.runtime.progress import Progress, ProgressEvent, say, silent, warn

__all__ = ["EmbedResult", "run"]

STAGE = "embed"


@dataclass
class EmbedResult:
    """What one call did, per strategy."""

    written: dict[str, list[int]] = field(default_factory=dict)
    up_to_date: dict[str, list[int]] = field(default_factory=dict)
    missing_folds: dict[str, list[int]] = field(default_factory=dict)  # not trained, or trained under other inputs
    skipped_strategies: dict[str, str] = field(default_factory=dict)
    dims: dict[str, int] = field(default_factory=dict)
    images: int = 0
    seconds: float = 0.0


def _reporter(report: Progress, task: str) -> Callable[[int, int], None]:
    def update(done: int, total: int) -> None:
        report(ProgressEvent(task, done, total))

    return update


def run(run_dir: str | Path, *, strategies: list[str] | None = None, batch_size: int | None = None,
        force: bool = False, progress: Progress | None = None) -> EmbedResult:
    """Export the embeddings of every trained fold of the chosen (default: all trained) strategies."""
    from cxrbio.runtime import backend
    from cxrbio.runtime.backend import initialise_tensorflow
    from cxrbio.training.data import load_training_data

    started = time.perf_counter()
    report = progress or silent
    initialise_tensorflow()
    run, config = open_run(run_dir)
    trained = trained_folds(run)
    result = EmbedResult()
    for skipped in run.glob("train_skipped"):
        result.skipped_strategies[skipped.parent.name] = skipped.read_text().strip()
    if not trained:
        raise missing_error("train_fold", run.root)
    chosen = strategies or list(trained)
    unknown = [s for s in chosen if s not in trained]
    if unknown:
        raise DataError(
            f"no trained folds for {', '.join(unknown)} in {run.root}; trained: {', '.join(trained)}.",
            fix=f"train them first ('{command_for('train', run.root, strategies=','.join(unknown))}') or drop them.",
        )
    backend.configure(config)
    data = load_training_data(run, config, cache="disk")
    result.images = len(data.manifest)
    tree = config.model_dump(mode="json")
    for strategy in chosen:
        for fold in data.folds:
            unit = {"strategy": strategy, "fold": fold.fold}
            model_state = freshness.status(run, freshness.expected(run, "train_fold", tree, unit))
            if not model_state.fresh:
                result.missing_folds.setdefault(strategy, []).append(fold.fold)
                warn(progress, f"{strategy} fold {fold.fold}: not trained" if model_state.state == "missing"
                    else f"{strategy} fold {fold.fold}: model is stale ({model_state.reason})")
                continue
            want = freshness.expected(run, "embeddings", tree, unit)
            fresh = freshness.status(run, want).fresh
            if fresh and not force:
                result.up_to_date.setdefault(strategy, []).append(fold.fold)
                say(progress, f"{strategy} fold {fold.fold}: up to date")
                continue
            if fresh:
                supersede(run, [freshness.unit_label("embeddings", unit)], reason="forced (--force)")
            stream = export_fold(model_file(run, strategy, fold.fold), data, np.asarray(fold.test, bool),
                                 batch_size or config.train.batch_size,
                                 progress=_reporter(report, f"{strategy} fold {fold.fold}"))
            write_table_stream(run.output(STAGE, "embeddings", **unit), stream.schema, stream.tables)
            dims = stream.dims
            freshness.write_stamp(run, want, info={"dims": dims, "images": len(data.manifest)})
            result.written.setdefault(strategy, []).append(fold.fold)
            say(progress, f"{strategy} fold {fold.fold}: written")
        if strategy not in result.missing_folds:
            result.dims[strategy] = read_out_of_fold(run, strategy, expected=data.manifest["image_id"]).shape[1] - 2
    result.seconds = time.perf_counter() - started
    return result
