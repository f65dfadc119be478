"""Saliency thumbnails: an out-of-fold image with the dim's saliency map and the lung contour.

Thumbnails are small PNGs embedded as data URIs (the report is one file). The saliency map is the
mean |gradient| over the dim's most activating out-of-fold images (``cxrbio analyze``'s audit);
it is drawn over the first of those images, with that image's lung mask as a cyan contour, so a
reader sees at a glance whether the evidence sits inside the lungs.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image
from scipy import ndimage

CONTOUR = np.array([0, 229, 255], dtype=np.float32)


def heat_colours(values: np.ndarray) -> np.ndarray:
    """A black-red-yellow ramp for values in [0, 1] (shape (..., 3), float 0-255)."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    red = np.clip(v * 2.0, 0.0, 1.0)
    green = np.clip(v * 2.0 - 1.0, 0.0, 1.0)
    return np.concatenate([red, green, np.zeros_like(v)], axis=-1) * 255.0


def _resize(array: np.ndarray, px: int, resample: Image.Resampling) -> np.ndarray:
    mode = "F" if array.dtype != np.uint8 else "L"
    return np.asarray(Image.fromarray(array.astype(np.float32) if mode == "F" else array, mode=mode).resize((px, px), resample))


def overlay(image: np.ndarray, saliency: np.ndarray | None, mask: np.ndarray | None, px: int) -> np.ndarray:
    """RGB uint8 (px, px, 3): the grey image, the saliency as a heat overlay, the lung contour."""
    grey = _resize(image.astype(np.uint8), px, Image.Resampling.BILINEAR).astype(np.float32)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    if saliency is not None:
        heat = np.clip(_resize(saliency.astype(np.float32), px, Image.Resampling.BILINEAR), 0.0, 1.0)
        alpha = (np.clip((heat - 0.1) / 0.9, 0.0, 1.0) ** 0.7 * 0.75)[..., None]
        rgb = rgb * (1 - alpha) + heat_colours(heat) * alpha
    if mask is not None and mask.any():
        lung = _resize(mask.astype(np.uint8) * 255, px, Image.Resampling.NEAREST) > 127
        edge = lung & ~ndimage.binary_erosion(lung, iterations=max(1, px // 96))
        rgb[edge] = CONTOUR
    return np.clip(rgb, 0, 255).astype(np.uint8)


def png_data_uri(rgb: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
