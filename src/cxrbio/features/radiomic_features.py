"""Classical radiomics features of each image inside its lung mask, with pyradiomics, cached and parallel.

Each included image is letterboxed to ``data.image_size`` (the frame of its mask and of the
network) and given to pyradiomics as a **2-D** SimpleITK image with its mask, using the
parameter file ``radiomics.params`` (default ``configs/radiomics.yaml``). Texture matrices
are then computed in-plane and ``shape2D`` describes the lung fields.

The results go to ``radiomics/features.parquet`` (``image_id`` + one float column per
feature, named as pyradiomics names them) and ``radiomics/status.parquet`` (per image:
``status`` = ok / failed / no mask, ``message``, ``nonfinite`` feature names, ``cache`` =
hit / miss, ``seconds``). Failed images are never dropped silently: they are in the status
table and printed by the command.

Cache: one JSON file per (image hash, mask hash, parameter hash) under
``radiomics.cache_dir`` (default ``$CXRBIO_CACHE_DIR`` or ``~/.cache/cxrbio``), so re-runs and
other runs on the same images reuse results. The image hash is the SHA-256 of the source
file (from the manifest) with the letterbox size; the mask hash that of the mask's pixels;
the parameter hash covers the parameter file's content and pyradiomics' version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbio.config import Config, bundled_config
from cxrbio.errors import ConfigError
from cxrbio.run.caches import feature_cache_file, read_cached_json, write_cached_json
from cxrbio.run.mask_files import read_mask_file
from cxrbio.run.rundir import RunDir

EXTRACTION_VERSION = 2  # bump when the way images reach pyradiomics changes
BORDER = 1  # px of black added around image and mask (see extract_features)
STATUS_OK, STATUS_FAILED, STATUS_NO_MASK = "ok", "failed", "no mask"
MIN_MASK_PIXELS = 16


def params_path(config: Config) -> Path:
    """The parameter file: a path as given, else a file of that name in cxrbio's configs/."""
    given = Path(config.radiomics.params).expanduser()
    if given.is_file():
        return given.resolve()
    bundled = bundled_config(config.radiomics.params)
    if bundled.is_file():
        return bundled
    raise ConfigError(f"radiomics parameter file {config.radiomics.params} not found.",
                      fix="set radiomics.params to an existing pyradiomics YAML file (e.g. radiomics.yaml).")


def load_params(path: Path) -> dict[str, Any]:
    import yaml

    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}", fix="fix the file.") from None
    if not isinstance(params, dict) or not params.get("featureClass"):
        raise ConfigError(f"{path} names no featureClass.", fix="list pyradiomics feature classes under featureClass:.")
    setting = params.get("setting") or {}
    if setting.get("force2D"):
        raise ConfigError(
            f"{path} sets force2D: cxrbio already passes 2-D images, and pyradiomics 3.0.1 then drops one of the "
            "two in-plane axes from the wavelet filter (LH/HL/HH collapse into one mislabelled 'wavelet-H').",
            fix="remove force2D (2-D extraction, with shape2D, is what cxrbio does anyway).")
    return params


def params_hash(params: dict[str, Any]) -> str:
    import radiomics

    canonical = json.dumps({"params": params, "pyradiomics": radiomics.__version__, "extraction": EXTRACTION_VERSION},
                           sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def cache_root(config: Config) -> Path:
    base = config.radiomics.cache_dir or os.environ.get("CXRBIO_CACHE_DIR") or Path.home() / ".cache" / "cxrbio"
    return Path(base).expanduser().joinpath("radiomics")  # the user's cache, shared by runs (not a run path)


@dataclass(frozen=True)
class FeatureJob:
    image_id: str
    image_path: str
    image_sha256: str
    mask_path: str
    mask_sha256: str
    size: int
    params_file: str
    params_key: str
    cache_dir: str


_EXTRACTORS: dict[str, Any] = {}


def quiet_worker() -> None:
    """One thread per worker process (the processes are the parallelism) and no pyradiomics chatter.

    Called where a process makes its extractor, so every process that extracts (pool worker,
    Ray task, or this one) is configured, and none that does not.
    """
    import SimpleITK as sitk

    sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(1)
    logging.getLogger("radiomics").setLevel(logging.ERROR)


def _extractor(params_file: str) -> Any:
    if params_file not in _EXTRACTORS:
        from radiomics import featureextractor

        quiet_worker()
        _EXTRACTORS[params_file] = featureextractor.RadiomicsFeatureExtractor(params_file)
    return _EXTRACTORS[params_file]


def mask_digest(mask: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(mask, np.uint8).tobytes() + str(mask.shape).encode()).hexdigest()


def cache_file(job: FeatureJob) -> Path:
    key = hashlib.sha256(f"{job.image_sha256}|{job.size}|{job.mask_sha256}|{job.params_key}".encode()).hexdigest()
    return feature_cache_file(job.cache_dir, job.params_key, key)


def cached_features(job: FeatureJob) -> dict[str, float] | None:
    return read_cached_json(cache_file(job))  # a damaged entry is removed and computed again


def extract_features(job: FeatureJob) -> dict[str, Any]:
    """Compute one image's features and cache them; never raises for one bad image."""
    import SimpleITK as sitk

    from cxrbio.data.imageio import read_image
    from cxrbio.data.preprocess import letterbox
    from cxrbio.errors import CxrbioError

    started = time.perf_counter()
    out: dict[str, Any] = {"image_id": job.image_id, "status": STATUS_FAILED, "message": "", "cache": "miss",
                           "features": None}
    try:
        mask = read_mask_file(job.mask_path).astype(np.uint8)
    except OSError as error:
        out["message"] = f"mask {job.mask_path} cannot be read ({error.__class__.__name__}); run 'cxrbio masks --force'"
        return out
    try:
        image, _ = letterbox(read_image(job.image_path).pixels, job.size)
    except CxrbioError as error:
        out["message"] = error.message
        return out
    if mask.shape != image.shape:
        out["message"] = f"mask {job.mask_path} is {mask.shape}, the image {image.shape}; run 'cxrbio masks --force'"
        return out
    if int(mask.sum()) < MIN_MASK_PIXELS:
        out["message"] = f"mask {job.mask_path} has {int(mask.sum())} pixels (< {MIN_MASK_PIXELS})"
        return out
    try:
        # pyradiomics finds "no labels" in a mask without any background pixel (a whole square
        # image); a 1-px black frame around image and mask, as letterbox padding would give, avoids it.
        padded_image = np.pad(image.astype(np.float32), BORDER)
        padded_mask = np.pad(mask, BORDER)
        result = _extractor(job.params_file).execute(sitk.GetImageFromArray(padded_image),
                                                     sitk.GetImageFromArray(padded_mask), label=1)
    except Exception as error:  # noqa: BLE001 - pyradiomics raises bare ValueError/RuntimeError/...
        out["message"] = f"pyradiomics failed on {job.image_path}: {error.__class__.__name__}: {error}"
        return out
    features = {name: float(value) for name, value in result.items() if not name.startswith("diagnostics_")}
    try:
        write_cached_json(cache_file(job), features)
    except OSError as error:  # a read-only or full cache costs re-computation, not the result
        out["message"] = f"not cached ({error.strerror or error})"
    out.update(status=STATUS_OK, features=features, seconds=time.perf_counter() - started)
    return out


@dataclass
class RadiomicsResult:
    features: pd.DataFrame
    status: pd.DataFrame
    seconds: float
    up_to_date: bool = False  # the stamp was fresh: nothing was extracted
    masks: Any = None  # the masks stage's result, when this call ran it

    @property
    def problems(self) -> pd.DataFrame:
        bad = (self.status["status"] != STATUS_OK) | (self.status["nonfinite"] != "")
        return self.status[bad]


def plan_jobs(run: RunDir, config: Config, manifest: pd.DataFrame) -> tuple[list[FeatureJob], pd.DataFrame]:
    """Jobs for images with a mask; status rows for those without one (``manifest`` has the mask columns)."""
    from cxrbio.data.duplicates import sha256_file

    params_file = params_path(config)
    key = params_hash(load_params(params_file))
    cache = cache_root(config)
    jobs, missing = [], []
    row: Any  # pandas types rows and group keys loosely
    for row in manifest.itertuples(index=False):
        source = getattr(row, "mask_source", None)
        mask_file = str(run.path("mask_file", image_id=row.image_id))
        if source == "none" or not Path(mask_file).is_file():
            note = getattr(row, "mask_note", "") or "no mask file; run 'cxrbio masks'"
            missing.append({"image_id": row.image_id, "status": STATUS_NO_MASK, "message": note, "cache": "",
                            "nonfinite": "", "seconds": 0.0})
            continue
        sha = row.sha256 if isinstance(row.sha256, str) and row.sha256 else sha256_file(row.path)
        try:
            mask_sha = mask_digest(read_mask_file(mask_file))
        except OSError:
            mask_sha = ""  # the worker reports the unreadable mask
        jobs.append(FeatureJob(row.image_id, row.path, sha, mask_file, mask_sha, config.data.image_size,
                               str(params_file), key, str(cache)))
    return jobs, pd.DataFrame(missing, columns=["image_id", "status", "message", "cache", "nonfinite", "seconds"])
