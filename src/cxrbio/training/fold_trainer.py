"""Cross-validated training of one strategy, one fold at a time, resumable at epoch granularity.

A fold with a fresh stamp is skipped; a fold without one resumes from its state, if that state
was started under the same fingerprint (same inputs and settings), else starts over. Its files
(checkpoints, state, model, predictions, stamp) are named and written by
:mod:`cxrbio.run.fold_files`; this module decides what they hold and when.

Every epoch is a pure function of (checkpoint, seed, fold, epoch): the shuffle and the
augmentation are seeded per epoch and every dropout RNG is reseeded at the start of the epoch
(Keras does not save RNG state), so a resumed run gives the numbers of an uninterrupted one.
Early stopping watches an inner, patient-grouped validation split of the training folds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from cxrbio.config import Config
from cxrbio.data.folds import TestFold
from cxrbio.models import saving
from cxrbio.models.surgery import copy_trained_weights, frozen_and_trainable, reseed_generators
from cxrbio.run.fold_files import STAGE, FoldFiles
from cxrbio.run.rundir import RunDir
from cxrbio.training.data import TrainingData, class_weights, fold_seed, make_optimizer, split_fold
from cxrbio.training.frozen_cache import feature_dataset, frozen_features, uses_feature_cache

EpochCallback = Callable[[str, int, int, int, dict[str, float]], None]


class FoldTrainer:
    """Trains, checkpoints, resumes and evaluates one (strategy, fold)."""

    def __init__(self, run: RunDir, config: Config, data: TrainingData, strategy: str, fold: TestFold,
                 on_epoch: EpochCallback | None = None, stop_after_epochs: int | None = None,
                 artifact: str = "train_fold", stage: str = STAGE) -> None:
        """``artifact``/``stage``: where the fold goes; another one (the lungs-removed retraining) trains
        the same way, with the same folds, seeds and schedule, on its own images (``data``)."""
        self.run, self.config, self.data, self.strategy, self.fold = run, config, data, strategy, fold
        self.unit = {"strategy": strategy, "fold": fold.fold}
        self.files = FoldFiles(run, config, self.unit, artifact=artifact, stage=stage)
        self.out = self.files.out
        self.expected = self.files.expected
        self.on_epoch = on_epoch
        self.stop_after_epochs = stop_after_epochs  # for tests: simulate a kill after N epochs

    @property
    def done(self) -> bool:
        return self.files.done

    def _state(self) -> dict[str, Any] | None:
        """The saved state of an interrupted run of this fold, if it was started under today's fingerprint."""
        state = self.files.read_state()
        if state is None:
            return None
        path = self.files.state_file
        if state.get("fingerprint") != self.expected.fingerprint:
            self.files.clear()  # started under other inputs or settings: its epochs are not ours
            return None
        from cxrbio.errors import ConfigError
        from cxrbio.runtime import backend

        started_on = state.get("keras_backend", backend.TENSORFLOW)
        if started_on != backend.name():
            raise ConfigError(f"{self.strategy} fold {self.fold.fold} was started on the {started_on} backend and "
                              f"cannot resume on {backend.name()} (the augmentation sits in a different place).",
                              fix=f"resume with KERAS_BACKEND={started_on}, or delete {path} to start the fold over.")
        return state

    def _build(self, steps_per_epoch: int) -> Any:
        from cxrbio.models.mobilenet import build_model
        from cxrbio.models.strategies import Strategy
        from cxrbio.runtime import backend

        in_model = (backend.augments_in_model() and self.config.augment.enabled
                    and not uses_feature_cache(self.config, self.strategy))
        model = build_model(len(self.data.classes), self.config.data.image_size, self.config.model,
                            Strategy.parse(self.strategy), seed=fold_seed(self.config, self.strategy, self.fold.fold),
                            augment=self.config.augment if in_model else None)
        model.compile(optimizer=make_optimizer(self.config, steps_per_epoch), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model

    def train(self) -> str:
        """Run the fold to completion; returns 'done' (already), 'trained' or 'interrupted'."""
        import keras

        from cxrbio.data.input_pipeline import make_dataset
        from cxrbio.runtime import backend

        if self.done:
            return "done"
        self.out.mkdir(parents=True, exist_ok=True)
        cfg = self.config.train
        seed = fold_seed(self.config, self.strategy, self.fold.fold)
        keras.utils.set_random_seed(seed)
        fit_idx, val_idx, _test_idx = split_fold(self.data, self.fold, self.config)
        state = self._state()
        steps = -(-len(fit_idx) // cfg.batch_size)
        cached = uses_feature_cache(self.config, self.strategy)
        full = self._build(steps) if (state is None or cached) else None
        if cached:
            # Only the trainable part runs per epoch, on the frozen part's outputs computed once.
            frozen, trainable = frozen_and_trainable(full, self.strategy)
            features = frozen_features(self.run, self.config, self.data, frozen, self.strategy)
            if backend.uses_tf_data():
                import tensorflow as tf

                features = tf.constant(features)
            if state is None:
                model = trainable
                model.compile(optimizer=make_optimizer(self.config, steps), loss="sparse_categorical_crossentropy",
                              metrics=["accuracy"])
            else:
                model = saving.load_model(self.files.file(state["checkpoint"]))
            images = features
        else:
            model = full if state is None else saving.load_model(self.files.file(state["checkpoint"]))
            images = self.data.images
            if backend.uses_tf_data() and isinstance(images, np.ndarray) and not isinstance(images, np.memmap):
                import tensorflow as tf

                images = tf.constant(images)  # one table for every epoch of this fold
        if state is None:
            state = {"next_epoch": 0, "best_val_loss": None, "best_epoch": None, "wait": 0, "history": [],
                     "checkpoint": None, "fit_images": int(len(fit_idx)), "val_images": int(len(val_idx)),
                     "frozen_feature_cache": cached, "fingerprint": self.expected.fingerprint,
                     "keras_backend": backend.name()}
        y = self.data.y
        weights = class_weights(y[fit_idx], len(self.data.classes)) if cfg.class_weights else None
        if cached:
            val_ds = feature_dataset(images, val_idx, y[val_idx], cfg.batch_size, shuffle_seed=None)
        else:
            val_ds = make_dataset(images, val_idx, y[val_idx], cfg.batch_size, training=False)
        epochs_run = 0
        best_weights: list[Any] | None = None  # best epoch's weights, in memory until the next checkpoint
        last_checkpoint = time.perf_counter()
        for epoch in range(state["next_epoch"], cfg.epochs):
            if self.stop_after_epochs is not None and epochs_run >= self.stop_after_epochs:
                return "interrupted"
            started = time.perf_counter()
            reseed_generators(model, seed + epoch)
            if cached:
                train_ds = feature_dataset(images, fit_idx, y[fit_idx], cfg.batch_size, shuffle_seed=seed + 7 * epoch)
            else:
                train_ds = make_dataset(images, fit_idx, y[fit_idx], cfg.batch_size, training=True,
                                        augment=self.config.augment, seed=seed + 7 * epoch)
            history = model.fit(train_ds, validation_data=val_ds, epochs=epoch + 1, initial_epoch=epoch,
                                verbose=0, class_weight=weights, shuffle=False)
            logs = {k: float(v[-1]) for k, v in history.history.items()}
            logs["seconds"] = time.perf_counter() - started
            logs["images_per_second"] = len(fit_idx) / logs["seconds"]
            state["history"].append({"epoch": epoch, **logs})
            if state["best_val_loss"] is None or logs["val_loss"] < state["best_val_loss"] - 1e-7:
                best_weights = model.get_weights()
                state.update(best_val_loss=logs["val_loss"], best_epoch=epoch, wait=0)
            else:
                state["wait"] += 1
            epochs_run += 1
            stopping = bool(cfg.early_stopping_patience and state["wait"] >= cfg.early_stopping_patience)
            if stopping or epoch == cfg.epochs - 1 or time.perf_counter() - last_checkpoint >= cfg.checkpoint_seconds:
                self.files.write_checkpoint(model, state, epoch, best_weights)
                best_weights = None
                last_checkpoint = time.perf_counter()
            if self.on_epoch:
                self.on_epoch(self.strategy, self.fold.fold, epoch, cfg.epochs, logs)
            if stopping:
                break
        if cached:
            if state.get("best_weights"):
                model.load_weights(self.files.file(state["best_weights"]))
            copy_trained_weights(model, full)  # the trained part goes into the full model, saved as usual
            model = full
        self._finish(model, state)
        return "trained"

    def _finish(self, model: Any, state: dict[str, Any]) -> None:
        if state.get("best_weights") and not state.get("frozen_feature_cache"):
            model.load_weights(self.files.file(state["best_weights"]))
        _fit, validation, _test = split_fold(self.data, self.fold, self.config)
        summary = {k: state[k] for k in ("best_epoch", "best_val_loss", "fit_images", "val_images")}
        summary["test_images"] = int(self.fold.test.sum())
        summary["epochs_run"] = len(state["history"])
        summary["keras_backend"] = state.get("keras_backend", "tensorflow")
        self.files.write_results(model, predictions=self.predict(model),
                                 validation=predict_rows(model, self.data, validation, self.fold.fold, self.config),
                                 history=state["history"], summary=summary)

    def predict(self, model: Any) -> pd.DataFrame:
        """The fold model's predictions on its test fold (out-of-fold)."""
        return predict_rows(model, self.data, np.flatnonzero(self.fold.test), self.fold.fold, self.config)


def predict_rows(model: Any, data: TrainingData, rows: np.ndarray, fold: int, config: Config) -> pd.DataFrame:
    """Predictions of ``model`` on the given row positions: ids, truth, prediction and one p_<class> per class."""
    from cxrbio.data.input_pipeline import make_dataset

    dataset = make_dataset(data.images, rows, data.y[rows], config.train.batch_size, training=False)
    probabilities = model.predict(dataset, verbose=0).astype(np.float64)
    picked = data.manifest.iloc[rows]
    frame = pd.DataFrame({
        "image_id": picked["image_id"].to_numpy(),
        "patient_id": picked["patient_id"].to_numpy(),
        "source": picked["source"].to_numpy(),
        "fold": fold,
        "true": data.y[rows],
        "predicted": probabilities.argmax(axis=1).astype(np.int32),
    })
    frame["label"] = [data.classes[i] for i in frame["true"]]
    frame["predicted_label"] = [data.classes[i] for i in frame["predicted"]]
    for i, name in enumerate(data.classes):
        frame[f"p_{name}"] = probabilities[:, i]
    return frame
