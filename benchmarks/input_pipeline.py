"""Input pipeline throughput: is data loading ever the bottleneck of training?

Prints images/s of cxrbio's tf.data pipeline (gather from the uint8 cache, cast, and the
study's random rotation+shift) beside a baseline measured in the same run: iterating
pre-made float32 tensors (tf.data from memory, batch, prefetch -- no gather, no
augmentation). Training MobileNetV2 runs at ~45 img/s (200 px, alpha 1.0) and ~350 img/s
(96 px, alpha 0.35) on a 2-core CPU, so the pipeline must stay far above those.

    uv run python benchmarks/input_pipeline.py [--images 2048] [--batch 32]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cxrbio.config import AugmentConfig  # noqa: E402
from cxrbio.data.input_pipeline import make_dataset  # noqa: E402


def images_per_second(dataset: tf.data.Dataset, epochs: int = 3) -> float:
    for _ in dataset.take(2):  # warm up tracing and autotuning
        pass
    count, start = 0, time.perf_counter()
    for _ in range(epochs):
        for x, _y in dataset:
            count += int(x.shape[0])
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'size':>5} {'pipeline (aug) img/s':>21} {'pipeline (no aug) img/s':>24} {'baseline img/s':>15} {'aug/baseline':>13}")
    for size in (96, 200):
        cache = rng.integers(0, 256, (args.images, size, size), dtype=np.uint8)
        labels = rng.integers(0, 7, args.images)
        indices = np.arange(args.images)
        augmented = images_per_second(make_dataset(cache, indices, labels, args.batch, True, AugmentConfig(), seed=0))
        plain = images_per_second(make_dataset(cache, indices, labels, args.batch, True, AugmentConfig(enabled=False), seed=0))
        tensors = (tf.data.Dataset.from_tensor_slices((cache[..., None].astype(np.float32), labels))
                   .batch(args.batch).prefetch(tf.data.AUTOTUNE))
        baseline = images_per_second(tensors)
        print(f"{size:>5} {augmented:>21.0f} {plain:>24.0f} {baseline:>15.0f} {augmented / baseline:>13.2f}")


if __name__ == "__main__":
    main()
