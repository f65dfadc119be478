"""Phantom anatomy: a patient's thorax drawn as a density map (lungs, heart, ribs, clavicles, vessels, body) and its masks."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage


def class_slug(label: str) -> str:
    return re.sub(r"[^0-9a-z]+", "-", label.lower()).strip("-")


@dataclass
class Anatomy:
    """One patient's body, fixed across their images (normalised coordinates, y down)."""

    width_ratio: float
    body_half_width: float
    lung_center_offset: float
    lung_half_width: float
    lung_top: float
    diaphragm: float
    dome_height: float
    heart_ratio: float
    heart_center_y: float
    rib_phase: float
    lung_density: float
    vessel_strength: float
    side: int = 0
    lesion_seed: int = 0


@dataclass
class PhantomImage:
    image: np.ndarray
    lungs: np.ndarray
    lesions: dict[str, np.ndarray] = field(default_factory=dict)
    severity: float = 0.0
    shortcut_box: tuple[int, int, int, int] | None = None
    #: The patient's body (thorax outline) in the frame, burned-in marker and label excluded:
    #: what the shortcut audit calls "inside the body".
    body: np.ndarray | None = None
    #: How the image was exposed and processed (gain, bias, gamma, blur, noise): acquisition, not
    #: anatomy. Written to the manifest (``acq_*``) so a unit that tracks exposure can be built and
    #: shown to be a nuisance, not a disease descriptor.
    acquisition: dict[str, float] = field(default_factory=dict)


def sample_anatomy(rng: np.random.Generator, label: str) -> Anatomy:
    anatomy = Anatomy(
        width_ratio=float(rng.uniform(0.82, 1.0)),
        body_half_width=float(rng.uniform(0.41, 0.47)),
        lung_center_offset=float(rng.uniform(0.17, 0.205)),
        lung_half_width=float(rng.uniform(0.125, 0.15)),
        lung_top=float(rng.uniform(0.11, 0.17)),
        diaphragm=float(rng.uniform(0.70, 0.77)),
        dome_height=float(rng.uniform(0.05, 0.08)),
        heart_ratio=float(rng.uniform(0.40, 0.49)),
        heart_center_y=float(rng.uniform(0.62, 0.66)),
        rib_phase=float(rng.uniform(0.0, 1.0)),
        lung_density=float(rng.uniform(0.12, 0.18)),
        vessel_strength=float(rng.uniform(0.8, 1.2)),
        side=int(rng.integers(0, 2)),
        lesion_seed=int(rng.integers(0, 2**31 - 1)),
    )
    if label == "Edema":
        anatomy.heart_ratio = float(rng.uniform(0.55, 0.66))
    elif label == "Emphysema":
        anatomy.lung_half_width *= 1.12
        anatomy.lung_top -= 0.04
        anatomy.diaphragm += 0.06
        anatomy.dome_height *= 0.3
        anatomy.lung_density *= 0.45
        anatomy.vessel_strength *= 0.45
    elif label == "Fibrosis":
        anatomy.lung_half_width *= 0.92
        anatomy.lung_top += 0.02
        anatomy.diaphragm -= 0.06
    return anatomy


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    field_ = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field_ / (field_.std() + 1e-8)


def draw_polyline(canvas: np.ndarray, ys: np.ndarray, xs: np.ndarray, value: float) -> None:
    """Add ``value`` along a sampled polyline (pixel coordinates), clipped to the canvas."""
    h, w = canvas.shape
    iy, ix = np.rint(ys).astype(int), np.rint(xs).astype(int)
    keep = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    np.add.at(canvas, (iy[keep], ix[keep]), value)


class Canvas:
    """Normalised coordinate grids of one image."""

    def __init__(self, height: int, width: int) -> None:
        self.h, self.w = height, width
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        self.y = (yy + 0.5) / height
        self.x = (xx + 0.5) / width
        self.px = 1.0 / height


def _lung_masks(c: Canvas, a: Anatomy, heart: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Right lung (image left) and left lung (image right), each cut by diaphragm and heart."""
    masks = []
    half_height = (a.diaphragm + 0.06 - a.lung_top) / 2
    center_y = a.lung_top + half_height
    for sign in (-1, 1):
        cx = 0.5 + sign * a.lung_center_offset
        u = (c.x - cx) / a.lung_half_width
        v = (c.y - center_y) / half_height
        # Apex rounder than the base: flatter exponent below the centre.
        shape = np.abs(u) ** 2.2 + np.where(v < 0, np.abs(v) ** 2.0, np.abs(v) ** 4.0) < 1.0
        dome = a.diaphragm - a.dome_height * np.exp(-(((c.x - cx) / (0.75 * a.lung_half_width)) ** 2))
        # Keep the mediastinum clear.
        medial = np.abs(c.x - 0.5) > 0.055
        masks.append(shape & (c.y < dome) & medial & ~heart)
    return masks[0], masks[1]


def _heart_mask(c: Canvas, a: Anatomy) -> np.ndarray:
    thorax = 2 * (a.lung_center_offset + a.lung_half_width)
    half_width = a.heart_ratio * thorax / 2
    cx = 0.5 + 0.22 * half_width
    # A wide ellipse resting on the diaphragm, its apex pointing to the patient's left.
    u = (c.x - cx) / half_width
    v = (c.y - a.heart_center_y) / 0.15
    return (u**2 + v**2 < 1.0) & (c.y < a.diaphragm - 0.01 + 0.04 * (c.x > cx))


def _ribs(c: Canvas, a: Anatomy) -> np.ndarray:
    ribs = np.zeros((c.h, c.w), dtype=np.float32)
    d = np.abs(c.x - 0.5)
    spacing = (a.diaphragm - a.lung_top) / 8.5
    thickness = 0.011
    for i in range(10):
        y0 = a.lung_top - 0.03 + (i + a.rib_phase * 0.5) * spacing
        centre = y0 + 1.4 * (d - 0.13) ** 2 + 0.02 * (d > 0.06)
        ribs += np.exp(-(((c.y - centre) / thickness) ** 2)) * (d > 0.05)
    chest_wall = a.lung_center_offset + a.lung_half_width + 0.05
    return ribs * (d < chest_wall) * (c.y < a.diaphragm + 0.03)


def _clavicles(c: Canvas, a: Anatomy) -> np.ndarray:
    d = np.abs(c.x - 0.5)
    centre = a.lung_top + 0.02 - 0.25 * (d - 0.05)
    return np.exp(-(((c.y - centre) / 0.012) ** 2)) * (d > 0.03) * (d < 0.3)


def _vessels(c: Canvas, a: Anatomy, rng: np.random.Generator) -> np.ndarray:
    vessels = np.zeros((c.h, c.w), dtype=np.float32)
    for sign in (-1, 1):
        hilum_x, hilum_y = 0.5 + sign * 0.09, a.heart_center_y - 0.17
        for _ in range(14):
            angle = rng.uniform(-0.45 * math.pi, 0.55 * math.pi)
            direction = np.array([math.sin(angle), sign * abs(math.cos(angle)) + 0.2 * sign])
            length = rng.uniform(0.12, 0.28)
            t = np.linspace(0, 1, 220)
            wobble = 0.015 * np.sin(t * rng.uniform(4, 9) + rng.uniform(0, 6))
            ys = (hilum_y + t * length * direction[0] + wobble) * c.h
            xs = (hilum_x + t * length * direction[1] * 0.8 + wobble) * c.w
            draw_polyline(vessels, ys, xs, 1.0)
    vessels = ndimage.gaussian_filter(vessels, 0.8)
    return vessels / (vessels.max() + 1e-8)


def body_outline(c: Canvas, a: Anatomy) -> np.ndarray:
    return ((c.x - 0.5) / a.body_half_width) ** 2 + ((c.y - 0.62) / 0.62) ** 2 < 1.0


def render_density(c: Canvas, a: Anatomy, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Density of the normal chest, the two lung masks and the heart mask."""
    heart = _heart_mask(c, a)
    right, left = _lung_masks(c, a, heart)
    lungs = right | left
    body = body_outline(c, a)
    density = np.where(body, 0.48, 0.02).astype(np.float32)
    density += 0.08 * (1 - np.abs(c.x - 0.5) / a.body_half_width).clip(0, 1) * body
    abdomen = body & (c.y > a.diaphragm - 0.02) & ~lungs
    density += 0.12 * abdomen
    lung_soft = ndimage.gaussian_filter(lungs.astype(np.float32), 1.5)
    density -= (0.48 - a.lung_density) * lung_soft
    density += 0.14 * ndimage.gaussian_filter(heart.astype(np.float32), 1.0)
    density += 0.2 * np.exp(-(((c.x - 0.5) / 0.045) ** 2)) * body
    density += 0.16 * _ribs(c, a) * body + 0.25 * _clavicles(c, a)
    density += 0.18 * a.vessel_strength * _vessels(c, a, rng) * lung_soft
    density += 0.025 * smooth_noise(rng, (c.h, c.w), 2.0) * lung_soft
    return density, right, left, heart


def pose_affine(shape: tuple[int, int], angle_deg: float, shift: tuple[float, float],
                scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Matrix and offset for ndimage.affine_transform: rotate/scale about the centre, then shift."""
    theta = math.radians(angle_deg)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]]) / scale
    centre = np.array(shape, dtype=float) / 2
    offset = centre - rot @ (centre + np.asarray(shift))
    return rot, offset
