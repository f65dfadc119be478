"""Keep TensorFlow's C++ start-up chatter out of cxrbio's output, without hiding real errors.

TensorFlow 2.21 prints oneDNN/CUDA notices to file descriptor 2 before its logging is
configured, so TF_CPP_MIN_LOG_LEVEL cannot silence them. While TensorFlow initialises we send
descriptor 2 to a temporary file; if initialisation fails, what it wrote is replayed.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def native_stderr_captured() -> Iterator[None]:
    """Send fd 2 to a temp file inside the block; replay it if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                sink.seek(0)
                sys.stderr.write(sink.read().decode("utf-8", errors="replace"))


class _ExpectedRetracing(logging.Filter):
    """cxrbio loads one model per fold: one trace each is expected, and TensorFlow's advice is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def initialise_tensorflow() -> None:
    """Import TensorFlow and touch its devices once, quietly (later calls cost nothing).

    Nothing on another Keras backend (``KERAS_BACKEND=jax``): those processes never import TensorFlow.
    """
    from cxrbio.backend import TENSORFLOW, configured_name

    if configured_name() != TENSORFLOW:
        return
    tf_logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _ExpectedRetracing) for f in tf_logger.filters):
        tf_logger.addFilter(_ExpectedRetracing())
    if os.environ.get("CXRBIO_TF_VERBOSE"):
        import tensorflow as tf

        tf.config.list_physical_devices()
        return
    with native_stderr_captured():
        import tensorflow as tf

        tf.config.list_physical_devices()
