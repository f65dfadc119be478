"""The study's preprocessing: scale the longer side to the target, pad with black to a square.

The image is centred in the square. The geometry is returned so that masks, saliency maps
and thumbnails can be mapped between the original and the letterboxed frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class LetterboxGeometry:
    """Where the scaled image sits inside the ``size`` x ``size`` square."""

    size: int
    x0: int
    y0: int
    width: int
    height: int
    source_width: int = 0
    source_height: int = 0

    @property
    def scale(self) -> float:
        """Letterbox pixels per source pixel."""
        return self.width / self.source_width if self.source_width else 1.0

    def content_mask(self) -> np.ndarray:
        """True where the image is, False on the black padding."""
        mask = np.zeros((self.size, self.size), dtype=bool)
        mask[self.y0 : self.y0 + self.height, self.x0 : self.x0 + self.width] = True
        return mask


def letterbox_geometry(height: int, width: int, size: int) -> LetterboxGeometry:
    scale = size / max(height, width)
    new_w = min(size, max(1, round(width * scale)))
    new_h = min(size, max(1, round(height * scale)))
    return LetterboxGeometry(
        size=size,
        x0=(size - new_w) // 2,
        y0=(size - new_h) // 2,
        width=new_w,
        height=new_h,
        source_width=width,
        source_height=height,
    )


def letterbox(pixels: np.ndarray, size: int) -> tuple[np.ndarray, LetterboxGeometry]:
    """Letterbox a float [0, 1] image into a uint8 ``size`` x ``size`` square on black."""
    geometry = letterbox_geometry(pixels.shape[0], pixels.shape[1], size)
    resized = Image.fromarray(np.asarray(pixels, dtype=np.float32), mode="F").resize(
        (geometry.width, geometry.height), Image.Resampling.LANCZOS, reducing_gap=3.0
    )
    content = np.clip(np.rint(np.asarray(resized) * 255.0), 0, 255).astype(np.uint8)
    out = np.zeros((size, size), dtype=np.uint8)
    out[geometry.y0 : geometry.y0 + geometry.height, geometry.x0 : geometry.x0 + geometry.width] = content
    return out, geometry


def letterbox_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Letterbox a label/binary mask with nearest-neighbour sampling (labels stay labels)."""
    geometry = letterbox_geometry(mask.shape[0], mask.shape[1], size)
    resized = Image.fromarray(np.asarray(mask, dtype=np.uint8)).resize(
        (geometry.width, geometry.height), Image.Resampling.NEAREST
    )
    out = np.zeros((size, size), dtype=np.uint8)
    out[geometry.y0 : geometry.y0 + geometry.height, geometry.x0 : geometry.x0 + geometry.width] = np.asarray(resized)
    return out
