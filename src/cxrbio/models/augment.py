"""The study's augmentation as a layer of the model, for backends without tf.data.

On TensorFlow, cxrbio augments in its tf.data pipeline (:mod:`cxrbio.data.input_pipeline`). On JAX (or
any other Keras backend) the batches are plain uint8 arrays from the image cache
(:mod:`cxrbio.data.batches`) and this layer, placed right after the model's input, does the
same thing on the device: one combined transform per image (rotation up to
``rotation_degrees`` about the centre, then a shift up to ``shift_pixels`` at
``reference_size``, scaled to the image size), one bilinear resampling, constant fill 0 (black,
as the letterbox; Keras's RandomRotation/RandomTranslation default to ``reflect``, which would
copy image content into the padding). It is active only while training: inference, embedding,
saliency and the frozen-feature cache see the image unchanged.

Its random state is a ``SeedGenerator``, which :func:`cxrbio.models.surgery.reseed_generators` sets at
the start of every epoch, so a resumed fold draws the same transforms as an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import keras

from cxrbio.data.input_pipeline import augmentation_bounds, projective_rows
from cxrbio.models.layers import AUGMENT_LAYER


def transform_rows(angles: Any, shift_x: Any, shift_y: Any, size: int) -> Any:
    """(B, 8) projective rows in backend-neutral ops: :func:`cxrbio.data.input_pipeline.projective_rows`."""
    return projective_rows(angles, shift_x, shift_y, size, keras.ops)


@keras.saving.register_keras_serializable(package="cxrbio")
class RotateShift(keras.layers.Layer):
    """Random rotation + shift of (B, S, S, C) images while training; the identity otherwise."""

    def __init__(self, rotation_degrees: float, shift_pixels: float, reference_size: int, seed: int | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("name", AUGMENT_LAYER)
        super().__init__(**kwargs)
        self.rotation_degrees = float(rotation_degrees)
        self.shift_pixels = float(shift_pixels)
        self.reference_size = int(reference_size)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images: Any, training: bool | None = None) -> Any:
        if not training:
            return images
        ops = keras.ops
        batch, size = ops.shape(images)[0], int(images.shape[1])
        max_angle, max_shift = augmentation_bounds(self.rotation_degrees, self.shift_pixels, self.reference_size, size)
        angles = keras.random.uniform((batch,), -max_angle, max_angle, seed=self.seed_generator)
        shifts = keras.random.uniform((batch, 2), -max_shift, max_shift, seed=self.seed_generator)
        rows = transform_rows(angles, shifts[:, 0], shifts[:, 1], size)
        out = ops.image.affine_transform(ops.cast(images, "float32"), rows, interpolation="bilinear",
                                         fill_mode="constant", fill_value=0, data_format="channels_last")
        return ops.cast(out, images.dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return super().get_config() | {"rotation_degrees": self.rotation_degrees, "shift_pixels": self.shift_pixels,
                                       "reference_size": self.reference_size, "seed": self.seed}


def rotate_shift(config: Any, seed: int | None = None) -> RotateShift:
    """The layer for an :class:`cxrbio.config.AugmentConfig`."""
    return RotateShift(config.rotation_degrees, config.shift_pixels, config.reference_size, seed=seed)
