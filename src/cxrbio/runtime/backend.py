"""Which Keras backend runs the networks, and what follows from it.

cxrbio's model code is Keras 3 and runs on TensorFlow (the default) or JAX (``KERAS_BACKEND=jax``,
``uv sync --extra jax``). What differs:

* **input pipeline**: TensorFlow trains from tf.data with the augmentation in the pipeline
  (:mod:`cxrbio.data.input_pipeline`; measured faster on CPU); other backends train from
  ``keras.utils.PyDataset`` batches of the uint8 image cache (:mod:`cxrbio.data.batches`) with the
  augmentation inside the model (:mod:`cxrbio.models.augment`). Neither path imports the other's
  framework.
* **device set-up**: op determinism, threads and the mixed-precision choice per backend.
* **resume**: an interrupted fold's ``state.json`` records the backend, and a fold is never
  resumed on the other one (its model's first layer differs); the finished ``model.keras`` is
  the same network on both and its stamp does not depend on the backend.
* **attribution**: SHAP's DeepExplainer needs TensorFlow (or PyTorch); on JAX ``cxrbio analyze``
  says so. Saved models (``.keras``) load on either backend, so a run trained on a JAX machine
  is analysed where TensorFlow is installed.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from cxrbio.runtime.quiet import ExpectedRetracing, native_stderr_captured

TENSORFLOW = "tensorflow"


def name() -> str:
    """The active Keras backend ('tensorflow', 'jax', 'torch', ...)."""
    import keras

    return str(keras.backend.backend())


def configured_name() -> str:
    """The backend Keras will choose, read the way Keras reads it, without importing Keras or TensorFlow.

    ``KERAS_BACKEND`` first, then ``backend`` in ``$KERAS_HOME/keras.json`` (``~/.keras``), else TensorFlow.
    """
    import json
    from pathlib import Path

    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    try:
        return str(json.loads((home / "keras.json").read_text()).get("backend", TENSORFLOW))
    except (OSError, ValueError, AttributeError):
        return TENSORFLOW


def uses_tf_data() -> bool:
    return name() == TENSORFLOW


def augments_in_model() -> bool:
    """True where the augmentation is a layer of the training model rather than of the input pipeline."""
    return not uses_tf_data()


def has_gpu() -> bool:
    active = name()
    if active == TENSORFLOW:
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if active == "jax":
        import jax

        return any(d.platform in ("gpu", "cuda", "rocm") for d in jax.devices())
    if active == "torch":
        import torch

        return bool(torch.cuda.is_available())
    return False


def configure(config: Any) -> None:
    """Determinism and the mixed-precision policy for a training process (``config``: a cxrbio Config)."""
    import keras

    active = name()
    if active == TENSORFLOW:
        initialise_tensorflow()
        import tensorflow as tf

        if config.train.deterministic:
            tf.config.experimental.enable_op_determinism()
    elif active == "jax" and config.train.deterministic:
        # XLA's GPU kernels are deterministic with this flag; on CPU they already are. It must be set
        # before JAX compiles anything, so a process that wants it sets it early (benchmarks do).
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_gpu_deterministic_ops" not in flags:
            os.environ["XLA_FLAGS"] = (flags + " --xla_gpu_deterministic_ops=true").strip()
    mode = config.train.mixed_precision
    mixed = mode == "on" or (mode == "auto" and has_gpu())
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")


def limit_threads() -> None:
    """One thread per op in a training task of a multi-process executor (each task gets one core)."""
    if name() == TENSORFLOW:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    # JAX/XLA sizes its CPU thread pool when it starts; a task sets XLA_FLAGS before that if it must.


def initialise_tensorflow() -> None:
    """Import TensorFlow and touch its devices once, quietly (later calls cost nothing).

    Nothing on another Keras backend (``KERAS_BACKEND=jax``): those processes never import TensorFlow.
    """
    if configured_name() != TENSORFLOW:
        return
    tf_logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, ExpectedRetracing) for f in tf_logger.filters):
        tf_logger.addFilter(ExpectedRetracing())
    if os.environ.get("CXRBIO_TF_VERBOSE"):
        import tensorflow as tf

        tf.config.list_physical_devices()
        return
    with native_stderr_captured():
        import tensorflow as tf

        tf.config.list_physical_devices()
