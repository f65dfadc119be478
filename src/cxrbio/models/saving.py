"""Loading cxrbio's saved networks: the one place that knows their custom layers.

A network trained on a non-TensorFlow backend carries the augmentation layer
(:class:`cxrbio.models.augment.RotateShift`); Keras finds a custom class only once its module
has registered it, so every ``.keras`` file cxrbio wrote is loaded through here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_model(path: str | Path, *, compile: bool = True) -> Any:
    import keras

    import cxrbio.models.augment  # noqa: F401  (registers RotateShift with Keras)

    return keras.models.load_model(path, compile=compile)
