"""Where a pretrained backbone's weights come from.

* ``imagenet``  -- Keras's own download and cache (~/.keras/models); needs the internet once;
* a file path   -- a Keras weights file of a MobileNetV2 backbone of the same alpha
  (``.weights.h5`` from ``model.save_weights`` or Keras's ``*_no_top.h5``).

Transferring the backbone of an earlier cxrbio run (``run:RUN_DIR/STRATEGY``) comes with
``cxrbio train``. Unavailable weights raise :class:`WeightsUnavailable`, naming the remedies.
"""

from __future__ import annotations

from pathlib import Path

from cxrbio.errors import CxrbioError


class WeightsUnavailable(CxrbioError):
    """Pretrained weights cannot be had; pretrained strategies cannot run."""


def imagenet_file_name(alpha: float, size: int) -> str:
    rows = size if size in (96, 128, 160, 192, 224) else 224
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}_no_top.h5"


def load_backbone(image_size: int, alpha: float, weights: str | None):  # noqa: ANN201 - keras.Model
    """MobileNetV2 without top for (S, S, 3) input, with the requested weights (None: random)."""
    import keras

    def make(source: str | None):  # noqa: ANN202
        return keras.applications.MobileNetV2(
            input_shape=(image_size, image_size, 3), alpha=alpha, include_top=False, weights=source,
            name="mobilenetv2",
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
