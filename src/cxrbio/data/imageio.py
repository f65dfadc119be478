"""Decode any supported X-ray file into one float image in [0, 1], 1 = dense (white).

Everything downstream (letterbox, QC, hashes, training cache) starts from this one
representation, so PNG/JPEG of any bit depth and colour mode and DICOM all behave alike.
DICOM identifying tags are read only to return a raw patient id to the caller, which
pseudonymises it; no tag value is ever written anywhere.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cxrbio.errors import ImageReadError, ImageTooLarge

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".tif", ".tiff", ".bmp"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})


@dataclass(frozen=True)
class DecodedImage:
    """An image as float32 intensities in [0, 1] (0 = air/black), with what we learnt reading it."""

    pixels: np.ndarray
    format: str
    bits: int
    patient_hint: str | None = None
    # How the file stores the image (acquisition and export, not anatomy): the acquisition baseline's inputs.
    stored_mode: str = ""  # PIL mode as stored (L, RGB, I;16, ...), or the DICOM photometric interpretation
    jpeg_quality: float = float("nan")  # estimated from the quantization tables; NaN if not JPEG
    pixel_spacing: float = float("nan")  # DICOM (Imager)PixelSpacing, mm; NaN if absent
    compressed: bool = False  # lossy or lossless compression other than PNG's (JPEG, compressed DICOM)
    device_hint: str | None = None  # DICOM Manufacturer|ManufacturerModelName|StationName, for the scan to pseudonymise

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


#: The JPEG standard's luminance quantization table (Annex K), against which a file's table is scaled.
_STANDARD_LUMINANCE_SUM = 3688  # the sum of the 64 entries of Annex K table K.1


def jpeg_quality(quantization: dict[int, Any] | None) -> float:
    """The libjpeg quality (1-100) that would produce the file's luminance table, from its sum (order-free)."""
    if not quantization or 0 not in quantization:
        return float("nan")
    scale = 100.0 * float(np.sum(quantization[0])) / _STANDARD_LUMINANCE_SUM
    quality = (200.0 - scale) / 2.0 if scale <= 100 else 5000.0 / scale
    return float(np.clip(round(quality), 1, 100))


def is_dicom_file(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def looks_like_image(path: Path) -> bool:
    """Whether discovery should treat this file as an image (by suffix or DICOM preamble)."""
    return path.suffix.lower() in IMAGE_SUFFIXES or (path.suffix == "" and is_dicom_file(path))


def read_image(path: str | Path, *, max_pixels: int | None = None) -> DecodedImage:
    """Decode ``path``; raises :class:`ImageReadError` naming the file when it cannot.

    ``max_pixels``: refuse (:class:`ImageTooLarge`) an image with more pixels, judged from its header
    before any pixel is decoded; the scan passes ``data.qc.max_pixels``, later readers None (the scan
    admitted their images). PIL's own decompression-bomb limit is replaced by this one.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: file does not exist.", fix="correct the path or remove the entry.")
    if is_dicom_file(path):
        return _read_dicom(path, max_pixels)
    return _read_raster(path, max_pixels)


def _check_size(path: Path, width: int, height: int, frames: int, max_pixels: int | None) -> None:
    pixels = int(width) * int(height) * max(1, int(frames))
    if max_pixels is not None and pixels > max_pixels:
        raise ImageTooLarge(
            f"{path}: {width} x {height} px{f' x {frames} frames' if frames > 1 else ''} ({pixels / 1e6:.1f} MP) exceeds "
            f"data.qc.max_pixels ({max_pixels / 1e6:.1f} MP); not decoded.",
            fix="downsample it, or raise data.qc.max_pixels if it is a real radiograph.")


def _rescale(values: np.ndarray) -> np.ndarray:
    """Linear min-max rescale to [0, 1]; a constant image becomes all zeros."""
    values = values.astype(np.float32, copy=False)
    low, high = float(np.min(values)), float(np.max(values))
    if not np.isfinite(low) or not np.isfinite(high):
        raise ValueError("non-finite pixel values")
    if high <= low:
        return np.zeros_like(values, dtype=np.float32)
    return (values - low) / (high - low)


def _read_raster(path: Path, max_pixels: int | None) -> DecodedImage:
    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = None  # PIL's bomb check at open() is replaced by max_pixels, judged from the header
            try:
                opened = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = limit
            with opened:
                _check_size(path, *opened.size, 1, max_pixels)  # only the first frame is decoded
                opened.load()
                image = ImageOps.exif_transpose(opened)
                fmt = (opened.format or path.suffix.lstrip(".")).lower()
                stored_mode = opened.mode
                quality = jpeg_quality(getattr(opened, "quantization", None)) if fmt in ("jpeg", "mpo") else float("nan")
    except UnidentifiedImageError:
        raise ImageReadError(
            f"{path}: not an image file PIL can read.", fix="remove it from the data or convert it to PNG."
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ImageReadError(
            f"{path}: image is corrupt or truncated ({error}).", fix="re-export the image or remove it."
        ) from None
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image)
        bits = 16 if mode.startswith("I;16") or values.max(initial=0) > 255 else 8
        pixels = _rescale(values) if bits > 8 or mode == "F" else values.astype(np.float32) / 255.0
    else:
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            image = Image.alpha_composite(black, rgba)
        pixels = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        bits = 8
    if pixels.ndim != 2 or min(pixels.shape) < 8:
        raise ImageReadError(f"{path}: image is {pixels.shape}, too small to be an X-ray.", fix="remove it.")
    return DecodedImage(pixels=np.ascontiguousarray(pixels, dtype=np.float32), format=fmt, bits=bits,
                        stored_mode=stored_mode, jpeg_quality=quality, compressed=fmt in ("jpeg", "mpo", "webp"))


def _read_dicom(path: Path, max_pixels: int | None) -> DecodedImage:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        dataset = pydicom.dcmread(path)
        _check_size(path, int(getattr(dataset, "Columns", 0) or 0), int(getattr(dataset, "Rows", 0) or 0),
                    int(getattr(dataset, "NumberOfFrames", 1) or 1), max_pixels)
        raw = dataset.pixel_array
    except ImageTooLarge:
        raise
    except InvalidDicomError:
        raise ImageReadError(f"{path}: not a valid DICOM file.", fix="remove it or re-export it.") from None
    except Exception as error:  # pydicom raises many types for missing handlers and bad data
        raise ImageReadError(
            f"{path}: DICOM pixel data cannot be decoded ({type(error).__name__}: {error}).",
            fix="install a decoder for its transfer syntax (e.g. pylibjpeg) or re-export it uncompressed.",
        ) from None
    if int(getattr(dataset, "NumberOfFrames", 1) or 1) > 1:
        raise ImageReadError(f"{path}: multi-frame DICOM is not a radiograph.", fix="export the frontal frame alone.")
    photometric = str(getattr(dataset, "PhotometricInterpretation", "MONOCHROME2")).upper()
    values = np.asarray(raw)
    if values.ndim == 3:  # colour DICOM (secondary capture): use luminance
        values = values[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    else:
        values = apply_modality_lut(values, dataset)
        values = apply_voi_lut(values, dataset)
    try:
        pixels = _rescale(np.asarray(values))
    except ValueError:
        raise ImageReadError(f"{path}: DICOM holds non-finite pixel values.", fix="remove it.") from None
    if photometric == "MONOCHROME1":  # high values are black: invert to the usual polarity
        pixels = 1.0 - pixels
    patient = str(getattr(dataset, "PatientID", "") or "").strip() or None
    bits = int(getattr(dataset, "BitsStored", 16) or 16)
    spacing = getattr(dataset, "PixelSpacing", None) or getattr(dataset, "ImagerPixelSpacing", None)
    try:
        pixel_spacing = float(spacing[0]) if spacing else float("nan")
    except (TypeError, ValueError, IndexError):
        pixel_spacing = float("nan")
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    device = "|".join(str(getattr(dataset, tag, "") or "").strip()
                      for tag in ("Manufacturer", "ManufacturerModelName", "StationName"))
    return DecodedImage(pixels=np.ascontiguousarray(pixels, dtype=np.float32), format="dicom", bits=bits, patient_hint=patient,
                        stored_mode=photometric, pixel_spacing=pixel_spacing,
                        compressed=bool(getattr(syntax, "is_compressed", False)),
                        device_hint=device if device.strip("|") else None)
