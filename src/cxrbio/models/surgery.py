"""Model surgery: a trained model cut into its frozen and trainable parts, weights copied back, RNGs reseeded.

A pretrained strategy with the frozen-feature cache trains only the part above its frozen
blocks, on that part's inputs computed once (:mod:`cxrbio.training.frozen_cache`); the trained
weights then go back into the full model, which is what is saved. Every epoch reseeds the
model's SeedGenerators (Keras does not save RNG state), so a resumed epoch repeats its draw.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cxrbio.models.layers import BACKBONE_LAYER, GAP_LAYER, HEAD_LAYERS, PREPROCESS_LAYER


def reseed_generators(model: Any, seed: int) -> None:
    """Set every SeedGenerator of the model (dropout, ...) to a state derived from ``seed``."""
    from keras.random import SeedGenerator

    generators: list[Any] = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        generators.extend(v for v in vars(layer).values() if isinstance(v, SeedGenerator))
    for i, generator in enumerate(generators):
        state = generator.state
        state.assign(np.array([(seed + 104729 * (i + 1)) % (2**31 - 1), 0], dtype=state.dtype))


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
