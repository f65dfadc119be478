"""Helpers shared by the tests: image writers, tiny configs, fold models without training, runs.

One module instead of test files importing each other's helpers.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
REAL_SAMPLE = Path(os.environ.get("CXRBIO_REAL_SAMPLE", REPO.parent / "shared" / "data" / "cxr-real-sample"))

#: A pyradiomics parameter file that extracts in a fraction of a second per image.
FAST_PARAMS = """imageType: {Original: {}}
featureClass: {firstorder: , shape2D: , glcm: [Contrast, Correlation, JointEntropy]}
setting: {binWidth: 8, label: 1, additionalInfo: false}
"""

#: What every test config sets unless the test is about it: the scan's acquisition baseline at its cheapest (one
#: tree, the fewest permutations the config allows: 0.2 s a scan instead of 3.5 s) and radiomics in this process.
#: Tests that judge the baseline's verdict or parallel extraction set their own values.
FAST_CHECKS = {"confounding.permutations": 99, "confounding.forest_trees": 1, "radiomics.workers": 1}

#: The acquisition baseline as a user's run has it (the config's defaults): for the tests that judge its verdict.
JUDGED_CHECKS = {"confounding.permutations": 1000, "confounding.forest_trees": 300}

#: The smallest network and data that still exercise every code path (embedding, analysis).
EMBED_TINY = {"data.image_size": 32, "folds.k": 3, "model.alpha": 0.35, "model.dense_units": 8,
              "model.batchnorm_momentum": 0.01, "train.strategies": ["scratch"], "train.batch_size": 16, **FAST_CHECKS}

#: :data:`EMBED_TINY` with the analysis at test scale (few resamples, a small audit, 2 patients confirm).
ANALYSIS_TINY = {**EMBED_TINY, "analysis.permutations": 5, "analysis.bootstrap": 5, "analysis.audit_dims": 2,
                 "analysis.audit_images": 4, "analysis.audit_controls": 2, "analysis.confirm_min_patients": 2}

#: Training for seconds: 32 px, alpha 0.35, 3 epochs; no op determinism and one checkpoint (after the last epoch).
#: The tests of determinism and of resuming set train.deterministic / train.checkpoint_seconds themselves.
TRAIN_TINY = {
    "data.image_size": 32, "folds.k": 3, "model.alpha": 0.35, "model.dense_units": 16,
    "model.batchnorm_momentum": 0.9, "train.epochs": 3, "train.batch_size": 16,
    "train.early_stopping_patience": 0, "train.strategies": ["scratch"], "train.checkpoint_seconds": 3600,
    "train.deterministic": False, **FAST_CHECKS,
}


def xray_like(height: int = 80, width: int = 64, seed: int = 0) -> np.ndarray:
    """A uint8 image with real contrast (passes QC) and a unique structure per seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = 40 + 150 * (np.sin(xx / (3 + seed % 5)) > 0) + rng.integers(0, 40, (height, width))
    return np.clip(base, 0, 255).astype(np.uint8)


def write_png(path: Path, array: np.ndarray | None = None, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(xray_like(seed=seed) if array is None else array).save(path)
    return path


def write_huge_png(path: Path, width: int, height: int) -> Path:
    """A valid all-black 1-bit greyscale PNG of ``width`` x ``height`` px, written without allocating its pixels
    (30,000 x 30,000 px is about 110 kB on disk: a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    slope: float = 1.0,
    intercept: float = 0.0,
    window: tuple[float, float] | None = None,
    patient_id: str = "SECRET-PID-123",
    patient_name: str = "Doe^Jane",
) -> Path:
    """An uncompressed 16-bit DICOM radiograph with identifying tags set."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.PatientBirthDate = "19600101"
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def make_config(classes: list[str] | None = None, **overrides):
    """Study defaults with 3 folds, 64 px and :data:`FAST_CHECKS`, plus dotted-key overrides (what unit tests scan with)."""
    from cxrbio.config import load_config

    values = {"folds.k": 3, "data.image_size": 64, **FAST_CHECKS}
    if classes is not None:
        values["data.classes"] = classes
        values["data.positive_class"] = "COVID-19" if "COVID-19" in classes else None
    values.update({k.replace("__", "."): v for k, v in overrides.items()})
    return load_config(None, values)




def tiny_config(**extra):
    """TRAIN_TINY plus dotted-key overrides (``train__epochs=2``)."""
    from cxrbio.config import load_config

    values = dict(TRAIN_TINY)
    values.update({k.replace("__", "."): v for k, v in extra.items()})
    return load_config(None, values)


def copy_run(source: Path, target: Path):
    """A copy of a shared run directory (session fixtures are read-only): the test writes into the copy."""
    from cxrbio.run.rundir import RunDir

    shutil.copytree(source, target)
    return RunDir(target)


def scanned_copy(source: Path, target: Path):
    """A copy of a trained run with nothing after the scan: no fold models, no later results (to train again)."""
    from cxrbio.run.artifacts import ARTIFACTS, STAMPS

    run = copy_run(source, target)
    for artifact in ARTIFACTS.values():
        if artifact.stage not in ("scan", "demo") and not artifact.cache:
            top = artifact.pattern.split("/", 1)[0]
            for path in (target / top, target / STAMPS / top):
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
    return run


def scanned(data: Path, root: Path, config):
    """A run directory scanned from ``data`` with ``config`` (what most stage tests start from)."""
    from cxrbio.run.rundir import RunDir
    from cxrbio.stages import scan

    scan.run(root, data=data, config=config)
    return RunDir(root)


def fold_model(config, seed: int):
    """A network as training leaves it, minus the training: random weights, and BatchNorm statistics
    taken from one batch (with the initial statistics every GAP value is ~1e-13, too flat to test)."""
    from cxrbio.models.mobilenet import build_model
    from cxrbio.models.strategies import Strategy

    model = build_model(len(config.data.classes), config.data.image_size, config.model, Strategy.parse("scratch"), seed=seed)
    batch = np.random.default_rng(seed).uniform(0, 255, (16, config.data.image_size, config.data.image_size, 1))
    model(batch.astype(np.float32), training=True)
    return model


def untrained_fold_models(run, config, strategies=("scratch", "finetune-2")) -> None:
    """Fold models registered in the run without training: embedding export does not care how the
    weights were reached, and this takes seconds."""
    from cxrbio.run.fold_files import register_fold_model

    for fold in range(config.folds.k):
        model = fold_model(config, seed=fold)
        for strategy in strategies:
            register_fold_model(run, config, strategy, fold, model)


def scan(data, config, run_dir, **options):
    """stages.scan.run with the argument order most tests read best in; returns its result."""
    from cxrbio.stages import scan as scan_stage

    return scan_stage.run(run_dir, data=data, config=config, **options)


def synthetic_predictions(n_folds: int = 3, per_fold: int = 60, accuracy: float = 0.8, seed: int = 0,
                          classes: tuple[str, ...] | list[str] | None = None) -> Any:
    """Out-of-fold predictions as ``cxrbio train`` writes them: two images per patient, p = 0.9 on the prediction.

    ``accuracy`` is the chance of predicting the true class outright (the rest are uniform guesses,
    some of them right).
    """
    import pandas as pd

    from cxrbio.evaluation.paper import PAPER_CLASSES

    classes = list(classes or PAPER_CLASSES)
    rng = np.random.default_rng(seed)
    rows = []
    for fold in range(n_folds):
        for i in range(per_fold):
            true = int(rng.integers(0, len(classes)))
            predicted = true if rng.random() < accuracy else int(rng.integers(0, len(classes)))
            p = np.full(len(classes), 0.1 / (len(classes) - 1))
            p[predicted] = 0.9
            rows.append({"image_id": f"i{fold}-{i}", "patient_id": f"pt{fold}-{i // 2}", "fold": fold, "true": true,
                         "predicted": predicted, **{f"p_{c}": p[k] for k, c in enumerate(classes)}})
    return pd.DataFrame(rows)
