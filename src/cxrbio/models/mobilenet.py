"""MobileNetV2 + the study's head.

Input: grey images (S, S, 1) in 0..255, as the input pipeline yields them. The model
repeats grey to three channels and applies MobileNetV2's own preprocessing (x / 127.5 - 1),
then backbone -> GlobalAveragePooling2D -> Dense(2500, relu) -> BatchNormalization ->
Dropout(0.5) -> Dense(classes, softmax). The GAP output is the embedding later stages export
(layer name ``gap``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cxrbio.models.layers import (
    BACKBONE_LAYER,
    GAP_LAYER,
    GREY_TO_RGB_LAYER,
    HEAD_BN,
    HEAD_DENSE,
    HEAD_DROPOUT,
    HEAD_LAYERS,
    HEAD_OUTPUT,
    INPUT_LAYER,
    PREPROCESS_LAYER,
)
from cxrbio.models.strategies import Strategy, apply_strategy
from cxrbio.models.weights import load_backbone

if TYPE_CHECKING:
    from cxrbio.config import ModelConfig

__all__ = ["BACKBONE_LAYER", "GAP_LAYER", "HEAD_LAYERS", "PREPROCESS_LAYER", "build_model"]


def build_model(
    num_classes: int,
    image_size: int,
    model_config: ModelConfig,
    strategy: Strategy,
    seed: int = 0,
    *,
    augment: Any = None,
) -> Any:
    """A compiled-ready keras.Model for one strategy (not compiled: training chooses the optimizer).

    ``augment`` (an AugmentConfig): put the study's rotation + shift inside the model, right after
    its input, active only while training (:mod:`cxrbio.models.augment`; the non-TensorFlow
    backends' way to augment). None: the input pipeline augments (tf.data) or nothing does.
    """
    import keras

    keras.utils.set_random_seed(seed)
    backbone = load_backbone(image_size, model_config.alpha, model_config.weights if strategy.pretrained else None)
    apply_strategy(backbone, strategy, train_batchnorm=model_config.finetune_batchnorm == "train")
    if model_config.batchnorm_momentum is not None:  # also the head's, below
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = model_config.batchnorm_momentum
    inputs = keras.Input((image_size, image_size, 1), name=INPUT_LAYER)
    x = inputs
    if augment is not None:
        from cxrbio.models.augment import rotate_shift

        x = rotate_shift(augment, seed=seed)(x)
    x = keras.layers.Concatenate(name=GREY_TO_RGB_LAYER)([x, x, x])
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name=PREPROCESS_LAYER)(x)
    x = backbone(x)
    x = keras.layers.GlobalAveragePooling2D(name=GAP_LAYER)(x)
    x = keras.layers.Dense(model_config.dense_units, activation="relu", name=HEAD_DENSE)(x)
    head_momentum = model_config.batchnorm_momentum if model_config.batchnorm_momentum is not None else 0.99
    x = keras.layers.BatchNormalization(momentum=head_momentum, name=HEAD_BN)(x)
    x = keras.layers.Dropout(model_config.dropout, name=HEAD_DROPOUT)(x)
    # float32 output even under mixed precision, for a numerically sound softmax and loss.
    outputs = keras.layers.Dense(num_classes, activation="softmax", name=HEAD_OUTPUT, dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"cxrbio_{strategy.name}")
