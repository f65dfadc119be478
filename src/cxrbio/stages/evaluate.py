"""Stage ``evaluate``: a run's fold models on an external data set (:mod:`cxrbio.evaluation.external`).

``data`` is scanned with the run's own config (classes, letterbox size, QC, label rules; patients
pseudonymised with the run's salt) into ``external/<name>/manifest.parquet``. For every strategy
trained on all folds, each fold model predicts every included external image:
``external/<name>/<strategy>/fold-<k>.parquet`` and ``ensemble.parquet`` (the mean of the fold
models' probabilities), then ``external/<name>/<strategy>.json``: the ensemble's metrics with
patient-bootstrap CIs and calibration, each fold model's, and the drop from the internal pooled
out-of-fold figures. Labels the run never saw are an error (or left out, said, with
``drop_unknown``); images or patients that are also in the run are counted and named in the notes.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbio.analysis import replication
from cxrbio.analysis.replication import parse_dims
from cxrbio.errors import CxrbioError, DataError
from cxrbio.models import saving
from cxrbio.run import freshness
from cxrbio.run.analysis_files import candidates_file, read_candidates
from cxrbio.run.artifacts import command_for
from cxrbio.run.atomic import atomic_write_parquet, atomic_write_text
from cxrbio.run.external_files import write_ensemble, write_fold_predictions, write_replication
from cxrbio.run.fold_layout import model_file
from cxrbio.run.rundir import open_run
from cxrbio.runtime.progress import Progress, ProgressEvent, counter, say, silent

__all__ = ["EvaluateResult", "run"]

STAGE = "evaluate"


@dataclass
class EvaluateResult:
    name: str
    images: int
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # strategy -> the json written
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def set_name(data: Path) -> str:
    """A folder name for an external set: its own folder's (or CSV's) name, in safe characters."""
    stem = data.stem if data.is_file() else data.name
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "external"


def read_results(run: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """external name -> strategy -> external/<name>/<strategy>.json, for every set evaluated."""
    pattern = run.path("external_metrics", name="*", strategy="*").relative_to(run.root)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for path in sorted(run.root.glob(str(pattern))):
        out.setdefault(path.parent.name, {})[path.stem] = json.loads(path.read_text())
    return out


def passing_candidates(run: Any, strategy: str) -> pd.DataFrame:
    """The strategy's candidates that passed every gate (empty when the run was not analysed)."""
    if not candidates_file(run, strategy).is_file():
        return pd.DataFrame(columns=["class", "feature", "dims", "expected_direction", "auc", "passed"])
    frame = read_candidates(run, strategy)
    return frame[frame["passed"].astype(bool)] if "passed" in frame else frame.iloc[:0]


def fold_embeddings(model: Any, images: np.ndarray, batch: int = 64) -> pd.DataFrame:
    """(n images, D) GAP embedding of one fold model, columns named as ``cxrbio embed`` names them."""
    from cxrbio.features.embedding import embedding_columns, embedding_model

    cut = embedding_model(model)
    parts = [np.asarray(cut(images[i : i + batch, ..., None].astype(np.float32), training=False))
             for i in range(0, len(images), batch)]
    values = np.concatenate(parts).astype(np.float64)
    return pd.DataFrame(values, columns=embedding_columns(values.shape[1]))


def run(run_dir: str | Path, *, data: str | Path, name: str | None = None, strategies: list[str] | None = None,
        layout: str | None = None, drop_unknown: bool = False, progress: Progress | None = None) -> EvaluateResult:
    """Scan ``data`` as the run would, apply every complete strategy's fold models, write metrics and the drop."""
    import keras

    from cxrbio.data.folds import outer_folds
    from cxrbio.data.input_pipeline import build_image_cache
    from cxrbio.data.manifest import build_manifest, manifest_digest
    from cxrbio.evaluation.external import COMPARED, drop_intervals, external_metrics, fold_predictions, prediction_frame
    from cxrbio.run.fold_files import read_predictions, trained_folds
    from cxrbio.run.salt import load_or_create_salt
    from cxrbio.runtime.backend import initialise_tensorflow
    from cxrbio.runtime.executors import make_executor

    started = time.perf_counter()
    report = progress or silent
    initialise_tensorflow()
    run_, config = open_run(run_dir)
    data = Path(data).expanduser().resolve()
    if not data.exists():
        raise DataError(f"the external data {data} does not exist.", fix="pass the folder or CSV of the external set.")
    name = name or set_name(data)
    internal = run_.read_manifest()
    internal_included = internal[internal["included"]].reset_index(drop=True)
    folds = [f.fold for f in outer_folds(internal_included, config.folds.scheme)]
    done = trained_folds(run_)
    chosen = strategies or [s for s in config.train.strategies if sorted(done.get(s, [])) == folds]
    incomplete = [s for s in chosen if sorted(done.get(s, [])) != folds]
    if incomplete or not chosen:
        listed = ", ".join(incomplete) or "no strategy"
        raise CxrbioError(f"{listed}: not trained on every fold of {run_.root} (evaluate applies all fold models).",
                          fix=f"run '{command_for('train', run_.root)}' first.")
    tree = config.model_dump(mode="json")
    for strategy in chosen:
        for fold in folds:
            state = freshness.status(run_, freshness.expected(run_, "train_fold", tree, {"strategy": strategy, "fold": fold}))
            if not state.fresh:
                raise CxrbioError(f"{strategy} fold {fold} is stale ({state.reason}): evaluate would apply a model made "
                                  "from other inputs.", fix=f"run '{command_for('train', run_.root)}' first (it retrains stale folds).")
    scan_config = config.model_copy(update={"data": config.data.model_copy(
        update={"drop_unknown_labels": drop_unknown or config.data.drop_unknown_labels})})
    salt = load_or_create_salt(run_.salt) if config.data.privacy.pseudonymize_patients else None
    try:
        scanned = build_manifest(data, scan_config, salt=salt, layout=layout, executor=make_executor("local"),
                                 progress=counter(progress, "scan external"))
    except DataError as error:
        if "labels not in the config" in error.message:
            raise DataError(error.message.replace("labels not in the config", "labels the run's models never saw"),
                            fix="the models know only data.classes: remove those images, or pass --drop-unknown to "
                                "leave them out (said).") from None
        raise
    manifest = scanned.manifest
    included = manifest[manifest["included"]].reset_index(drop=True)
    if included.empty:
        raise DataError(f"no image of {data} passed QC.", fix="see the manifest's qc_reason column.")
    result = EvaluateResult(name, len(included), notes=[n for n in scanned.notes if "fold" not in n.lower()])
    absent = [c for c in config.data.classes if c not in set(included["label"])]
    if absent:
        result.notes.append(f"classes without external images (scored on the others): {', '.join(absent)}")
    shared_images = sorted(set(included["sha256"].dropna()) & set(internal_included["sha256"].dropna()))
    shared_patients = sorted(set(included["patient_id"]) & set(internal_included["patient_id"]))
    if shared_images or shared_patients:
        result.notes.append(f"{len(shared_images)} external images are byte-identical to run images and "
                            f"{len(shared_patients)} patient ids occur in both: the external set is not independent")
    atomic_write_parquet(run_.output(STAGE, "external_manifest", name=name), manifest)
    # Judged after writing: the fingerprint covers the content of the images the manifest lists.
    manifest_want = freshness.expected(run_, "external_manifest", tree, {"name": name}, options={"data": str(data)})
    freshness.write_stamp(run_, manifest_want, digest=manifest_digest(manifest), info={"data": str(data), "images": len(included)})
    say(progress, f"external set '{name}': {len(included)} images, {included['patient_id'].nunique()} patients")
    images = build_image_cache(included, config.data.image_size, "memory", None, None,
                               lambda d, t: report(ProgressEvent("decode + letterbox", d, t)))
    index = {c: i for i, c in enumerate(config.data.classes)}
    y = included["label"].map(index).to_numpy(np.int32)
    evaluation = config.evaluation
    for strategy in chosen:
        folder = run_.output(STAGE, "external_predictions", name=name, strategy=strategy)
        folder.mkdir(parents=True, exist_ok=True)
        per_fold = {}
        passing = passing_candidates(run_, strategy)
        wanted = {fold for text in passing.get("dims", pd.Series(dtype=str)) for fold, _ in parse_dims(text)}
        embedded: dict[int, pd.DataFrame] = {}
        for fold in folds:
            model = saving.load_model(model_file(run_, strategy, fold), compile=False)
            per_fold[fold] = fold_predictions(model, images)
            if fold in wanted:
                embedded[fold] = fold_embeddings(model, images)
            write_fold_predictions(folder, fold, prediction_frame(included, y, per_fold[fold], list(config.data.classes),
                                                                  fold))
            keras.backend.clear_session()
            report(ProgressEvent(f"{strategy} fold models", len(per_fold), len(folds)))
        found, ensemble = external_metrics(per_fold, included, y, list(config.data.classes), config.data.positive_class,
                                           resamples=evaluation.bootstrap, seed=evaluation.seed, level=evaluation.level,
                                           bins=evaluation.calibration_bins)
        write_ensemble(folder, ensemble)
        own = json.loads(run_.path("metrics", strategy=strategy).read_text())
        intervals = drop_intervals(read_predictions(run_, strategy), ensemble, list(config.data.classes),
                                   resamples=evaluation.bootstrap, seed=evaluation.seed, level=evaluation.level)
        drops = {key: {"internal": own["pooled"][key], "external": found["pooled"][key],
                       "drop": own["pooled"][key] - found["pooled"][key], "drop_ci": intervals[key]} for key in COMPARED}
        replicated = replication.replicate(
            passing, embedded, included, list(config.data.classes),
            control=config.analysis.active_control(list(config.data.classes)),
            min_patients=config.analysis.confirm_min_patients, gate_q=config.analysis.gate_q,
            permutation_below=config.analysis.permutation_below, permutations=config.analysis.stratum_permutations,
            seed=config.analysis.seed)
        write_replication(folder, replicated)
        written = {"replication": replication.summary(replicated) if run_.path("analysis", strategy=strategy).is_dir()
                   else None,
                   "strategy": strategy, "name": name, "data": str(data), "images": len(included),
                   "patients": int(included["patient_id"].nunique()), "sources": sorted(included["source"].astype(str).unique()),
                   "classes_absent": absent, "shared_images": len(shared_images), "shared_patients": len(shared_patients),
                   "notes": result.notes, "metrics": found, "drop": drops}
        want = freshness.expected(run_, "external_metrics", tree, {"name": name, "strategy": strategy})
        atomic_write_text(run_.output(STAGE, "external_metrics", name=name, strategy=strategy),
                          json.dumps(written, indent=1, allow_nan=True))
        freshness.write_stamp(run_, want)
        result.results[strategy] = written
    result.seconds = time.perf_counter() - started
    return result

