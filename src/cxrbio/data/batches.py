"""Training and inference batches without TensorFlow: ``keras.utils.PyDataset`` over the image cache.

The non-TensorFlow backends (JAX) read batches of rows straight from the run's uint8 image cache
(in memory or memory-mapped, :func:`cxrbio.data.input_pipeline.build_image_cache`) and hand the model
float32 ``(B, S, S, 1)`` in 0..255, exactly what the tf.data path gives; the augmentation is a
layer of the model (:mod:`cxrbio.models.augment`), so no per-image Python runs here. A training
set is shuffled once per epoch from a seed (a new object per epoch, as the tf.data path), so an
epoch is a pure function of its seed and a resumed fold repeats it exactly.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np


class ArrayBatches(keras.utils.PyDataset):
    """(rows of ``table`` as float32, labels) batches for ``indices``; shuffled when ``shuffle_seed`` is given.

    ``channel``: add a trailing axis (images); feature tables (the frozen-feature cache) keep their shape.
    """

    def __init__(self, table: Any, indices: np.ndarray, labels: np.ndarray, batch_size: int, *,
                 shuffle_seed: int | None = None, channel: bool = True) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        indices = np.asarray(indices, dtype=np.int64)
        labels = np.asarray(labels, dtype=np.int32)
        if len(indices) != len(labels):
            raise ValueError("indices and labels differ in length")
        if shuffle_seed is not None:
            order = np.random.default_rng(shuffle_seed).permutation(len(indices))
            indices, labels = indices[order], labels[order]
        self.table, self.indices, self.labels = table, indices, labels
        self.batch_size, self.channel = int(batch_size), channel

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if index < 0 or index >= len(self):
            raise IndexError(index)
        part = slice(index * self.batch_size, (index + 1) * self.batch_size)
        rows = self.indices[part]
        order = np.argsort(rows, kind="stable")  # sorted reads from a memory map, then back to batch order
        batch = np.empty((len(rows), *self.table.shape[1:]), np.float32)
        batch[order] = np.asarray(self.table[rows[order]], dtype=np.float32)
        if self.channel:
            batch = batch[..., None]
        return batch, self.labels[part]
