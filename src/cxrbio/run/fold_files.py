"""The files of one trained fold (``train/<strategy>/fold-<k>/``), read and written in one place.

* ``checkpoint-<epoch>.keras`` + ``state.json`` at most every ``train.checkpoint_seconds`` and
  after the last epoch (model with optimizer state, early-stopping state, history). ``state.json``
  is written after the files it names, so a kill at any moment leaves a consistent set.
* ``best-<epoch>.weights.h5``: weights of the epoch with the lowest validation loss (named in state.json).
* At the end: ``model.keras`` (best weights), ``history.csv``, ``predictions.parquet`` (its
  test fold), ``validation.parquet`` (its inner validation patients, for temperature scaling),
  ``summary.json``, then the fold's stamp (last; :mod:`cxrbio.run.freshness`).

The trainer (:mod:`cxrbio.training.fold_trainer`) decides what to write and when; this module
knows the names and writes atomically. """

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from cxrbio.config import Config
from cxrbio.run import freshness
from cxrbio.run.atomic import atomic_write, atomic_write_parquet, atomic_write_text
from cxrbio.run.fold_layout import (
    HISTORY,
    MODEL,
    PREDICTIONS,
    STATE,
    SUMMARY,
    VALIDATION_PREDICTIONS,
    fold_dir,
    predictions_file,
)
from cxrbio.run.rundir import RunDir

STAGE = "train"


class FoldFiles:
    """The directory of one (strategy, fold) of a training artifact, and its stamp."""

    def __init__(self, run: RunDir, config: Config, unit: dict[str, Any], *, artifact: str = "train_fold",
                 stage: str = STAGE) -> None:
        self.run = run
        self.out = run.output(stage, artifact, **unit)
        self.expected = freshness.expected(run, artifact, config.model_dump(mode="json"), unit)

    @property
    def done(self) -> bool:
        return freshness.status(self.run, self.expected).fresh

    def read_state(self) -> dict[str, Any] | None:
        """state.json of an interrupted run of this fold, whatever fingerprint it was started under."""
        path = self.out / STATE
        return json.loads(path.read_text()) if path.is_file() else None

    @property
    def state_file(self) -> Path:
        return self.out / STATE

    def file(self, name: str) -> Path:
        """A file the state names (a checkpoint or best weights)."""
        return self.out / name

    def clear(self) -> None:
        """Checkpoints, best weights and state: what an interrupted run leaves and a finished one does not."""
        for leftover in [*self.out.glob("checkpoint-*"), *self.out.glob("best-*.weights.h5"), self.out / STATE]:
            leftover.unlink(missing_ok=True)

    def write_checkpoint(self, model: Any, state: dict[str, Any], epoch: int, best_weights: list[Any] | None) -> None:
        """Write best weights (if new), the model with its optimizer, then state.json naming both.

        state.json comes last and stale files go after it, so a kill or a full disk at any moment
        leaves a consistent set; a resume repeats the epochs since, with the same result.
        """
        self.out.mkdir(parents=True, exist_ok=True)
        if best_weights is not None:
            best_name = f"best-{state['best_epoch']}.weights.h5"
            current = model.get_weights()
            model.set_weights(best_weights)
            try:
                atomic_write(self.out / best_name, model.save_weights)
            finally:
                model.set_weights(current)
            state["best_weights"] = best_name
        name = f"checkpoint-{epoch}.keras"  # with the optimizer's state
        atomic_write(self.out / name, model.save)
        state.update(checkpoint=name, next_epoch=epoch + 1)
        atomic_write_text(self.out / STATE, json.dumps(state, indent=1))
        keep = {name, state.get("best_weights")}
        for stale in [*self.out.glob("checkpoint-*"), *self.out.glob("best-*.weights.h5")]:
            if stale.name not in keep:
                stale.unlink(missing_ok=True)

    def write_results(self, model: Any, *, predictions: pd.DataFrame, validation: pd.DataFrame,
                      history: list[dict[str, Any]], summary: dict[str, Any]) -> None:
        """The finished fold's files, then its stamp (last), then the checkpoints go."""
        atomic_write_parquet(self.out / PREDICTIONS, predictions)
        atomic_write_parquet(self.out / VALIDATION_PREDICTIONS, validation)
        atomic_write_text(self.out / HISTORY, pd.DataFrame(history).to_csv(index=False))
        self.write_model(model, summary)
        self.clear()

    def write_model(self, model: Any, summary: dict[str, Any]) -> None:
        """The fold model, its summary, then the stamp naming the model's digest (last)."""
        from cxrbio.data.duplicates import sha256_file

        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write(self.out / MODEL, model.save)
        atomic_write_text(self.out / SUMMARY, json.dumps(summary) + "\n")
        freshness.write_stamp(self.run, self.expected, digest=sha256_file(self.out / MODEL), info=summary)


def read_validation_predictions(run: RunDir, strategy: str, folds: list[int]) -> pd.DataFrame:
    """The fold models' predictions on the inner validation patients they early-stopped on (never a test fold).

    Written beside each model when its training finishes (temperature scaling fits on them).
    """
    return pd.concat([pd.read_parquet(fold_dir(run, strategy, f) / VALIDATION_PREDICTIONS) for f in folds],
                     ignore_index=True)


def read_history(run: RunDir, strategy: str, fold: int) -> pd.DataFrame:
    """A fold's per-epoch history (history.csv)."""
    return pd.read_csv(fold_dir(run, strategy, fold) / HISTORY)


def trained_folds(run: RunDir) -> dict[str, list[int]]:
    """Strategies with at least one completed fold (a stamp), and those folds."""
    return freshness.folds_by_strategy(run.root, "train_fold")


def read_fold_predictions(run: RunDir, strategy: str, folds: list[int], *, artifact: str = "train_fold") -> pd.DataFrame:
    """The test-fold predictions of these folds of ``artifact`` (each must exist)."""
    return pd.concat([pd.read_parquet(predictions_file(run, strategy, f, artifact=artifact)) for f in folds],
                     ignore_index=True)


def read_predictions(run: RunDir, strategy: str) -> pd.DataFrame:
    """Out-of-fold predictions of the strategy's completed folds."""
    folds = trained_folds(run).get(strategy, [])
    parts = [predictions_file(run, strategy, f) for f in folds]
    parts = [p for p in parts if p.is_file()]
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True) if parts else pd.DataFrame()


def register_fold_model(run: RunDir, config: Config, strategy: str, fold: int, model: Any) -> None:
    """Record ``model`` as the run's fold model without training it (a model.keras and a stamp).

    For benchmarks and tests of the stages after training, which need fold models but not good
    ones; ``summary.json`` says so (``registered: true``). It has no predictions, so the run's
    metrics cannot be computed from it.
    """
    FoldFiles(run, config, {"strategy": strategy, "fold": fold}).write_model(model, {"registered": True})
