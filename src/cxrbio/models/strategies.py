"""The study's three strategies as data: which weights a backbone starts from, which layers train.

* ``scratch``     -- random initialisation; every layer trains (BatchNorm learns its statistics);
* ``offshelf``    -- pretrained backbone, frozen, its BatchNorm in inference mode; the head trains;
* ``finetune-N``  -- pretrained; the top N blocks train (see :mod:`cxrbio.models.blocks`), the rest
  are frozen. BatchNorm layers inside the trained blocks stay in inference mode by default, as
  Keras's transfer-learning guide advises (small batches would wreck their ImageNet statistics);
  ``model.finetune_batchnorm: train`` lets them learn.

In Keras 3 a BatchNormalization layer with ``trainable = False`` runs in inference mode, so
freezing a layer is all that is needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cxrbio.errors import ConfigError
from cxrbio.models.blocks import N_BLOCKS, in_top_blocks

#: finetune-N trains the top N of MobileNetV2's 17 inverted-residual blocks (models/blocks.py).
MAX_FINETUNE_BLOCKS = N_BLOCKS
STRATEGY_PATTERN = re.compile(r"^(scratch|offshelf|finetune-(\d+))$")
ALLOWED = f"scratch, offshelf, finetune-N with 1 <= N <= {MAX_FINETUNE_BLOCKS}"


@dataclass(frozen=True)
class Strategy:
    name: str
    pretrained: bool
    trainable_blocks: int | None  # None: all (scratch); 0: none (offshelf)

    @classmethod
    def parse(cls, name: str) -> Strategy:
        match = STRATEGY_PATTERN.match(name)
        if not match:
            raise ConfigError(f"unknown strategy {name!r}.", fix=f"use {ALLOWED}.")
        if name == "scratch":
            return cls(name, pretrained=False, trainable_blocks=None)
        if name == "offshelf":
            return cls(name, pretrained=True, trainable_blocks=0)
        n = int(match.group(2))
        if not 1 <= n <= MAX_FINETUNE_BLOCKS:
            raise ConfigError(f"strategy {name!r}: N must be 1..{MAX_FINETUNE_BLOCKS}.")
        return cls(name, pretrained=True, trainable_blocks=n)


def apply_strategy(backbone: Any, strategy: Strategy, train_batchnorm: bool = False) -> None:
    """Set ``trainable`` on every backbone layer as the strategy says."""
    import keras

    if strategy.trainable_blocks is None:
        backbone.trainable = True
        return
    backbone.trainable = True  # then freeze layer by layer (Keras propagates Model.trainable)
    for layer in backbone.layers:
        train = strategy.trainable_blocks > 0 and in_top_blocks(layer.name, strategy.trainable_blocks)
        if isinstance(layer, keras.layers.BatchNormalization) and not train_batchnorm:
            train = False
        layer.trainable = train
