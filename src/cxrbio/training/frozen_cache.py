"""The frozen-feature cache: a pretrained strategy's frozen part run once, its trainable part per epoch.

With ``train.augment_frozen: false`` the frozen part's outputs of every image (no augmentation)
are computed once per run and kept in the run's cache, keyed by the images, the size, the
width, the weights file's content and the cut; only the head (and any trainable blocks) trains
per epoch, on batches of those rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cxrbio.config import Config
from cxrbio.models.surgery import split_layer
from cxrbio.models.weights import weights_file
from cxrbio.run.caches import cached_array, frozen_features_file
from cxrbio.run.digests import file_digest
from cxrbio.run.rundir import RunDir
from cxrbio.training.data import TrainingData


def uses_feature_cache(config: Config, strategy: str) -> bool:
    """Frozen-feature caching applies to the pretrained strategies when augment_frozen is false."""
    from cxrbio.models.strategies import Strategy

    return not config.train.augment_frozen and Strategy.parse(strategy).pretrained


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
    everything = np.arange(len(data.manifest))

    def compute() -> np.ndarray:
        features = frozen.predict(make_dataset(data.images, everything, data.y, 64, training=False), verbose=0)
        return np.asarray(features, dtype=np.float32)

    return cached_array(frozen_features_file(run.cache, tag, key.hexdigest()[:16]), compute)


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
