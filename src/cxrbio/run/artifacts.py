"""The run directory, declared: every artifact a stage writes, and every stage with what it needs.

This module is the contract between stages (docs/architecture.md). Each :class:`Artifact` is
declared once with its path pattern, the one stage that writes it, its schema version, the
artifacts it is computed from and the config keys that shape it. Writers and readers take
paths from here (:class:`cxrbio.run.rundir.RunDir`), freshness is judged from here
(:mod:`cxrbio.run.freshness`), and "run X first" messages are written from here
(:func:`missing_error`). Adding a stage means adding its declarations, not editing messages in
sixteen modules.

A *unit* is one instance of an artifact: ``train_fold`` has one unit per (strategy, fold),
``manifest`` a single unit. Each unit gets a stamp when it is complete (the stamp is written
last), so "complete and made from today's inputs with today's settings" has one meaning
everywhere.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any

from cxrbio.errors import CxrbioError

#: Version of the run-directory layout; a folder without ``run.json`` predates layout 2.
LAYOUT_VERSION = 2
#: Folder of the run directory holding one stamp per completed unit (:mod:`cxrbio.run.freshness`).
STAMPS = "stamps"
#: The analysis unit of the radiomics space (``analysis/radiomics/``), beside one per strategy.
RADIOMICS_SPACE = "radiomics"


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline: its command (shown in "run X first" messages) and what it needs."""

    name: str
    command: str  # a template with {run}
    needs: tuple[str, ...] = ()  # stage names whose artifacts it reads
    summary: str = ""


@dataclass(frozen=True)
class Artifact:
    """One kind of file (or folder) in a run directory.

    ``pattern`` is relative to the run's root, with ``{param}`` fields naming the unit.
    ``inputs`` name artifacts this one is computed from; a field of theirs that this artifact
    also has is bound to the same value, a field it lacks means "every unit" (an analysis of a
    strategy depends on every fold's embeddings of that strategy). ``settings`` are the config
    key prefixes that shape the result (``ignore`` lists keys under them that do not).
    ``files`` names the kind of files *outside* the run a unit reads (:mod:`cxrbio.run.file_inputs`:
    ``weights``, ``masks``, ``radiomics_params``, ``external_data``); their content is part of
    the fingerprint. Artifacts without a stamp (``stamped=False``) are parts of a stamped unit or caches.
    """

    name: str
    pattern: str
    stage: str
    schema: int
    description: str
    inputs: tuple[str, ...] = ()
    settings: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    files: str | None = None
    stamped: bool = True
    folder: bool = False
    cache: bool = False  # content-keyed and safe to delete; may be rebuilt by any stage that reads it
    params: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        fields = tuple(name for _, name, _, _ in string.Formatter().parse(self.pattern) if name)
        object.__setattr__(self, "params", fields)

    def relative(self, **params: Any) -> str:
        missing = [p for p in self.params if p not in params]
        if missing:
            raise ValueError(f"artifact {self.name} needs {', '.join(missing)}")
        return self.pattern.format(**{p: params[p] for p in self.params})


STAGES: dict[str, Stage] = {stage.name: stage for stage in (
    Stage("scan", "cxrbio data scan DATA {run}", (), "data set -> manifest, config, folds"),
    Stage("train", "cxrbio train {run}", ("scan",), "cross-validated training, metrics"),
    Stage("embed", "cxrbio embed {run}", ("train",), "GAP embeddings per fold model"),
    Stage("masks", "cxrbio masks {run}", ("scan",), "lung masks"),
    Stage("radiomics", "cxrbio radiomics {run}", ("masks",), "pyradiomics features"),
    Stage("analyze", "cxrbio analyze {run}", ("embed", "radiomics"), "candidate biomarkers"),
    Stage("lungs_removed", "cxrbio lungs-removed {run}", ("train",),
          "retraining with the image centre blacked out (opt-in): is there signal outside the lungs?"),
    Stage("evaluate", "cxrbio evaluate {run} --data EXTERNAL", ("train",),
          "the fold models on an external data set: metrics and the drop from internal"),
    Stage("report", "cxrbio report {run}", (), "the HTML report (written outside the run)"),
    Stage("demo", "cxrbio demo {run}", (), "the phantom data set of the demo"),
)}

#: Config keys that change what no stage computes (where files go, speed, names).
_NEVER = ("name", "data.cache", "train.strategies", "train.checkpoint_seconds", "radiomics.workers",
          "radiomics.cache_dir", "report")
_TRAINING = ("data.classes", "data.image_size", "folds", "augment", "model", "train")
#: Confounding keys only the opt-in retraining reads (the scan's and the analysis' checks ignore them).
_RETRAINING = ("confounding.lungs_removed_box",)

ARTIFACTS: dict[str, Artifact] = {a.name: a for a in (
    Artifact("run_info", "run.json", "scan", 1, "run identity (layout version, data, history)",
             stamped=False),
    Artifact("config", "config.yaml", "scan", 1, "config (the one the run was made with)", stamped=False),
    Artifact("salt", ".pseudonym-salt", "scan", 1, "pseudonym salt (secret)", stamped=False),
    Artifact("manifest", "manifest.parquet", "scan", 3, "manifest (one row per image, with folds)",
             settings=("data", "folds.k", "folds.seed"), ignore=_NEVER + ("data.positive_class",)),
    Artifact("acquisition", "confounding/acquisition.json", "scan", 1,
             "acquisition baseline (does how images were exported predict the label?)", inputs=("manifest",),
             settings=("data.classes", "data.image_size", "folds.scheme", "confounding"), ignore=(*_NEVER, *_RETRAINING)),
    Artifact("design", "confounding/design.parquet", "scan", 1,
             "design check (per class: can a disease effect be estimated within sources holding its controls?)",
             inputs=("manifest", "acquisition"), settings=("data.classes", "analysis.control_class", "analysis.gate_control",
                                                           "analysis.gate_q", "confounding"),
             ignore=(*_NEVER, *_RETRAINING)),
    Artifact("covariates", "confounding/covariates.json", "scan", 1,
             "covariate audit (age, sex, view, device, site against the label)", inputs=("manifest",),
             settings=("data.classes", "confounding"), ignore=(*_NEVER, *_RETRAINING)),
    Artifact("image_cache", "cache", "train", 1, "image cache (letterboxed images, frozen features)", stamped=False,
             folder=True, cache=True),
    Artifact("train_fold", "train/{strategy}/fold-{fold}", "train", 2,
             "trained fold models (model.keras, history.csv, predictions.parquet, validation.parquet, summary.json)",
             inputs=("manifest",), settings=_TRAINING, ignore=_NEVER, files="weights", folder=True),
    Artifact("train_skipped", "train/{strategy}/SKIPPED", "train", 1, "skip notes (why a strategy was not trained)",
             stamped=False),
    Artifact("metrics", "metrics/{strategy}.json", "train", 3, "metrics (a strategy's, over its folds)",
             inputs=("train_fold",), settings=("data.classes", "data.positive_class", "folds.scheme", "evaluation"), ignore=_NEVER),
    Artifact("comparison", "metrics/comparison.json", "train", 3, "strategy comparisons",
             inputs=("metrics",), settings=("data.classes", "evaluation"), ignore=_NEVER),
    Artifact("embeddings", "embeddings/{strategy}/fold-{fold}.parquet", "embed", 2,
             "embeddings (a fold model's GAP vector of every image)", inputs=("manifest", "train_fold"),
             settings=("data.image_size",)),
    Artifact("masks", "masks/masks.parquet", "masks", 2,
             "lung and body masks (masks.parquet: where each came from)",
             inputs=("manifest",), settings=("data.image_size", "masks"), files="masks"),
    Artifact("mask_file", "masks/{image_id}.png", "masks", 1, "lung mask files (letterboxed frame)",
             stamped=False),
    Artifact("body_file", "masks/body/{image_id}.png", "masks", 1, "body mask files (letterboxed frame, lungs included)",
             stamped=False),
    Artifact("radiomics", "radiomics/features.parquet", "radiomics", 2,
             "radiomics features (status.parquet beside them)", inputs=("manifest", "masks"),
             settings=("data.image_size", "radiomics"), ignore=_NEVER, files="radiomics_params"),
    Artifact("radiomics_status", "radiomics/status.parquet", "radiomics", 1, "radiomics status (per image: ok / failed / no mask)",
             stamped=False),
    # strategy = "radiomics" is the analysis of the radiomics space (no embeddings bind to it).
    Artifact("analysis", "analysis/{strategy}", "analyze", 3,
             "analysis (of a strategy's embeddings, or of radiomics)",
             inputs=("manifest", "masks", "radiomics", "embeddings"),
             settings=("data.classes", "data.positive_class", "folds.scheme", "analysis", "evaluation.bootstrap",
                       "evaluation.level", "evaluation.seed", "confounding"), ignore=_RETRAINING, folder=True),
    Artifact("analysis_summary", "analysis/summary.json", "analyze", 1, "analysis summary (timings and notes)",
             stamped=False),
    Artifact("analysis_log", "analysis/log.jsonl", "analyze", 1,
             "analysis log (append-only: one line per analysis with its settings, gates, tests and passes)",
             stamped=False),
    Artifact("lungs_removed_fold", "lungs-removed/{strategy}/fold-{fold}", "lungs_removed", 1,
             "lungs-removed fold models (trained like train/, on images with the centre blacked out)",
             inputs=("manifest",), settings=(*_TRAINING, "confounding.lungs_removed_box"), ignore=_NEVER, files="weights",
             folder=True),
    Artifact("lungs_removed", "lungs-removed/{strategy}.json", "lungs_removed", 1,
             "lungs-removed result (per class: AUROC and sensitivity without the centre, beside the normal model's)",
             inputs=("lungs_removed_fold", "train_fold"),
             settings=("data.classes", "evaluation", "confounding.lungs_removed_box"), ignore=_NEVER),
    Artifact("external_manifest", "external/{name}/manifest.parquet", "evaluate", 1,
             "external data set's manifest (scanned with the run's config)", settings=("data",), ignore=_NEVER,
             files="external_data"),
    Artifact("external_predictions", "external/{name}/{strategy}", "evaluate", 1,
             "external predictions (every fold model's and the ensemble's)", stamped=False, folder=True),
    Artifact("external_metrics", "external/{name}/{strategy}.json", "evaluate", 1,
             "external metrics (ensemble, fold models, the drop from internal)", inputs=("external_manifest", "train_fold"),
             settings=("data.classes", "data.positive_class", "folds.scheme", "evaluation"), ignore=_NEVER),
    Artifact("phantom", "phantom", "demo", 1, "phantom data set of the demo (generator parameters in its stamp)",
             folder=True),
)}


def command_for(stage: str, run: Any, **extra: str) -> str:
    """The command line that runs ``stage`` on ``run`` (with ``--strategies`` and the like appended)."""
    text = STAGES[stage].command.format(run=run)
    for option, value in extra.items():
        text += f" --{option.replace('_', '-')} {value}"
    return text


def missing_error(artifact: str, run: Any, detail: str = "", **extra: str) -> CxrbioError:
    """The one way to say "this run lacks X: run Y first", written from the declarations."""
    declared = ARTIFACTS[artifact]
    stage = declared.stage
    what = declared.description + (f" ({detail})" if detail else "")
    return CxrbioError(f"{run} has no {what}.", fix=f"run '{command_for(stage, run, **extra)}' first.")


def _closure(start: set[str], needs: dict[str, tuple[str, ...]]) -> set[str]:
    """``start`` and every name whose ``needs`` reach it, directly or not."""
    found = set(start)
    changed = True
    while changed:
        changed = False
        for name, wanted in needs.items():
            if name not in found and found & set(wanted):
                found.add(name)
                changed = True
    return found


def downstream(stages: set[str]) -> set[str]:
    """The given stages and every stage that reads, directly or not, what they write."""
    return _closure(stages, {stage.name: stage.needs for stage in STAGES.values()})


def _under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".")


def key_matters(artifact: Artifact, key: str) -> bool:
    """Whether the dotted config ``key`` shapes ``artifact`` (declared, and not ignored)."""
    return any(_under(key, p) for p in artifact.settings) and not any(_under(key, i) for i in artifact.ignore)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and scalars are leaves."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def settings_values(artifact: Artifact, config_tree: dict[str, Any]) -> dict[str, Any]:
    """The config values that shape ``artifact``, as dotted keys (what its stamp records)."""
    return {k: v for k, v in flatten(config_tree).items() if key_matters(artifact, k)}


def artifacts_shaped_by(keys: list[str]) -> set[str]:
    """Stamped artifacts that depend on any of the dotted config ``keys``."""
    return {a.name for a in ARTIFACTS.values() if a.stamped and any(key_matters(a, k) for k in keys)}


def downstream_artifacts(names: set[str]) -> set[str]:
    """The given artifacts and every artifact computed, directly or not, from them."""
    return _closure(names, {artifact.name: artifact.inputs for artifact in ARTIFACTS.values()})


def stages_shaped_by(keys: list[str]) -> set[str]:
    """Stages whose stamped artifacts depend on any of the dotted config ``keys``."""
    return {a.stage for a in ARTIFACTS.values() if a.stamped and any(key_matters(a, k) for k in keys)}
