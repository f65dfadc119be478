"""Embedding export: images/s against a bare ``model.predict``, and peak memory of ``cxrbio embed``.

Builds a run of phantom images at the study's 200 px with one fold model (MobileNetV2,
alpha 1.0, random weights: speed does not depend on them), then, in one run:

* peak resident memory of ``cxrbio embed RUN`` in a fresh process (the whole command:
  TensorFlow, the model, the memory-mapped image cache, streaming Parquet output);
* images/s of ``stages.embed.run`` (reads batches from the memory-mapped cache, writes Parquet)
  against a bare ``predict`` of the same GAP model on the same images held as one in-memory
  float32 tensor, same batch size, in ``--pairs`` interleaved pairs (median ratio and range:
  benchmarks/paired.py). The one-off decoding into the image cache is timed apart.

    uv run python benchmarks/embed_throughput.py [--images 4000] [--size 200] [--alpha 1.0] [--pairs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from paired import interleaved

from cxrbio.models import saving

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pairs", type=int, default=3, help="interleaved baseline/variant pairs")
    args = parser.parse_args()

    import numpy as np

    from cxrbio.config import load_config
    from cxrbio.data.phantom import generate_phantom
    from cxrbio.run.rundir import RunDir
    from cxrbio.stages import embed, scan

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        started = time.perf_counter()
        generate_phantom(tmp / "phantom", per_class=max(1, args.images // 7), size=args.size, seed=5)
        config = load_config(None, {"data.image_size": args.size, "folds.k": 2, "model.alpha": args.alpha,
                                    "model.batchnorm_momentum": 0.01, "train.batch_size": args.batch_size,
                                    "data.cache": "disk"})
        scan.run(tmp / "run", data=tmp / "phantom", config=config)
        run = RunDir(tmp / "run")
        print(f"setup (phantom + scan): {time.perf_counter() - started:.0f} s", flush=True)

        from cxrbio.models.mobilenet import build_model
        from cxrbio.models.strategies import Strategy
        from cxrbio.run.fold_files import register_fold_model
        from cxrbio.training.data import load_training_data

        model = build_model(7, args.size, config.model, Strategy.parse("scratch"), seed=0)
        model(np.random.default_rng(0).uniform(0, 255, (8, args.size, args.size, 1)).astype(np.float32), training=True)
        register_fold_model(run, config, "scratch", 0, model)
        fold_dir = run.path("train_fold", strategy="scratch", fold=0)

        started = time.perf_counter()
        data = load_training_data(run, config, cache="disk")
        cache_seconds = time.perf_counter() - started
        n = len(data.manifest)

        # Peak memory of the real command, in its own process (measured by a parent that has no other child).
        command = [str(Path(sys.executable).with_name("cxrbio")), "embed", str(run.root), "--strategies", "scratch"]
        probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        started = time.perf_counter()
        peak_kib = int(subprocess.run([sys.executable, "-c", probe, *command], check=True, capture_output=True,
                                      text=True).stdout.split()[-1])
        command_seconds = time.perf_counter() - started
        peak_mib = peak_kib / 1024


        from cxrbio.features.embedding import embedding_model

        gap = embedding_model(saving.load_model(fold_dir / "model.keras", compile=False))
        tensor = np.asarray(data.images, dtype=np.float32)[..., None]
        gap.predict(tensor[: args.batch_size * 2], batch_size=args.batch_size, verbose=0)  # trace once
        times = interleaved(lambda: gap.predict(tensor, batch_size=args.batch_size, verbose=0),
                            lambda: embed.run(run.root, strategies=["scratch"], force=True), pairs=args.pairs)
        bare_seconds, ours_seconds = statistics.median(times.baseline), statistics.median(times.variant)

    print(f"{n} images at {args.size} px, MobileNetV2 alpha {args.alpha}, batch {args.batch_size}, one fold")
    print(f"image cache (decode + letterbox, once per run): {cache_seconds:.1f} s")
    print(f"bare model.predict (in-memory tensor), median of pairs: {n / bare_seconds:7.1f} img/s ({bare_seconds:.1f} s)")
    print(f"cxrbio embed stage (memmap + Parquet), median of pairs: {n / ours_seconds:7.1f} img/s ({ours_seconds:.1f} s)")
    print(times.describe("ratio bare time / embed stage time (>= 0.9 wanted)"))
    print(f"'cxrbio embed' command: {command_seconds:.1f} s wall, peak memory {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
