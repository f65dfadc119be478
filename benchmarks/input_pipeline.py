"""Input pipeline throughput: is data loading ever the bottleneck of training?

Prints images/s of cxrbio's tf.data pipeline (gather from the uint8 cache, cast, and the
study's random rotation+shift) beside a baseline measured in the same run: iterating
pre-made float32 tensors (tf.data from memory, batch, prefetch -- no gather, no
augmentation). Training MobileNetV2 runs at ~45 img/s (200 px, alpha 1.0) and ~350 img/s
(96 px, alpha 0.35) on a 2-core CPU, so the pipeline must stay far above those.

The pipeline with augmentation and the baseline run in ``--pairs`` interleaved pairs per size;
the ratio is their median with its range (benchmarks/paired.py).

    uv run python benchmarks/input_pipeline.py [--images 2048] [--batch 32] [--pairs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from paired import interleaved  # noqa: E402

from cxrbio.config import AugmentConfig  # noqa: E402
from cxrbio.data.input_pipeline import make_dataset  # noqa: E402


def seconds_per_pass(dataset: tf.data.Dataset, epochs: int = 3) -> float:
    """Seconds to iterate ``epochs`` passes, after a warm-up (tracing and autotuning)."""
    for _ in dataset.take(2):
        pass
    start = time.perf_counter()
    for _ in range(epochs):
        for _x, _y in dataset:
            pass
    return (time.perf_counter() - start) / epochs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--pairs", type=int, default=3, help="interleaved baseline/pipeline pairs per size")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'size':>5} {'pipeline (aug) img/s':>21} {'pipeline (no aug) img/s':>24} {'baseline img/s':>15}  aug/baseline")
    for size in (96, 200):
        cache = rng.integers(0, 256, (args.images, size, size), dtype=np.uint8)
        labels = rng.integers(0, 7, args.images)
        indices = np.arange(args.images)
        augmented = make_dataset(cache, indices, labels, args.batch, True, AugmentConfig(), seed=0)
        plain = make_dataset(cache, indices, labels, args.batch, True, AugmentConfig(enabled=False), seed=0)
        tensors = (tf.data.Dataset.from_tensor_slices((cache[..., None].astype(np.float32), labels))
                   .batch(args.batch).prefetch(tf.data.AUTOTUNE))
        times = interleaved(lambda d=tensors: seconds_per_pass(d), lambda d=augmented: seconds_per_pass(d), pairs=args.pairs,
                            progress=lambda line: None)
        plain_rate = args.images / seconds_per_pass(plain)
        aug_rate = args.images / statistics.median(times.variant)
        base_rate = args.images / statistics.median(times.baseline)
        print(f"{size:>5} {aug_rate:>21.0f} {plain_rate:>24.0f} {base_rate:>15.0f}  {times.describe('')[2:]}")

if __name__ == "__main__":
    main()
