"""Training throughput of cxrbio against a bare ``model.fit`` on in-memory tensors.

Both train the same model (MobileNetV2 + the study's head, from scratch) with the same batch
on the same images, in this process. cxrbio's figure is wall time per epoch between the ends
of consecutive epochs: fitting with on-the-fly augmentation, the validation pass and the
per-epoch checkpoint -- everything ``cxrbio train`` does per epoch. The baseline is
``model.fit(x, y)`` on float32 arrays without validation, augmentation or checkpoints (after
one warm-up epoch, like cxrbio's first). The two run in ``--pairs`` interleaved pairs, each a
fresh model; the figure is the median ratio and its range (benchmarks/paired.py).

    uv run python benchmarks/train_throughput.py [--size 200] [--alpha 1.0] [--images 600] [--epochs 4] [--pairs 3]

Bar (issue 3): cxrbio / bare >= 0.90.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from paired import interleaved

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--images", type=int, default=600, help="phantom images in all (per class = images / 7)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--pairs", type=int, default=3, help="interleaved baseline/variant pairs")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from cxrbio.config import load_config
    from cxrbio.data.phantom import generate_phantom
    from cxrbio.models.mobilenet import build_model
    from cxrbio.models.strategies import Strategy
    from cxrbio.run import freshness
    from cxrbio.run.rundir import RunDir
    from cxrbio.runtime import backend
    from cxrbio.stages import scan
    from cxrbio.training.data import load_training_data, make_optimizer, split_fold
    from cxrbio.training.fold_trainer import FoldTrainer

    config = load_config(None, {
        "data.image_size": args.size, "folds.k": 2, "model.alpha": args.alpha, "train.batch_size": args.batch,
        "train.epochs": args.epochs, "train.early_stopping_patience": 0, "train.strategies": ["scratch"],
        "train.deterministic": False,
    })
    backend.configure(config)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_phantom(root / "phantom", per_class=max(2, args.images // 7), size=args.size, seed=0)
        scan.run(root / "run", data=root / "phantom", config=config)
        run = RunDir(root / "run")
        data = load_training_data(run, config)
        fold = data.folds[0]
        fit, _val, _test = split_fold(data, fold, config)

        epochs_timed = len(fit) * (args.epochs - 1)

        def cxrbio_epochs() -> float:
            stamps: list[float] = []
            trainer = FoldTrainer(run, config, data, "scratch", fold, on_epoch=lambda *a: stamps.append(time.perf_counter()))
            freshness.remove_stamp(run, trainer.expected.artifact, trainer.expected.unit)  # train anew each pair
            shutil.rmtree(trainer.out, ignore_errors=True)
            trainer.train()
            return (stamps[-1] - stamps[0]) * epochs_timed / (len(fit) * (len(stamps) - 1))

        x = tf.constant(np.asarray(data.images)[fit][..., None].astype("float32"))
        y = tf.constant(data.y[fit])

        def bare_epochs() -> float:
            model = build_model(len(data.classes), args.size, config.model, Strategy.parse("scratch"))
            model.compile(optimizer=make_optimizer(config), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0)  # warm-up, like cxrbio's first epoch
            started = time.perf_counter()
            model.fit(x, y, batch_size=args.batch, epochs=args.epochs - 1, verbose=0)
            return time.perf_counter() - started

        times = interleaved(bare_epochs, cxrbio_epochs, pairs=args.pairs)
        cxrbio_rate = epochs_timed / statistics.median(times.variant)
        bare_rate = epochs_timed / statistics.median(times.baseline)

    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    print(f"device {device}, {args.size} px, alpha {args.alpha}, batch {args.batch}, {len(fit)} training images per epoch")
    print(f"cxrbio train (augment + validation + checkpoint), median of pairs: {cxrbio_rate:8.1f} img/s")
    print(f"bare model.fit on in-memory tensors, median of pairs:             {bare_rate:8.1f} img/s")
    print(times.describe("ratio cxrbio / bare (bar >= 0.90)"))


if __name__ == "__main__":
    main()
