"""MobileNetV2 + the study's head.

Input: grey images (S, S, 1) in 0..255, as the input pipeline yields them. The model
repeats grey to three channels and applies MobileNetV2's own preprocessing (x / 127.5 - 1),
then backbone -> GlobalAveragePooling2D -> Dense(2500, relu) -> BatchNormalization ->
Dropout(0.5) -> Dense(classes, softmax). The GAP output is the embedding later stages export
(layer name ``gap``).
"""

from __future__ import annotations

from cxrbio.config import ModelConfig
from cxrbio.models.strategies import Strategy, apply_strategy
from cxrbio.models.weights import load_backbone

GAP_LAYER = "gap"
BACKBONE_LAYER = "mobilenetv2"


def build_model(
    num_classes: int,
    image_size: int,
    model_config: ModelConfig,
    strategy: Strategy,
    seed: int = 0,
):
    """A compiled-ready keras.Model for one strategy (not compiled: training chooses the optimizer)."""
    import keras

    keras.utils.set_random_seed(seed)
    backbone = load_backbone(image_size, model_config.alpha, model_config.weights if strategy.pretrained else None)
    apply_strategy(backbone, strategy, train_batchnorm=model_config.finetune_batchnorm == "train")
    if model_config.batchnorm_momentum is not None:  # also the head's, below
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = model_config.batchnorm_momentum
    inputs = keras.Input((image_size, image_size, 1), name="image")
    x = keras.layers.Concatenate(name="grey_to_rgb")([inputs, inputs, inputs])
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="mobilenet_preprocess")(x)
    x = backbone(x)
    x = keras.layers.GlobalAveragePooling2D(name=GAP_LAYER)(x)
    x = keras.layers.Dense(model_config.dense_units, activation="relu", name="head_dense")(x)
    head_momentum = model_config.batchnorm_momentum if model_config.batchnorm_momentum is not None else 0.99
    x = keras.layers.BatchNormalization(momentum=head_momentum, name="head_bn")(x)
    x = keras.layers.Dropout(model_config.dropout, name="head_dropout")(x)
    # float32 output even under mixed precision, for a numerically sound softmax and loss.
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="head_softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"cxrbio_{strategy.name}")
