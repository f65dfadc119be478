"""Shared fixtures: a small phantom data set, image writers, the real sample."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
REAL_SAMPLE = Path(os.environ.get("CXRBIO_REAL_SAMPLE", REPO.parent / "shared" / "data" / "cxr-real-sample"))


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 images per class at 64 px: enough patients for 3 folds, seconds to make."""
    from cxrbio.data.phantom import generate_phantom

    out = tmp_path_factory.mktemp("phantom")
    generate_phantom(out, per_class=8, size=64, seed=3)
    return out


@pytest.fixture(autouse=True, scope="session")
def isolated_feature_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tests never read or fill the user's radiomics cache (~/.cache/cxrbio)."""
    folder = tmp_path_factory.mktemp("feature-cache")
    os.environ["CXRBIO_CACHE_DIR"] = str(folder)
    return folder


@pytest.fixture
def real_sample() -> Path:
    if not (REAL_SAMPLE / "manifest.csv").is_file():
        pytest.skip(f"real X-ray sample not found at {REAL_SAMPLE} (set CXRBIO_REAL_SAMPLE to its folder)")
    return REAL_SAMPLE


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


@pytest.fixture
def small_config():
    return make_config()
