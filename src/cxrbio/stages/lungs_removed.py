"""Stage ``lungs_removed`` (opt-in): retrain strategies with the image centre blacked out (docs/confounding.md).

For each chosen strategy (default: ``scratch``, which needs no weights) and each of the run's
folds, a model is trained exactly as ``cxrbio train`` trains it -- same folds, inner validation
split, seeds, schedule and augmentation -- on images whose central box
(``confounding.lungs_removed_box``) is 0. Fold models go to
``lungs-removed/<strategy>/fold-<k>/`` (resumable, stamped like ``train/``); the
comparison with the normal model, per class, to ``lungs-removed/<strategy>.json``
(:func:`cxrbio.confounding.lung_removal.compare`). The strategy itself must be trained first:
the comparison is on the same out-of-fold images.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxrbio.confounding.lung_removal import compare, removed_images, variant_name
from cxrbio.errors import CxrbioError
from cxrbio.run import freshness
from cxrbio.run.artifacts import command_for
from cxrbio.run.atomic import atomic_write_text
from cxrbio.run.rundir import open_run, supersede
from cxrbio.runtime.progress import Progress, ProgressEvent, say, silent

__all__ = ["LungsRemovedResult", "run"]

STAGE = "lungs_removed"
FOLD_ARTIFACT = "lungs_removed_fold"
DEFAULT_STRATEGIES = ("scratch",)


@dataclass
class LungsRemovedResult:
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # strategy -> compare()'s dict
    trained: list[tuple[str, int]] = field(default_factory=list)
    up_to_date: list[tuple[str, int]] = field(default_factory=list)
    seconds: float = 0.0


def run(run_dir: str | Path, *, strategies: list[str] | None = None, force: bool = False,
        progress: Progress | None = None) -> LungsRemovedResult:
    """Train the lungs-removed folds of each strategy (resuming), then compare them with the normal models."""
    from cxrbio.run.fold_files import read_fold_predictions, read_predictions
    from cxrbio.runtime import backend
    from cxrbio.runtime.backend import initialise_tensorflow
    from cxrbio.stages.train import resolve_strategies, strategy_complete
    from cxrbio.training.data import load_training_data
    from cxrbio.training.fold_trainer import FoldTrainer

    started = time.perf_counter()
    report = progress or silent
    initialise_tensorflow()
    run_, config = open_run(run_dir)
    names = resolve_strategies(config, strategies or list(DEFAULT_STRATEGIES))
    backend.configure(config)
    data = load_training_data(run_, config, progress=lambda d, t: report(ProgressEvent("decode + letterbox", d, t)))
    for name in names:
        if not strategy_complete(run_, config, name, data):
            raise CxrbioError(f"{name} is not trained on every fold of {run_.root}: the lungs-removed models are "
                              "compared with it on the same images.",
                              fix=f"run '{command_for('train', run_.root, strategies=name)}' first.")
    fraction = config.confounding.lungs_removed_box
    data.images = removed_images(data.images, data.manifest, config.data.image_size, fraction)
    data.variant = variant_name(fraction)
    say(progress, f"central box of {fraction:.0%} of each image's width and height set to 0 in all "
                  f"{len(data.manifest)} images")
    result = LungsRemovedResult()
    tree = config.model_dump(mode="json")

    def on_epoch(strategy: str, fold: int, epoch: int, epochs: int, logs: dict[str, float]) -> None:
        report(ProgressEvent("epochs", epoch + 1, epochs, message=(
            f"lungs removed, {strategy} fold {fold} epoch {epoch + 1}/{epochs} loss {logs.get('loss', 0):.3f} "
            f"val_acc {logs.get('val_accuracy', 0):.3f}")))

    for name in names:
        for fold in data.folds:
            unit = {"strategy": name, "fold": fold.fold}
            state = freshness.status(run_, freshness.expected(run_, FOLD_ARTIFACT, tree, unit))
            if state.fresh and not force:
                result.up_to_date.append((name, fold.fold))
                continue
            if state.state == "stale" or (force and state.fresh):
                aside = supersede(run_, [freshness.unit_label(FOLD_ARTIFACT, unit)],
                                  reason="forced" if force else f"stale: {state.reason}")
                say(progress, f"lungs removed, {name} fold {fold.fold}: earlier model moved to {aside}")
            status = FoldTrainer(run_, config, data, name, fold, on_epoch=on_epoch, artifact=FOLD_ARTIFACT,
                                 stage=STAGE).train()
            result.trained.append((name, fold.fold))
            say(progress, f"lungs removed, {name} fold {fold.fold}: {status}")
        normal = read_predictions(run_, name)
        removed = read_fold_predictions(run_, name, [f.fold for f in data.folds], artifact=FOLD_ARTIFACT)
        evaluation = config.evaluation
        found = compare(normal, removed, data.classes, resamples=evaluation.bootstrap, seed=evaluation.seed,
                        level=evaluation.level)
        found.update(strategy=name, box_fraction=fraction, folds=len(data.folds))
        want = freshness.expected(run_, "lungs_removed", tree, {"strategy": name})
        atomic_write_text(run_.output(STAGE, "lungs_removed", strategy=name), json.dumps(found, indent=1))
        freshness.write_stamp(run_, want)
        result.results[name] = found
    result.seconds = time.perf_counter() - started
    return result
