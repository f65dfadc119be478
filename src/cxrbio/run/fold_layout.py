"""The names of a trained fold's files, and nothing else: importable from anywhere without a cycle.

(:mod:`cxrbio.run.fold_files` reads and writes them; the weights of a pretrained strategy can name
another run's fold model, ``run:RUN_DIR/STRATEGY[/fold-K]``, which :mod:`cxrbio.models.weights`
resolves here.)
"""

from __future__ import annotations

from pathlib import Path

from cxrbio.run.rundir import RunDir

#: A fold model's predictions on its inner validation patients (temperature scaling fits on them).
VALIDATION_PREDICTIONS = "validation.parquet"
STATE = "state.json"
MODEL = "model.keras"
PREDICTIONS = "predictions.parquet"
HISTORY = "history.csv"
SUMMARY = "summary.json"


def fold_dir(run: RunDir, strategy: str, fold: int, *, artifact: str = "train_fold") -> Path:
    return run.path(artifact, strategy=strategy, fold=fold)


def model_file(run: RunDir, strategy: str, fold: int, *, artifact: str = "train_fold") -> Path:
    """A finished fold's model (best weights)."""
    return fold_dir(run, strategy, fold, artifact=artifact) / MODEL


def predictions_file(run: RunDir, strategy: str, fold: int, *, artifact: str = "train_fold") -> Path:
    """A finished fold's predictions on its test fold (out-of-fold)."""
    return fold_dir(run, strategy, fold, artifact=artifact) / PREDICTIONS
