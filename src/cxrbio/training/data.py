"""What every fold of a run trains on, and the per-fold choices made from the config.

The run's included images and labels with their image cache (:func:`load_training_data`), the
fold's (fit, validation, test) rows with validation carved from training patients only, the
per-(strategy, fold) seed, the optimizer and the class weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cxrbio.config import Config
from cxrbio.data.folds import TestFold, inner_validation_split, outer_folds
from cxrbio.run.rundir import RunDir


@dataclass
class TrainingData:
    """What every fold of a run trains on: included rows, their labels as ints, the image cache."""

    manifest: pd.DataFrame  # included rows only, positional index 0..n-1 = cache rows
    y: np.ndarray
    images: Any  # np.ndarray, np.memmap, or a tf.Tensor table
    classes: list[str]
    folds: list[TestFold]
    #: What was done to the images after letterboxing ('' for nothing; e.g. the lungs-removed box):
    #: part of every cache key made from them, so a variant never reads another's frozen features.
    variant: str = ""


def load_training_data(run: RunDir, config: Config, cache: str | None = None, workers: int | None = None,
                       progress: Callable[[int, int], None] | None = None) -> TrainingData:
    """The run's included images and labels; ``cache`` overrides data.cache ('disk' for Ray tasks)."""
    from cxrbio.data.input_pipeline import build_image_cache
    from cxrbio.errors import DataError

    manifest = run.read_manifest()
    included = manifest[manifest["included"]].reset_index(drop=True)
    unknown = sorted(set(included["label"]) - set(config.data.classes))
    if unknown:
        raise DataError(f"the manifest has labels that are not classes of the config: {unknown}.",
                        fix="re-scan with this config, or add the labels to data.classes.")
    index = {c: i for i, c in enumerate(config.data.classes)}
    y = included["label"].map(index).to_numpy(np.int32)
    folds = outer_folds(included, config.folds.scheme)
    images = build_image_cache(included, config.data.image_size, cache or config.data.cache, run.cache, workers, progress)
    return TrainingData(included, y, images, list(config.data.classes), folds)


def fold_seed(config: Config, strategy: str, fold: int) -> int:
    """A seed per (run seed, strategy, fold), stable across processes and machines."""
    import zlib

    return (config.train.seed * 1_000_003 + zlib.crc32(strategy.encode()) + fold * 7919) % (2**31 - 1)


def make_optimizer(config: Config, steps_per_epoch: int = 1) -> Any:
    import keras

    rate: Any = config.train.learning_rate
    if config.train.lr_schedule == "cosine":
        # A function of the optimizer's step count, which checkpoints restore: resume-safe.
        rate = keras.optimizers.schedules.CosineDecay(rate, decay_steps=max(1, steps_per_epoch * config.train.epochs))
    return {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}[
        config.train.optimizer
    ](learning_rate=rate)


def class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(y)
    weights = compute_class_weight("balanced", classes=present, y=y)
    return {int(c): float(w) for c, w in zip(present, weights)} | {c: 1.0 for c in range(n_classes) if c not in present}


def split_fold(data: TrainingData, fold: TestFold, config: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fit, validation, test) row positions; validation is carved from training patients only."""
    test = np.flatnonzero(fold.test)
    train = np.flatnonzero(~fold.test)
    rows = data.manifest.iloc[train]
    fit_pos, val_pos = inner_validation_split(
        rows["label"], rows["fold_group"], config.train.validation_fraction, config.train.seed + fold.fold
    )
    return train[fit_pos], train[val_pos], test
