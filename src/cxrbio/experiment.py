"""``cxrbio train``: several strategies x folds of one run, their metrics and comparisons.

Checks before any training: the run directory's config must match (or ``--force``, which moves
the old results aside -- nothing is deleted); pretrained weights must be reachable (or
``--skip-unavailable``, which marks those strategies skipped in every output). After training,
``metrics/<strategy>.json`` per finished strategy and ``metrics/comparison.json``.
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
from typing import Any

import numpy as np

from cxrbio.config import Config, load_config, save_config
from cxrbio.errors import ConfigError, DataError
from cxrbio.metrics import mcnemar_test, nadeau_bengio_ttest, strategy_metrics
from cxrbio.models.strategies import Strategy
from cxrbio.models.weights import WeightsUnavailable, load_backbone
from cxrbio.rundir import RunDir, atomic_write_text
from cxrbio.train import TrainingData, read_predictions

#: Keys that may differ between invocations on one run directory.
_FREE_KEYS = {("name",), ("train", "strategies"), ("masks",), ("radiomics",), ("analysis",), ("report",)}  # later stages: no effect on training


def _comparable(config: Config) -> dict[str, Any]:
    dumped = config.model_dump(mode="json")
    for path in _FREE_KEYS:
        node = dumped
        for part in path[:-1]:
            node = node[part]
        node.pop(path[-1], None)
    return dumped


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(_differences(a, b, f"{prefix}{key}."))
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def check_run_config(run: RunDir, config: Config, force: bool) -> None:
    """Refuse to mix results of two configs in one run directory; with force, move old results aside."""
    has_results = (run.root / "train").is_dir() and any((run.root / "train").iterdir())
    if run.config.is_file() and has_results:
        previous = load_config(run.config)
        changed = _differences(_comparable(previous), _comparable(config))
        if changed:
            if not force:
                raise ConfigError(
                    f"{run.root} holds results of another config ({'; '.join(changed[:5])}"
                    f"{'; ...' if len(changed) > 5 else ''}).",
                    fix="use a new --out directory, or --force to move the old results to superseded-<time>/ and start over.",
                )
            aside = run.root / f"superseded-{time.strftime('%Y%m%d-%H%M%S')}"
            aside.mkdir()
            for name in ("train", "metrics", "config.yaml"):
                if (run.root / name).exists():
                    shutil.move(str(run.root / name), str(aside / name))
    save_config(config, run.config)


def check_weights(config: Config, strategies: list[str], skip_unavailable: bool) -> dict[str, str]:
    """Strategies that cannot run for lack of weights -> reason; raises unless skip_unavailable."""
    pretrained = [s for s in strategies if Strategy.parse(s).pretrained]
    if not pretrained:
        return {}
    try:
        load_backbone(config.data.image_size, config.model.alpha, config.model.weights)
        return {}
    except WeightsUnavailable as error:
        if not skip_unavailable:
            raise WeightsUnavailable(
                f"{error.message} Strategies that need them: {', '.join(pretrained)}.", fix=error.fix
            ) from None
        return {s: error.message for s in pretrained}


def mark_skipped(run: RunDir, strategy: str, reason: str) -> None:
    atomic_write_text(run.metrics(strategy), json.dumps({"strategy": strategy, "status": "skipped", "reason": reason}, indent=1))
    atomic_write_text(run.root / "train" / strategy / "SKIPPED", reason + "\n")


def strategy_complete(run: RunDir, strategy: str, data: TrainingData) -> bool:
    return all((run.train_fold(strategy, f.fold) / "DONE").is_file() for f in data.folds)


def write_strategy_metrics(run: RunDir, config: Config, strategy: str, data: TrainingData) -> dict[str, Any]:
    predictions = read_predictions(run, strategy)
    if len(predictions) != len(data.manifest):
        raise DataError(f"{strategy}: {len(predictions)} out-of-fold predictions for {len(data.manifest)} images.",
                        fix="re-run cxrbio train on this run directory.")
    metrics = strategy_metrics(predictions, data.classes, config.data.positive_class,
                               {f.fold: f.name for f in data.folds}, seed=config.train.seed)
    metrics.update(strategy=strategy, status="done", scheme=config.folds.scheme)
    done = [json.loads((run.train_fold(strategy, f.fold) / "DONE").read_text() or "{}") for f in data.folds]
    metrics["training"] = done
    atomic_write_text(run.metrics(strategy), json.dumps(metrics, indent=1, allow_nan=True))
    return metrics


def write_comparison(run: RunDir, data: TrainingData, strategies: list[str]) -> dict[str, Any]:
    """Pairwise strategy comparisons over the same folds and images."""
    finished = [s for s in strategies if strategy_complete(run, s, data)]
    predictions = {s: read_predictions(run, s).set_index("image_id").sort_index() for s in finished}
    n = len(data.manifest)
    test_sizes = [int(f.test.sum()) for f in data.folds]
    n_test = float(np.mean(test_sizes))
    pairs = []
    for a, b in itertools.combinations(finished, 2):
        pa, pb = predictions[a], predictions[b]
        acc_a = [float((g["true"] == g["predicted"]).mean()) for _, g in pa.groupby("fold")]
        acc_b = [float((g["true"] == g["predicted"]).mean()) for _, g in pb.groupby("fold")]
        pairs.append({
            "a": a, "b": b,
            "accuracy_a": float((pa["true"] == pa["predicted"]).mean()),
            "accuracy_b": float((pb["true"] == pb["predicted"]).mean()),
            "nadeau_bengio": nadeau_bengio_ttest(acc_a, acc_b, n_train=n - n_test, n_test=n_test),
            "mcnemar": mcnemar_test((pa["true"] == pa["predicted"]).to_numpy(),
                                    (pb.loc[pa.index, "true"] == pb.loc[pa.index, "predicted"]).to_numpy()),
        })
    result = {"metric": "7-class accuracy", "pairs": pairs}
    atomic_write_text(run.comparison, json.dumps(result, indent=1))
    return result


def resolve_strategies(config: Config, names: list[str] | None) -> list[str]:
    names = names or list(config.train.strategies)
    for name in names:
        Strategy.parse(name)
    return names

