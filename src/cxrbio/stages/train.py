"""Stage ``train``: every strategy x fold of a run, then each strategy's metrics and the comparisons.

Reads the run's config (a ``config`` that differs is refused unless ``reconfigure``:
:mod:`cxrbio.run.runconfig`) and manifest (a run without one is scanned first from ``data``).
``force`` retrains folds that are up to date, moving the old ones to ``superseded-<time>/``.
Pretrained weights must be reachable, or ``skip_unavailable`` marks those strategies skipped in
every output. A fold whose stamp is fresh is skipped; an interrupted one resumes from its last
checkpoint (:class:`cxrbio.training.fold_trainer.FoldTrainer`). After training, ``metrics/<strategy>.json`` per
complete strategy and ``metrics/comparison.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxrbio.config import Config, load_config
from cxrbio.errors import CxrbioError, DataError
from cxrbio.evaluation.comparisons import compare_strategies
from cxrbio.evaluation.metrics import strategy_metrics
from cxrbio.models.strategies import Strategy
from cxrbio.models.weights import WeightsUnavailable, load_backbone
from cxrbio.run import freshness, runconfig
from cxrbio.run.artifacts import command_for
from cxrbio.run.atomic import atomic_write_text
from cxrbio.run.fold_files import STAGE, read_predictions, read_validation_predictions
from cxrbio.run.rundir import RunDir, check_layout, supersede
from cxrbio.runtime.executors import Executor, make_executor
from cxrbio.runtime.progress import Progress, ProgressEvent, say, silent
from cxrbio.training.data import TrainingData
from cxrbio.training.fold_trainer import FoldTrainer

__all__ = ["TrainResult", "run"]

EpochLogs = dict[str, float]


@dataclass
class TrainResult:
    """What one call trained, and each complete strategy's metrics."""

    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # strategy -> reason
    trained: list[tuple[str, int]] = field(default_factory=list)
    up_to_date: list[tuple[str, int]] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)  # strategies with folds still to train
    seconds: float = 0.0


def resolve_strategies(config: Config, names: list[str] | None) -> list[str]:
    names = list(names or config.train.strategies)
    for name in names:
        Strategy.parse(name)
    return names


def check_weights(config: Config, strategies: list[str], skip_unavailable: bool) -> dict[str, str]:
    """Strategies that cannot run for lack of weights -> reason; raises unless skip_unavailable."""
    pretrained = [s for s in strategies if Strategy.parse(s).pretrained]
    if not pretrained:
        return {}
    try:
        load_backbone(config.data.image_size, config.model.alpha, config.model.weights)
        return {}
    except WeightsUnavailable as error:
        if not skip_unavailable:
            raise WeightsUnavailable(
                f"{error.message} Strategies that need them: {', '.join(pretrained)}.", fix=error.fix
            ) from None
        return {s: error.message for s in pretrained}


def mark_skipped(run: RunDir, strategy: str, reason: str) -> None:
    atomic_write_text(run.output(STAGE, "metrics", strategy=strategy),
                      json.dumps({"strategy": strategy, "status": "skipped", "reason": reason}, indent=1))
    atomic_write_text(run.output(STAGE, "train_skipped", strategy=strategy), reason + "\n")


def strategy_complete(run: RunDir, config: Config, strategy: str, data: TrainingData) -> bool:
    tree = config.model_dump(mode="json")
    return all(freshness.status(run, freshness.expected(run, "train_fold", tree, {"strategy": strategy, "fold": f.fold})).fresh
               for f in data.folds)


def write_strategy_metrics(run: RunDir, config: Config, strategy: str, data: TrainingData) -> dict[str, Any]:
    """metrics/<strategy>.json: per fold, pooled, fold means, patient-bootstrap intervals, calibration."""
    predictions = read_predictions(run, strategy)
    if len(predictions) != len(data.manifest):
        raise DataError(f"{strategy}: {len(predictions)} out-of-fold predictions for {len(data.manifest)} images.",
                        fix=f"re-run '{command_for('train', run.root)}'.")
    evaluation = config.evaluation
    validation = None
    if evaluation.temperature_scaling:
        validation = read_validation_predictions(run, strategy, [f.fold for f in data.folds])
    sources = data.manifest.set_index("image_id")["source"]
    metrics = strategy_metrics(predictions, data.classes, config.data.positive_class, {f.fold: f.name for f in data.folds},
                               n_boot=evaluation.bootstrap, seed=evaluation.seed, level=evaluation.level,
                               bins=evaluation.calibration_bins, validation=validation, sources=sources)
    if not evaluation.temperature_scaling:
        metrics["calibration"]["temperature"] = {"status": "off", "reason": "evaluation.temperature_scaling: false"}
    metrics.update(strategy=strategy, status="done", scheme=config.folds.scheme)
    metrics["training"] = [freshness.read_stamp(run.root, "train_fold", {"strategy": strategy, "fold": f.fold}).info  # type: ignore[union-attr]
                           for f in data.folds]
    want = freshness.expected(run, "metrics", config.model_dump(mode="json"), {"strategy": strategy})
    atomic_write_text(run.output(STAGE, "metrics", strategy=strategy), json.dumps(metrics, indent=1, allow_nan=True))
    freshness.write_stamp(run, want)
    return metrics


def write_comparison(run: RunDir, config: Config, data: TrainingData, strategies: list[str]) -> dict[str, Any]:
    """metrics/comparison.json: every pair of complete strategies over the same folds and images (:mod:`cxrbio.evaluation.comparisons`)."""
    finished = [s for s in strategies if strategy_complete(run, config, s, data)]
    n = len(data.manifest)
    n_test = float(np.mean([int(f.test.sum()) for f in data.folds]))
    evaluation = config.evaluation
    result = compare_strategies({s: read_predictions(run, s) for s in finished}, data.classes, n_train=n - n_test,
                                n_test=n_test, resamples=evaluation.bootstrap, seed=evaluation.seed, level=evaluation.level,
                                alpha=evaluation.alpha)
    result["scheme"] = config.folds.scheme
    want = freshness.expected(run, "comparison", config.model_dump(mode="json"))
    atomic_write_text(run.output(STAGE, "comparison"), json.dumps(result, indent=1, allow_nan=True))
    freshness.write_stamp(run, want)
    return result


def _ensure_manifest(run: RunDir, config: Config, data: str | Path | None, executor: Executor,
                     progress: Progress | None) -> None:
    """A run without a manifest is scanned first: from ``data``, else from the data it was scanned from."""
    from cxrbio.stages import scan

    if run.manifest.is_file():
        if data is not None:
            say(progress, f"Using the manifest already in {run.root} (re-scan with 'cxrbio data scan --force' to refresh).")
        return
    source = data if data is not None else run.info().get("data")
    if source is None:
        raise CxrbioError(f"{run.root} has no manifest and no --data was given.", fix="pass --data DATA (a folder or CSV).")
    if Path(source).suffix == ".parquet":
        raise CxrbioError(f"{source}: a manifest of another run cannot be adopted (its stamps and salt stay there).",
                          fix="pass the data folder or CSV the manifest was scanned from.")
    result = scan.run(run.root, data=source, config=config, executor=executor, progress=progress)
    if result.fold_error is not None:
        raise result.fold_error


def run(run_dir: str | Path, *, data: str | Path | None = None, config: Config | None = None,
        strategies: list[str] | None = None, folds: list[int] | None = None, executor: Executor | None = None,
        skip_unavailable: bool = False, force: bool = False, reconfigure: bool = False,
        progress: Progress | None = None) -> TrainResult:
    """Train the run's strategies (default: the config's) on its folds (default: all); returns their metrics.

    ``executor``: local with one worker (default) trains in this process with per-epoch progress;
    more workers, or Ray, train one fold per task from the run's disk cache.
    """
    from cxrbio.runtime import backend
    from cxrbio.runtime.backend import initialise_tensorflow
    from cxrbio.training.data import load_training_data

    report = progress or silent
    initialise_tensorflow()  # before anything imports it: keeps its C++ start-up notices off the screen
    run = RunDir(run_dir)
    runner = executor or make_executor("local", workers=1)
    if run.config.is_file():
        check_layout(run)
        config = runconfig.adopt(run, config, stage=STAGE, reconfigure=reconfigure)
    elif data is None:
        raise CxrbioError(f"{run.root} is not a scanned run and no --data was given.",
                          fix=f"run '{command_for('scan', run.root)}' first, or pass --data DATA.")
    else:
        config = config or load_config(None)
    _ensure_manifest(run, config, data, runner, progress)
    config = load_config(run.config)
    names = resolve_strategies(config, strategies)
    result = TrainResult()
    result.skipped = check_weights(config, names, skip_unavailable)
    for name, reason in result.skipped.items():
        mark_skipped(run, name, reason)
        say(progress, f"skipped {name}: {reason}")
    active = [n for n in names if n not in result.skipped]
    for name in active:  # weights that were missing before may be here now
        run.path("train_skipped", strategy=name).unlink(missing_ok=True)
    backend.configure(config)
    # Tasks in other processes read the letterboxed images from the run's disk cache, built here once.
    data_for_run = load_training_data(run, config, cache=None if runner.in_process else "disk",
                                      progress=lambda d, t: report(ProgressEvent("decode + letterbox", d, t)))
    known = [f.fold for f in data_for_run.folds]
    unknown = sorted(set(folds or []) - set(known))
    if unknown:
        raise CxrbioError(f"no fold(s) {unknown}; this run has folds {known}.", fix=f"pick from {known}.")
    wanted = set(folds) if folds else set(known)
    jobs, tree = [], config.model_dump(mode="json")
    for strategy in active:
        for fold in data_for_run.folds:
            if fold.fold not in wanted:
                continue
            unit = {"strategy": strategy, "fold": fold.fold}
            state = freshness.status(run, freshness.expected(run, "train_fold", tree, unit))
            if state.fresh and not force:
                result.up_to_date.append((strategy, fold.fold))
                continue
            if state.state == "stale" or state.fresh:
                why = "forced" if state.fresh else f"stale: {state.reason}"
                aside = supersede(run, [freshness.unit_label("train_fold", unit)], reason=why)
                say(progress, f"{strategy} fold {fold.fold} " + ("retrained (--force)" if state.fresh else
                              f"was made from other inputs ({state.reason})") + f"; the old one moved to {aside}.")
            jobs.append((strategy, fold.fold))
    if result.up_to_date:
        say(progress, f"{len(result.up_to_date)} fold(s) already finished: skipped (resuming).")
    started = time.perf_counter()
    report(ProgressEvent("folds", 0, len(jobs)))
    for done, (strategy, fold, status) in enumerate(_train(jobs, run, config, data_for_run, runner, report), 1):
        result.trained.append((strategy, fold))
        report(ProgressEvent("folds", done, len(jobs)))
        say(progress, f"{strategy} fold {fold}: {status}")
    for name in active:
        if strategy_complete(run, config, name, data_for_run):
            result.metrics[name] = write_strategy_metrics(run, config, name, data_for_run)
        else:
            result.incomplete.append(name)
    if len(result.metrics) > 1:
        write_comparison(run, config, data_for_run, active)
    result.seconds = time.perf_counter() - started
    return result


def _train(jobs: list[tuple[str, int]], run: RunDir, config: Config, data: TrainingData, runner: Executor,
           report: Progress) -> Any:
    """Yield (strategy, fold, status) as folds finish: in this process, or as executor tasks."""
    if runner.in_process:
        folds = {f.fold: f for f in data.folds}

        def on_epoch(strategy: str, fold: int, epoch: int, epochs: int, logs: EpochLogs) -> None:
            report(ProgressEvent("epochs", epoch + 1, epochs, message=(
                f"{strategy} fold {fold} epoch {epoch + 1}/{epochs} loss {logs.get('loss', 0):.3f} "
                f"acc {logs.get('accuracy', 0):.3f} val_acc {logs.get('val_accuracy', 0):.3f} "
                f"({logs.get('images_per_second', 0):.0f} img/s)")))

        for strategy, fold in jobs:
            yield strategy, fold, FoldTrainer(run, config, data, strategy, folds[fold], on_epoch=on_epoch).train()
        return
    config_json = config.model_dump(mode="json")
    tasks = [(str(run.root), config_json, strategy, fold) for strategy, fold in jobs]
    yield from runner.map(train_fold_task, tasks)


def train_fold_task(task: tuple[str, dict[str, Any], str, int]) -> tuple[str, int, str]:
    """Body of one task in another process: load the run's data from its disk cache and train one fold."""
    from cxrbio.runtime import backend
    from cxrbio.training.data import load_training_data

    run_dir, config_json, strategy, fold = task
    backend.limit_threads()
    config = Config.model_validate(config_json)
    backend.configure(config)
    run = RunDir(run_dir)
    data = load_training_data(run, config, cache="disk")
    target = next(f for f in data.folds if f.fold == fold)
    return strategy, fold, FoldTrainer(run, config, data, strategy, target).train()

