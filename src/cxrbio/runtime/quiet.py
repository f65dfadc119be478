"""Keep native libraries' start-up chatter out of cxrbio's output, without hiding real errors.

TensorFlow 2.21 prints oneDNN/CUDA notices to file descriptor 2 before its logging is
configured, so TF_CPP_MIN_LOG_LEVEL cannot silence them. While TensorFlow initialises
(:func:`cxrbio.runtime.backend.initialise_tensorflow`) descriptor 2 goes to a temporary file; if
initialisation fails, what it wrote is replayed. This module knows nothing of Keras backends.
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


class ExpectedRetracing(logging.Filter):
    """cxrbio loads one model per fold: one trace each is expected, and TensorFlow's advice is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()
