"""Stage ``radiomics``: pyradiomics features of every included image inside its lung mask.

Runs the masks stage first when the run has no masks (or when ``masks`` names a folder). Cache
hits (by image, mask and parameter hashes, shared by runs: :mod:`cxrbio.features.radiomic_features`) are read in
this process; only misses go to the executor's workers or Ray tasks. Writes
``radiomics/features.parquet`` and ``radiomics/status.parquet``; failed images are listed there,
never dropped silently.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbio.features.radiomic_features import (
    STATUS_OK,
    RadiomicsResult,
    cached_features,
    extract_features,
    load_params,
    params_hash,
    params_path,
    plan_jobs,
)
from cxrbio.run import freshness
from cxrbio.run.atomic import atomic_write_parquet
from cxrbio.run.mask_files import with_masks
from cxrbio.run.rundir import open_run, supersede
from cxrbio.runtime.executors import Executor, make_executor
from cxrbio.runtime.progress import Progress, counter

__all__ = ["RadiomicsResult", "run"]

STAGE = "radiomics"


def run(run_dir: str | Path, *, executor: Executor | None = None, masks: str | Path | None = None,
        force: bool = False, progress: Progress | None = None) -> RadiomicsResult:
    """Features of every included image with a mask -> radiomics/features.parquet + status.parquet.

    Kept as it is when its stamp is fresh (same manifest, masks, parameters); ``force`` extracts again
    (from the feature cache where it can), moving the old features to ``superseded-<time>/``.
    """
    from cxrbio.stages import masks as masks_stage

    started = time.perf_counter()
    run, config = open_run(run_dir)
    parameter_file = params_path(config)  # a bad parameter file fails before any work
    key = params_hash(load_params(parameter_file))
    runner = executor or make_executor("local", workers=config.radiomics.workers)
    made = masks_stage.run(run.root, folder=masks, executor=runner if runner.kind == "local" else None, progress=progress)
    want = freshness.expected(run, "radiomics", config.model_dump(mode="json"),
                              options={"parameters": key, "parameter_file": str(parameter_file)})
    fresh = freshness.status(run, want).fresh
    if fresh and force:
        supersede(run, [freshness.unit_label("radiomics", {}).split("/", 1)[0]], reason="forced (--force)")
    elif fresh:
        return RadiomicsResult(pd.read_parquet(run.path("radiomics")), pd.read_parquet(run.path("radiomics_status")),
                               time.perf_counter() - started, up_to_date=True, masks=made)
    manifest = with_masks(run.read_manifest(), run)
    manifest = manifest[manifest["included"]]
    jobs, status_rows = plan_jobs(run, config, manifest)
    hits, misses = [], []
    for job in jobs:  # cache hits are read here: a fully cached run starts no worker at all
        cached = cached_features(job) if job.mask_sha256 else None
        if cached is None:
            misses.append(job)
        else:
            hits.append({"image_id": job.image_id, "status": STATUS_OK, "message": "", "cache": "hit", "features": cached})
    report = counter(progress, "radiomics")
    report(len(hits), len(jobs))
    computed: Iterator[dict[str, Any]] = iter(()) if not misses else runner.map(
        extract_features, misses, lambda done, _total: report(len(hits) + done, len(jobs)), min_jobs=4, chunksize=4)
    rows, statuses = [], []
    for result in itertools.chain(hits, computed):
        values = result.pop("features")
        nonfinite = sorted(k for k, v in (values or {}).items() if v is None or not math.isfinite(v))
        statuses.append({**result, "nonfinite": ",".join(nonfinite), "seconds": result.get("seconds", 0.0)})
        if values is not None:
            rows.append({"image_id": result["image_id"], **{k: (np.nan if v is None else v) for k, v in values.items()}})
    parts = [part for part in (pd.DataFrame(statuses), status_rows) if len(part)]
    status = pd.concat(parts, ignore_index=True) if parts else status_rows  # status_rows carries the columns
    order = {image_id: i for i, image_id in enumerate(manifest["image_id"])}
    features = pd.DataFrame(rows)
    if not features.empty:
        columns = ["image_id"] + [c for c in features.columns if c != "image_id"]
        features = features[columns].sort_values("image_id", key=lambda s: s.map(order)).reset_index(drop=True)
    status = status.sort_values("image_id", key=lambda s: s.map(order)).reset_index(drop=True)
    labels = manifest.set_index("image_id")
    status.insert(1, "label", status["image_id"].map(labels["label"]).to_numpy())
    status.insert(2, "mask_source", status["image_id"].map(labels["mask_source"]).to_numpy())
    atomic_write_parquet(run.output(STAGE, "radiomics"), features)
    atomic_write_parquet(run.output(STAGE, "radiomics_status"), status)
    freshness.write_stamp(run, want, info={"images": len(features), "features": max(0, features.shape[1] - 1)})
    return RadiomicsResult(features, status, time.perf_counter() - started, masks=made)
