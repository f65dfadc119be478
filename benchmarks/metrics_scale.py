"""The metrics of `cxrbio train` at the study's scale: 3,905 images, 7 classes, 10 folds, 8 strategies.

Times what `cxrbio train` adds after the last fold: per strategy the metrics with 1,000
patient-bootstrap resamples (scalar metrics, per-class rates and AUROCs, calibration, temperature
scaling), then the 28 pairwise comparisons on shared resamples. Beside it, in the same run, the
baseline it replaced: a Python loop over resamples, each recomputing the metrics with
scikit-learn on the resampled rows (``--baseline-resamples`` of them, scaled to 1,000). Each
strategy's metrics and the baseline on that strategy's predictions run as one interleaved pair;
the ratio is the median over the pairs with its range (benchmarks/paired.py).

    uv run python benchmarks/metrics_scale.py [--images 3905] [--strategies 8] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd
from paired import PairedTimes


def simulated_predictions(images: int, folds: int, classes: list[str], accuracy: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(classes), images)
    logits = rng.normal(size=(images, len(classes)))
    logits[np.arange(images), y] += 3 * accuracy
    p = np.exp(2 * logits) / np.exp(2 * logits).sum(axis=1, keepdims=True)
    patients = np.arange(images) // 2
    frame = pd.DataFrame({"image_id": [f"i{k:05d}" for k in range(images)], "patient_id": [f"p{k}" for k in patients],
                          "fold": patients % folds, "true": y, "predicted": p.argmax(axis=1)})
    for k, name in enumerate(classes):
        frame[f"p_{name}"] = p[:, k]
    return frame


def loop_baseline(frame: pd.DataFrame, classes: list[str], resamples: int, seed: int) -> float:
    """Seconds for ``resamples`` resamples the old way: draw patients, gather rows, scikit-learn metrics."""
    from cxrbio.evaluation.metrics import auroc_per_class, paper_metrics

    rng = np.random.default_rng(seed)
    codes, uniques = pd.factorize(frame["patient_id"], sort=True)
    members = [np.flatnonzero(codes == k) for k in range(len(uniques))]
    y, p = frame["true"].to_numpy(), frame["predicted"].to_numpy()
    probabilities = frame[[f"p_{c}" for c in classes]].to_numpy()
    started = time.perf_counter()
    for _ in range(resamples):
        rows = np.concatenate([members[k] for k in rng.integers(0, len(members), len(members))])
        paper_metrics(y[rows], p[rows], classes, classes[0])
        auroc_per_class(y[rows], probabilities[rows], classes)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3905)
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--strategies", type=int, default=8)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--baseline-resamples", type=int, default=50)
    args = parser.parse_args()

    from cxrbio.evaluation.comparisons import compare_strategies
    from cxrbio.evaluation.metrics import strategy_metrics
    from cxrbio.evaluation.paper import PAPER_CLASSES

    classes = list(PAPER_CLASSES)
    predictions = {f"s{k}": simulated_predictions(args.images, args.folds, classes, 0.5 + 0.05 * k, seed=k)
                   for k in range(args.strategies)}
    validation = {name: frame.sample(frac=0.1, random_state=1) for name, frame in predictions.items()}
    base, ours = [], []
    for k, (name, frame) in enumerate(predictions.items()):  # one pair per strategy, alternating which goes first
        def cxrbio_metrics(name: str = name, frame: pd.DataFrame = frame) -> float:
            started = time.perf_counter()
            strategy_metrics(frame, classes, classes[0], {}, n_boot=args.resamples, validation=validation[name])
            return time.perf_counter() - started

        def baseline(frame: pd.DataFrame = frame) -> float:
            seconds = loop_baseline(frame, classes, args.baseline_resamples, seed=0)
            return seconds * args.resamples / args.baseline_resamples

        if k % 2:
            ours.append(cxrbio_metrics())
            base.append(baseline())
        else:
            base.append(baseline())
            ours.append(cxrbio_metrics())
    times = PairedTimes(base, ours)
    per_strategy = statistics.median(ours)
    started = time.perf_counter()
    result = compare_strategies(predictions, classes, n_train=0.9 * args.images, n_test=0.1 * args.images,
                                resamples=args.resamples)
    comparisons = time.perf_counter() - started
    print(f"{args.images} images, {len(classes)} classes, {args.folds} folds, {args.strategies} strategies, "
          f"{args.resamples} patient-bootstrap resamples")
    print(f"metrics per strategy (intervals, per-class, AUROC, calibration, temperature): {per_strategy:.2f} s")
    print(f"{len(result['pairs'])} pairwise comparisons on shared resamples: {comparisons:.2f} s")
    print(f"baseline, per strategy (resample loop with scikit-learn, {args.baseline_resamples} timed, scaled): "
          f"{statistics.median(base):.2f} s")
    print(times.describe("ratio baseline / cxrbio per strategy"))
    print(f"all metrics after training: {sum(ours) + comparisons:.1f} s")


if __name__ == "__main__":
    main()
