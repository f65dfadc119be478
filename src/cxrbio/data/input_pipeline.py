"""The training input pipeline: decode and letterbox once, augment on the fly in TensorFlow (tf.data).

Images are decoded, letterboxed and stored as one uint8 array per run (in memory, or a
memory-mapped ``.npy`` under RUN_DIR/cache for data sets larger than RAM). Training then
runs on tensors only: indices are shuffled, batched, gathered from the cache, and every
batch gets one random rotation+shift per image in a single projective resampling (one
interpolation, not two). No Python runs per image in the training loop.

Batches are ``(images, labels)``: float32 ``(B, S, S, 1)`` in 0..255 and int32 class indices;
the model's own preprocessing layer maps grey to three channels and to its input range.
On the other Keras backends :func:`make_dataset` hands out the same batches from
:mod:`cxrbio.data.batches` instead (no TensorFlow), and the model augments.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbio.config import AugmentConfig
from cxrbio.data.imageio import read_image
from cxrbio.data.manifest import ProgressCallback, iter_images, map_images
from cxrbio.data.preprocess import letterbox
from cxrbio.run.caches import cached_table, image_cache_file


def load_letterboxed(job: tuple[str, int]) -> np.ndarray:
    path, size = job
    pixels, _geometry = letterbox(read_image(path).pixels, size)
    return pixels


def cache_key(manifest: pd.DataFrame, size: int) -> str:
    """Changes whenever an image's bytes, the image list or the size change."""
    digest = hashlib.sha256(str(size).encode())
    for image_id, sha in zip(manifest["image_id"], manifest["sha256"].fillna("")):
        digest.update(f"{image_id}:{sha};".encode())
    return digest.hexdigest()[:16]


def build_image_cache(
    manifest: pd.DataFrame,
    size: int,
    cache: str = "memory",
    cache_dir: Path | None = None,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """uint8 array (N, size, size), row i = manifest row i, letterboxed on black.

    ``cache='disk'`` streams each image into a memory-mapped ``.npy`` as it is decoded, so
    building it holds one chunk of images in memory, not the data set.
    """
    paths = manifest["path"].tolist()
    if cache != "disk":
        if not len(manifest):
            return np.zeros((0, size, size), np.uint8)
        return np.stack(map_images(load_letterboxed, paths, size, workers, progress))
    if cache_dir is None:
        raise ValueError("a disk cache needs a cache_dir")

    def write(tmp: Path) -> None:
        table = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), size, size))
        for i, pixels in enumerate(iter_images(load_letterboxed, paths, size, workers, progress)):
            table[i] = pixels
        table.flush()
        del table

    return cached_table(image_cache_file(cache_dir, size, cache_key(manifest, size)), write)


def augmentation_transforms(batch: int, size: int, config: AugmentConfig, seed: Any) -> Any:
    """Projective transforms (B, 8) for random rotation +-rotation_degrees and shift +-shift px.

    The shift is given at ``reference_size`` (200 px in the study) and scaled to ``size``.
    Output pixel (x, y) samples the input at R(p - c - t) + c: rotation about the centre c,
    then translation t.
    """
    import tensorflow as tf

    angle_seed, shift_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    max_angle, max_shift = augmentation_bounds(config.rotation_degrees, config.shift_pixels, config.reference_size, size)
    angles = tf.random.stateless_uniform([batch], angle_seed, -max_angle, max_angle)
    shifts = tf.random.stateless_uniform([batch, 2], shift_seed, -max_shift, max_shift)
    return transforms_for(angles, shifts[:, 0], shifts[:, 1], size)


def augmentation_bounds(rotation_degrees: float, shift_pixels: float, reference_size: int,
                        size: int) -> tuple[float, float]:
    """(largest angle in radians, largest shift in px at ``size``): the shift is given at ``reference_size``."""
    return rotation_degrees * math.pi / 180.0, shift_pixels * size / reference_size


def projective_rows(angles: Any, shift_x: Any, shift_y: Any, size: int, ops: Any) -> Any:
    """(B, 8) projective rows: output pixel p samples the input at R(p - c - t) + c.

    ``ops``: any namespace with cos, sin, zeros_like and stack (``tensorflow`` for the tf.data path,
    ``keras.ops`` for the in-model layer of :mod:`cxrbio.models.augment`): one matrix for both.
    """
    c = (size - 1) / 2.0
    cos, sin = ops.cos(angles), ops.sin(angles)
    a2 = c - cos * (c + shift_x) - sin * (c + shift_y)
    b2 = c + sin * (c + shift_x) - cos * (c + shift_y)
    zeros = ops.zeros_like(angles)
    return ops.stack([cos, sin, a2, -sin, cos, b2, zeros, zeros], axis=1)


def transforms_for(angles: Any, shift_x: Any, shift_y: Any, size: int) -> Any:
    import tensorflow as tf

    angles, shift_x, shift_y = (tf.cast(t, tf.float32) for t in (angles, shift_x, shift_y))
    return projective_rows(angles, shift_x, shift_y, size, tf)


def apply_transforms(images: Any, transforms: Any) -> Any:
    import tensorflow as tf

    size = tf.shape(images)[1:3]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=size, fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT",
    )


def make_dataset(
    images: np.ndarray,
    indices: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    training: bool,
    augment: AugmentConfig | None = None,
    seed: int = 0,
) -> Any:
    """Batches of (images, labels) for the rows ``indices`` of the cache, for the active Keras backend.

    On TensorFlow a tf.data.Dataset: ``training`` shuffles (reshuffled every epoch) and augments
    when ``augment.enabled``; evaluation keeps the order of ``indices`` and never augments.
    Deterministic per seed. On other backends a :class:`cxrbio.data.batches.ArrayBatches`
    (shuffled per seed when training); the augmentation is then the model's own layer
    (:mod:`cxrbio.models.augment`), so ``augment`` is not applied here.
    """
    from cxrbio.runtime import backend

    if not backend.uses_tf_data():
        from cxrbio.data.batches import ArrayBatches

        return ArrayBatches(images, indices, labels, batch_size, shuffle_seed=seed if training else None)
    import tensorflow as tf

    indices = np.asarray(indices, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int32)
    if len(indices) != len(labels):
        raise ValueError("indices and labels differ in length")
    size = int(images.shape[1])
    dataset = tf.data.Dataset.from_tensor_slices((indices, labels))
    if training:
        dataset = dataset.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)

    if isinstance(images, tf.Tensor):  # a table built once by the caller, reused every epoch
        table = images

        def gather(idx: Any, y: Any) -> Any:
            return tf.gather(table, idx), y
    elif isinstance(images, np.memmap):  # disk cache: read each batch's rows from the file
        def gather(idx: Any, y: Any) -> Any:
            batch = tf.numpy_function(lambda i: np.asarray(images[np.asarray(i)]), [idx], tf.uint8)
            return tf.ensure_shape(batch, [None, size, size]), y
    else:
        table = tf.constant(np.asarray(images))

        def gather(idx: Any, y: Any) -> Any:
            return tf.gather(table, idx), y

    dataset = dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE)

    def to_float(x: Any, y: Any) -> Any:
        return tf.cast(x, tf.float32)[..., None], y

    dataset = dataset.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    if training and augment is not None and augment.enabled:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip(dataset, seeds)

        def augment_batch(batch: Any, seed_pair: Any) -> Any:
            x, y = batch
            transforms = augmentation_transforms(tf.shape(x)[0], size, augment, seed_pair)
            return apply_transforms(x, transforms), y

        dataset = dataset.map(augment_batch, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
