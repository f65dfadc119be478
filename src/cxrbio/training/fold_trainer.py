"""Cross-validated training of one strategy, one fold at a time, resumable at epoch granularity.

Per fold (``train/<strategy>/fold-<k>/``):

* ``checkpoint-<epoch>.keras`` + ``state.json`` at most every ``train.checkpoint_seconds`` and
  after the last epoch (model with optimizer state, early-stopping state, history). ``state.json``
  is written after the files it names, so a kill at any moment leaves a consistent set.
* ``best-<epoch>.weights.h5``: weights of the epoch with the lowest validation loss (named in state.json).
* At the end: ``model.keras`` (best weights), ``history.csv``, ``predictions.parquet`` (its
  test fold), ``validation.parquet`` (its inner validation patients, for temperature scaling),
  ``summary.json``, then the fold's stamp (last; :mod:`cxrbio.run.freshness`). A fold with a fresh
  stamp is skipped; a fold without one resumes from its state, if that state was started under
  the same fingerprint (same inputs and settings), else starts over.

Every epoch is a pure function of (checkpoint, seed, fold, epoch): the shuffle and the
augmentation are seeded per epoch and every dropout RNG is reseeded at the start of the epoch
(Keras does not save RNG state), so a resumed run gives the numbers of an uninterrupted one.
Early stopping watches an inner, patient-grouped validation split of the training folds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cxrbio.config import Config
from cxrbio.data.folds import TestFold, inner_validation_split, outer_folds
from cxrbio.models import saving
from cxrbio.models.layers import BACKBONE_LAYER, GAP_LAYER, HEAD_LAYERS, PREPROCESS_LAYER
from cxrbio.models.weights import weights_file
from cxrbio.run import freshness
from cxrbio.run.atomic import atomic_write, atomic_write_parquet, atomic_write_text
from cxrbio.run.digests import file_digest
from cxrbio.run.rundir import RunDir

STAGE = "train"

EpochCallback = Callable[[str, int, int, int, dict[str, float]], None]


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


def reseed_generators(model: Any, seed: int) -> None:
    """Set every SeedGenerator of the model (dropout, ...) to a state derived from ``seed``."""
    from keras.random import SeedGenerator

    generators = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        generators.extend(v for v in vars(layer).values() if isinstance(v, SeedGenerator))
    for i, generator in enumerate(generators):
        state = generator.state
        state.assign(np.array([(seed + 104729 * (i + 1)) % (2**31 - 1), 0], dtype=state.dtype))


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


def uses_feature_cache(config: Config, strategy: str) -> bool:
    """Frozen-feature caching applies to the pretrained strategies when augment_frozen is false."""
    from cxrbio.models.strategies import Strategy

    return not config.train.augment_frozen and Strategy.parse(strategy).pretrained


def split_layer(strategy: str) -> str | None:
    """Backbone layer whose output is the frozen part's output: None for offshelf (cache GAP features)."""
    from cxrbio.models.blocks import N_BLOCKS
    from cxrbio.models.strategies import Strategy

    blocks = Strategy.parse(strategy).trainable_blocks
    if not blocks:
        return None
    last_frozen = N_BLOCKS - blocks - 1  # the block just below the trained ones
    if last_frozen < 0:
        return "Conv1_relu"  # every block trains: only the stem is frozen
    if last_frozen == 0:
        return "expanded_conv_project_BN"
    return f"block_{last_frozen}_add"  # blocks with a residual end in an add ...


def _block_output(backbone: Any, name: str) -> Any:
    try:
        return backbone.get_layer(name).output
    except ValueError:  # ... the others in their projection's BatchNorm
        return backbone.get_layer(name.replace("_add", "_project_BN")).output


def frozen_and_trainable(model: Any, strategy: str) -> tuple[Any, Any]:
    """(frozen part: image -> features, trainable part: features -> probabilities), sharing ``model``'s layers."""
    import keras

    split = split_layer(strategy)
    if split is None:
        frozen = keras.Model(model.input, model.get_layer(GAP_LAYER).output, name="frozen")
        features = keras.Input(frozen.output.shape[1:], name="features")
        x = features
    else:
        backbone = model.get_layer(BACKBONE_LAYER)
        cut = _block_output(backbone, split)
        bottom = keras.Model(backbone.input, cut, name="backbone_bottom")
        top = keras.Model(cut, backbone.output, name="backbone_top")
        frozen = keras.Model(model.input, bottom(model.get_layer(PREPROCESS_LAYER).output), name="frozen")
        features = keras.Input(frozen.output.shape[1:], name="features")
        x = model.get_layer(GAP_LAYER)(top(features))
    for name in HEAD_LAYERS:
        x = model.get_layer(name)(x)
    return frozen, keras.Model(features, x, name="trainable")


def copy_trained_weights(trained: Any, model: Any) -> None:
    """Weights of a (possibly reloaded) trainable part into the full model, matched by layer name."""
    backbone = model.get_layer(BACKBONE_LAYER)
    for layer in trained._flatten_layers(include_self=False, recursive=True):
        if not layer.weights or isinstance(layer, type(model)):
            continue
        target = model.get_layer(layer.name) if layer.name in HEAD_LAYERS else backbone.get_layer(layer.name)
        target.set_weights(layer.get_weights())


def frozen_features(run: RunDir, config: Config, data: TrainingData, frozen: Any, strategy: str) -> np.ndarray:
    """Frozen-part outputs of every image (pretrained weights, no augmentation); cached per run on disk."""
    import hashlib

    from cxrbio.data.input_pipeline import cache_key, make_dataset

    tag = split_layer(strategy) or "gap"
    source = weights_file(config.model.weights)  # a file's content, not its path: a replaced file is another cache
    weights = config.model.weights if source is None else f"{config.model.weights}#{file_digest(source)}"
    key = hashlib.sha256(
        f"{cache_key(data.manifest, config.data.image_size)}|{config.model.alpha}|{weights}|{tag}"
        f"{'|' + data.variant if data.variant else ''}".encode())
    path = run.cache / f"frozen-{tag}-{key.hexdigest()[:16]}.npy"
    if path.is_file():
        return np.load(path)
    everything = np.arange(len(data.manifest))
    features = frozen.predict(make_dataset(data.images, everything, data.y, 64, training=False), verbose=0)
    features = features.astype(np.float32)
    atomic_write(path, lambda tmp: np.save(tmp.open("wb"), features))
    return features


class FoldTrainer:
    """Trains, checkpoints, resumes and evaluates one (strategy, fold)."""

    def __init__(self, run: RunDir, config: Config, data: TrainingData, strategy: str, fold: TestFold,
                 on_epoch: EpochCallback | None = None, stop_after_epochs: int | None = None,
                 artifact: str = "train_fold", stage: str = STAGE) -> None:
        """``artifact``/``stage``: where the fold goes; another one (the lungs-removed retraining) trains
        the same way, with the same folds, seeds and schedule, on its own images (``data``)."""
        self.run, self.config, self.data, self.strategy, self.fold = run, config, data, strategy, fold
        self.unit = {"strategy": strategy, "fold": fold.fold}
        self.out = run.output(stage, artifact, **self.unit)
        self.expected = freshness.expected(run, artifact, config.model_dump(mode="json"), self.unit)
        self.on_epoch = on_epoch
        self.stop_after_epochs = stop_after_epochs  # for tests: simulate a kill after N epochs

    @property
    def done(self) -> bool:
        return freshness.status(self.run, self.expected).fresh

    def _state(self) -> dict[str, Any] | None:
        """The saved state of an interrupted run of this fold, if it was started under today's fingerprint."""
        path = self.out / "state.json"
        if not path.is_file():
            return None
        state = json.loads(path.read_text())
        if state.get("fingerprint") != self.expected.fingerprint:
            self._clear()  # started under other inputs or settings: its epochs are not ours
            return None
        from cxrbio.errors import ConfigError
        from cxrbio.runtime import backend

        started_on = state.get("keras_backend", backend.TENSORFLOW)
        if started_on != backend.name():
            raise ConfigError(f"{self.strategy} fold {self.fold.fold} was started on the {started_on} backend and "
                              f"cannot resume on {backend.name()} (the augmentation sits in a different place).",
                              fix=f"resume with KERAS_BACKEND={started_on}, or delete {path} to start the fold over.")
        return state

    def _clear(self) -> None:
        for leftover in [*self.out.glob("checkpoint-*"), *self.out.glob("best-*.weights.h5"), self.out / "state.json"]:
            leftover.unlink(missing_ok=True)

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
                model = saving.load_model(self.out / state["checkpoint"])
            images = features
        else:
            model = full if state is None else saving.load_model(self.out / state["checkpoint"])
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
                self._checkpoint(model, state, epoch, best_weights)
                best_weights = None
                last_checkpoint = time.perf_counter()
            if self.on_epoch:
                self.on_epoch(self.strategy, self.fold.fold, epoch, cfg.epochs, logs)
            if stopping:
                break
        if cached:
            if state.get("best_weights"):
                model.load_weights(self.out / state["best_weights"])
            copy_trained_weights(model, full)  # the trained part goes into the full model, saved as usual
            model = full
        self._finish(model, state)
        return "trained"

    def _checkpoint(self, model: Any, state: dict[str, Any], epoch: int, best_weights: list[Any] | None) -> None:
        """Write best weights (if new), the model with its optimizer, then state.json naming both.

        state.json comes last and stale files go after it, so a kill or a full disk at any moment
        leaves a consistent set; a resume repeats the epochs since, with the same result.
        """
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
        atomic_write_text(self.out / "state.json", json.dumps(state, indent=1))
        keep = {name, state.get("best_weights")}
        for stale in [*self.out.glob("checkpoint-*"), *self.out.glob("best-*.weights.h5")]:
            if stale.name not in keep:
                stale.unlink(missing_ok=True)

    def _finish(self, model: Any, state: dict[str, Any]) -> None:
        if state.get("best_weights") and not state.get("frozen_feature_cache"):
            model.load_weights(self.out / state["best_weights"])
        predictions = self.predict(model)
        atomic_write_parquet(self.out / "predictions.parquet", predictions)
        _fit, validation, _test = split_fold(self.data, self.fold, self.config)
        atomic_write_parquet(self.out / VALIDATION_PREDICTIONS, predict_rows(model, self.data, validation, self.fold.fold,
                                                                             self.config))
        atomic_write_text(self.out / "history.csv", pd.DataFrame(state["history"]).to_csv(index=False))
        atomic_write(self.out / "model.keras", model.save)
        summary = {k: state[k] for k in ("best_epoch", "best_val_loss", "fit_images", "val_images")}
        summary["test_images"] = int(self.fold.test.sum())
        summary["epochs_run"] = len(state["history"])
        summary["keras_backend"] = state.get("keras_backend", "tensorflow")
        atomic_write_text(self.out / "summary.json", json.dumps(summary) + "\n")
        from cxrbio.data.duplicates import sha256_file

        freshness.write_stamp(self.run, self.expected, digest=sha256_file(self.out / "model.keras"), info=summary)
        self._clear()

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


#: A fold model's predictions on its inner validation patients (temperature scaling fits on them).
VALIDATION_PREDICTIONS = "validation.parquet"


def read_validation_predictions(run: RunDir, strategy: str, folds: list[int]) -> pd.DataFrame:
    """The fold models' predictions on the inner validation patients they early-stopped on (never a test fold).

    Written beside each model when its training finishes (temperature scaling fits on them).
    """
    return pd.concat([pd.read_parquet(fold_dir(run, strategy, f) / VALIDATION_PREDICTIONS) for f in folds],
                     ignore_index=True)


def feature_dataset(features: Any, indices: np.ndarray, labels: np.ndarray, batch_size: int, shuffle_seed: int | None) -> Any:
    """Batches of cached feature rows; shuffled with a per-epoch seed when training."""
    from cxrbio.runtime import backend

    if not backend.uses_tf_data():
        from cxrbio.data.batches import ArrayBatches

        return ArrayBatches(np.asarray(features), indices, labels, batch_size, shuffle_seed=shuffle_seed, channel=False)
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((np.asarray(indices, np.int64), np.asarray(labels, np.int32)))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(indices), seed=shuffle_seed, reshuffle_each_iteration=False)
    dataset = dataset.batch(batch_size).map(lambda i, y: (tf.gather(features, i), y), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def trained_folds(run: RunDir) -> dict[str, list[int]]:
    """Strategies with at least one completed fold (a stamp), and those folds."""
    return freshness.folds_by_strategy(run.root, "train_fold")


def fold_dir(run: RunDir, strategy: str, fold: int) -> Any:
    return run.path("train_fold", strategy=strategy, fold=fold)


def read_predictions(run: RunDir, strategy: str) -> pd.DataFrame:
    """Out-of-fold predictions of the strategy's completed folds."""
    folds = trained_folds(run).get(strategy, [])
    parts = [fold_dir(run, strategy, f) / "predictions.parquet" for f in folds]
    parts = [p for p in parts if p.is_file()]
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True) if parts else pd.DataFrame()


def register_fold_model(run: RunDir, config: Config, strategy: str, fold: int, model: Any) -> None:
    """Record ``model`` as the run's fold model without training it (a model.keras and a stamp).

    For benchmarks and tests of the stages after training, which need fold models but not good
    ones; ``summary.json`` says so (``registered: true``). It has no predictions, so the run's
    metrics cannot be computed from it.
    """
    from cxrbio.data.duplicates import sha256_file

    unit = {"strategy": strategy, "fold": fold}
    out = run.output(STAGE, "train_fold", **unit)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "model.keras", model.save)
    summary = {"registered": True}
    atomic_write_text(out / "summary.json", json.dumps(summary) + "\n")
    want = freshness.expected(run, "train_fold", config.model_dump(mode="json"), unit)
    freshness.write_stamp(run, want, digest=sha256_file(out / "model.keras"), info=summary)
