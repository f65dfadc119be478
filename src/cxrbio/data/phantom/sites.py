"""Acquisition sites and shortcuts: how a site exposes and exports its images, a burned-in corner label and marker."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxrbio.data.phantom.anatomy import class_slug
from cxrbio.errors import DataError
from cxrbio.evaluation.paper import PAPER_CLASSES


@dataclass(frozen=True)
class Site:
    """An acquisition site of the site-confounded phantom: how its images are exposed and exported.

    Everything here is acquisition, none of it anatomy: frame shape and size, bit depth and
    format, exposure curve and noise, and a burned-in corner label. A network (or the
    acquisition baseline) can recognise the site from any of them.
    """

    name: str
    width_ratio: tuple[float, float]  # width / height of the frame
    height_scale: float  # image height relative to --size
    gamma: float  # exposure curve, multiplies the per-image gamma
    noise: tuple[float, float]  # noise SD range
    export: str  # 'png16' (16-bit PNG) or 'jpeg' (8-bit RGB JPEG, quality 80)
    corner_label: bool  # a bright burned-in label block in the lower right corner


SITES = (
    Site("phantom-site-a", (0.95, 1.12), 1.0, 1.0, (0.006, 0.014), "png16", False),  # adult hospital, detector
    Site("phantom-site-b", (0.72, 0.84), 1.15, 1.35, (0.02, 0.04), "jpeg", True),  # paediatric, exported JPEGs
)


#: Share of each class imaged at site b, shaped like the study's data: Pneumonia and Normal from a
#: paediatric set, COVID-19 and the NIH classes from adult hospitals.
SITE_B_SHARE = {"COVID-19": 0.1, "Edema": 0.05, "Effusion": 0.05, "Emphysema": 0.05, "Fibrosis": 0.05,
                "Pneumonia": 0.95, "Normal": 0.85}


#: Of the controls (Normal), the share imaged at site b when one class is nested there (``nested_site``).
NESTED_CONTROL_SHARE = 0.5


def stamp_marker(image: np.ndarray, lungs: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A bright burned-in side marker ('L'-shaped token) in a top corner, never on a lung."""
    h, w = image.shape
    size = max(6, round(0.08 * h))
    corners = [(round(0.03 * h), round(0.03 * w)), (round(0.03 * h), w - size - round(0.03 * w))]
    order = rng.permutation(len(corners))
    for index in order:
        y0, x0 = corners[index]
        if not lungs[y0 : y0 + size, x0 : x0 + size].any():
            break
    else:
        raise DataError("phantom: no room for a shortcut marker outside the lungs.", fix="use a larger --size.")
    stroke = max(2, size // 4)
    patch = image[y0 : y0 + size, x0 : x0 + size]
    patch[:, :stroke] = 0.97
    patch[size - stroke :, :] = 0.97
    return image, (int(x0), int(y0), int(x0 + size), int(y0 + size))


def corner_label_box(height: int, width: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a site's burned-in label in an image of this size (lower right)."""
    bh, bw = max(5, round(0.07 * height)), max(10, round(0.22 * width))
    y0, x0 = height - bh - round(0.02 * height), width - bw - round(0.03 * width)
    return int(x0), int(y0), int(x0 + bw), int(y0 + bh)


def burn_corner_label(image: np.ndarray, lungs: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """A site's burned-in label: a bright block with dark text-like bars, lower right, off the lungs; its box."""
    x0, y0, x1, y1 = corner_label_box(*image.shape)
    bh, bw = y1 - y0, x1 - x0
    if lungs[y0 : y0 + bh, x0 : x0 + bw].any():
        return image, None
    block = image[y0 : y0 + bh, x0 : x0 + bw]
    block[:] = 0.92
    for k in range(1, bw - 1, 3):  # glyph strokes
        block[1 : bh - 1, k] = 0.15
    return image, (int(x0), int(y0), int(x0 + bw), int(y0 + bh))


def parse_shortcut(text: str | None, classes: tuple[str, ...] = PAPER_CLASSES) -> tuple[str, float] | None:
    """'CLASS:FRACTION' -> (class, fraction); clear error otherwise."""
    if not text:
        return None
    label, _, fraction_text = text.rpartition(":")
    by_key = {class_slug(c): c for c in classes}
    target = by_key.get(class_slug(label))
    try:
        fraction = float(fraction_text)
    except ValueError:
        fraction = -1.0
    if target is None or not 0.0 < fraction <= 1.0:
        raise DataError(
            f"--shortcut {text!r} is not CLASS:FRACTION.",
            fix=f"e.g. --shortcut COVID-19:0.8; classes: {', '.join(classes)}; 0 < FRACTION <= 1.",
        )
    return target, fraction
