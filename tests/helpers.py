"""Helpers shared by the tests: image writers, tiny configs, fold models without training, runs.

One module instead of test files importing each other's helpers.
"""

from __future__ import annotations

import os
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

#: The smallest network and data that still exercise every code path (embedding, analysis).
EMBED_TINY = {"data.image_size": 32, "folds.k": 3, "model.alpha": 0.35, "model.dense_units": 8,
              "model.batchnorm_momentum": 0.01, "train.strategies": ["scratch"], "train.batch_size": 16}

#: Training for seconds: 32 px, alpha 0.35, 3 epochs.
TRAIN_TINY = {
    "data.image_size": 32, "folds.k": 3, "model.alpha": 0.35, "model.dense_units": 16,
    "model.batchnorm_momentum": 0.9, "train.epochs": 3, "train.batch_size": 16,
    "train.early_stopping_patience": 0, "train.strategies": ["scratch"], "train.checkpoint_seconds": 0,
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
    """Study defaults with 3 folds and 64 px, plus dotted-key overrides (what unit tests scan with)."""
    from cxrbio.config import load_config

    values = {"folds.k": 3, "data.image_size": 64}
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


def scanned(data: Path, root: Path, config):
    """A run directory scanned from ``data`` with ``config`` (what most stage tests start from)."""
    from cxrbio.rundir import RunDir
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
    from cxrbio.training import register_fold_model

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

    from cxrbio.config import PAPER_CLASSES

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
