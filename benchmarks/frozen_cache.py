"""Frozen-feature caching for offshelf: speed-up and accuracy difference on the phantom.

Trains `offshelf` under 3-fold CV in `--pairs` interleaved pairs on the same phantom: with the study's protocol
(augmentation, the frozen backbone runs every epoch) and with ``train.augment_frozen: false``
(GAP features computed once, only the head trains, no augmentation). Prints training images/s
per epoch and pooled 7-class accuracy of each.

    uv run python benchmarks/frozen_cache.py [--weights imagenet|FILE] [--size 64] [--per-class 60] [--epochs 15] [--pairs 3]

Offline, ImageNet weights cannot be downloaded; the script then says so and uses a randomly
initialised backbone saved to a file, which still measures the speed-up faithfully (accuracy then
reflects random features).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from paired import interleaved

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", default="imagenet")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--alpha", type=float, default=0.35)
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--pairs", type=int, default=3, help="interleaved augmented/cache pairs")
    args = parser.parse_args()

    import pandas as pd

    from cxrbio.config import load_config
    from cxrbio.data.phantom import generate_phantom
    from cxrbio.models.weights import WeightsUnavailable, load_backbone
    from cxrbio.run.fold_files import read_history, read_predictions
    from cxrbio.run.rundir import RunDir
    from cxrbio.runtime import backend
    from cxrbio.stages import scan
    from cxrbio.training.data import load_training_data
    from cxrbio.training.fold_trainer import FoldTrainer

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        weights = args.weights
        try:
            load_backbone(args.size, args.alpha, weights)
        except WeightsUnavailable as error:
            print(f"note: {error.message}\nnote: using a randomly initialised backbone instead (speed is what this measures)")
            weights = str(root / "random.weights.h5")
            load_backbone(args.size, args.alpha, None).save_weights(weights)
        generate_phantom(root / "phantom", per_class=args.per_class, size=max(args.size, 64), seed=0)
        results: dict[str, list[tuple[float, float, float]]] = {"augmented (paper)": [], "frozen-feature cache": []}

        def train(label: str, frozen: bool, pair: int) -> float:
            config = load_config(None, {
                "data.image_size": args.size, "folds.k": 3, "model.alpha": args.alpha, "model.weights": weights,
                "model.dense_units": 256, "model.batchnorm_momentum": 0.9, "train.epochs": args.epochs,
                "train.learning_rate": 1e-3, "train.early_stopping_patience": 0, "train.strategies": ["offshelf"],
                "train.augment_frozen": frozen,
            })
            backend.configure(config)
            run_dir = root / f"run-{'aug' if frozen else 'cache'}-{pair}"
            scan.run(run_dir, data=root / "phantom", config=config)
            run = RunDir(run_dir)
            data = load_training_data(run, config)
            started = time.perf_counter()
            for fold in data.folds:
                FoldTrainer(run, config, data, "offshelf", fold).train()
            seconds = time.perf_counter() - started
            history = pd.concat(read_history(run, "offshelf", f.fold) for f in data.folds)
            predictions = read_predictions(run, "offshelf")
            results[label].append((float(history["images_per_second"].iloc[1:].median()), seconds,
                                   float((predictions["true"] == predictions["predicted"]).mean())))
            return seconds

        pair_numbers = iter(range(args.pairs * 2))
        times = interleaved(lambda: train("augmented (paper)", True, next(pair_numbers)),
                            lambda: train("frozen-feature cache", False, next(pair_numbers)), pairs=args.pairs)
    print(f"{'offshelf, median of pairs':<26} {'train img/s':>12} {'3 folds, s':>11} {'pooled 7-class acc':>19}")
    for label, runs in results.items():
        rate, seconds, accuracy = (statistics.median(r[i] for r in runs) for i in range(3))
        print(f"{label:<26} {rate:>12.0f} {seconds:>11.1f} {accuracy:>19.3f}")
    accuracy = {label: statistics.median(r[2] for r in runs) for label, runs in results.items()}
    print(times.describe("speed-up (wall time, augmented / cache)"))
    print(f"accuracy difference (cache - augmented, medians): "
          f"{accuracy['frozen-feature cache'] - accuracy['augmented (paper)']:+.3f}")


if __name__ == "__main__":
    main()
