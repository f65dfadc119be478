"""Where a pretrained backbone's weights come from.

* ``imagenet``  -- Keras's own download and cache (~/.keras/models); needs the internet once;
* a file path   -- a Keras weights file of a MobileNetV2 backbone of the same alpha
  (``.weights.h5`` from ``model.save_weights`` or Keras's ``*_no_top.h5``);
* ``run:RUN_DIR/STRATEGY[/fold-K]`` -- the backbone of a model trained by an earlier cxrbio run
  (fold 0 unless named), e.g. one trained from scratch on a large chest X-ray collection.

Unavailable weights raise :class:`WeightsUnavailable`, naming the remedies.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cxrbio.errors import CxrbioError
from cxrbio.models import saving
from cxrbio.models.layers import BACKBONE_LAYER
from cxrbio.run.fold_layout import model_file
from cxrbio.run.rundir import RunDir


class WeightsUnavailable(CxrbioError):
    """Pretrained weights cannot be had; pretrained strategies cannot run."""


def imagenet_file_name(alpha: float, size: int) -> str:
    rows = size if size in (96, 128, 160, 192, 224) else 224
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}_no_top.h5"


def load_backbone(image_size: int, alpha: float, weights: str | None) -> Any:  # a keras.Model
    """MobileNetV2 without top for (S, S, 3) input, with the requested weights (None: random)."""
    import keras

    def make(source: str | None) -> Any:
        with warnings.catch_warnings():
            # Keras warns that sizes other than 96-224 get the 224 weights: expected, since
            # convolution weights do not depend on the input size.
            warnings.filterwarnings("ignore", message=".*will be loaded as the default", category=UserWarning)
            return keras.applications.MobileNetV2(
                input_shape=(image_size, image_size, 3), alpha=alpha, include_top=False, weights=source,
                name=BACKBONE_LAYER,
            )

    if weights is None:
        return make(None)
    if weights == "imagenet":
        try:
            return make("imagenet")
        except Exception as error:  # keras raises a bare Exception for failed downloads
            raise WeightsUnavailable(
                f"ImageNet weights for MobileNetV2 (alpha {alpha}) could not be downloaded ({error}).",
                fix=(f"on a machine with internet, download {imagenet_file_name(alpha, image_size)} into "
                     "~/.keras/models/ and copy it here; or set model.weights to a weights file; or pass "
                     "--skip-unavailable to mark pretrained strategies as skipped."),
            ) from None
    if weights.startswith("run:"):
        return _backbone_from_run(weights, make)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsUnavailable(
            f"weights file {path} does not exist.",
            fix="set model.weights to 'imagenet' or to an existing MobileNetV2 weights file.",
        )
    backbone = make(None)
    try:
        backbone.load_weights(path)
    except Exception as error:  # shape mismatch, wrong file type
        raise WeightsUnavailable(
            f"weights file {path} does not fit MobileNetV2 with alpha {alpha} ({type(error).__name__}: {error}).",
            fix="use weights saved from a MobileNetV2 backbone of the same alpha (include_top=False).",
        ) from None
    return backbone


def weights_file(weights: str | None) -> Path | None:
    """The file a weights setting reads (a weights file, or the model of ``run:RUN_DIR/STRATEGY[/fold-K]``);
    None for random or ImageNet weights (Keras checks the downloaded file's hash itself)."""
    if weights is None or weights == "imagenet":
        return None
    if weights.startswith("run:"):
        spec = Path(weights[len("run:"):].rstrip("/"))
        fold = 0
        if spec.name.startswith("fold-") and spec.name[5:].isdigit():
            fold, spec = int(spec.name[5:]), spec.parent
        return model_file(RunDir(spec.parent), spec.name, fold)
    return Path(weights).expanduser()


def _backbone_from_run(source: str, make: Callable[[str | None], Any]) -> Any:
    """Copy the backbone weights of an earlier run's trained model into a fresh backbone."""
    model_path = weights_file(source)
    assert model_path is not None
    if not model_path.is_file():
        raise WeightsUnavailable(
            f"{source}: no trained model at {model_path}.",
            fix="name a finished run and strategy as run:RUN_DIR/STRATEGY (optionally /fold-K); "
            "train it first with cxrbio train.",
        )
    trained = saving.load_model(model_path).get_layer(BACKBONE_LAYER)
    backbone = make(None)
    try:
        backbone.set_weights(trained.get_weights())
    except ValueError as error:
        raise WeightsUnavailable(
            f"{source}: its backbone does not fit this one ({error}).",
            fix="use the same model.alpha as the run the weights come from.",
        ) from None
    return backbone
