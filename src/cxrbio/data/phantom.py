"""Phantom chest X-rays: seven classes with planted, radiologically motivated findings.

Why: a biomarker toolkit must be checked against a known truth. Each phantom image comes
with its exact lung mask, a mask per planted finding and, optionally, the location of a
shortcut marker stamped outside the lungs. Later stages (attribution, radiomics, the
shortcut audit) are validated against these.

Physics in one line: a density map (soft tissue, air-filled lungs, mediastinum, heart,
ribs, clavicles, abdomen, vessels, and the finding) goes through a per-image exposure
curve, blur and noise. Anatomy varies per patient; exposure, pose, noise and the
finding's severity vary per image; several images per patient.

Findings (class -> finding names in the ground truth):

* COVID-19  -> ``ground_glass``: bilateral, peripheral, lower-zone ground-glass haze;
* Pneumonia -> ``consolidation``: dense lobar consolidation of one lung, with air bronchograms;
* Edema     -> ``perihilar_haze``, ``kerley_lines``, ``cardiomegaly``: bat-wing haze,
  short horizontal basal septal lines, an enlarged heart (cardiothoracic ratio 0.55-0.66);
* Effusion  -> ``effusion``: basal fluid with a concave meniscus, costophrenic angle blunted;
* Emphysema -> ``hyperinflation`` (whole lungs), ``bullae``: larger, darker lungs with sparse
  vessels, flat low diaphragm, a few bullae;
* Fibrosis  -> ``reticulation``: peripheral, basal reticular texture, with volume loss;
* Normal    -> none.

Output layout (documented in docs/data.md):
``DIR/manifest.csv`` (path,label,patient_id,source + ground-truth columns, readable by
``cxrbio data scan DIR``), ``DIR/findings.csv`` (one row per image and finding),
``DIR/images/<class>/<id>.png``, ``DIR/masks/lungs/<id>.png`` (0/255), ``DIR/masks/body/<id>.png``
(0/255: the thorax outline, burned-in marker and label excluded; manifest column ``body_mask``),
``DIR/masks/lesions/<finding>/<id>.png`` (0/255), ``DIR/phantom.json`` (parameters).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from cxrbio.errors import DataError
from cxrbio.evaluation.paper import PAPER_CLASSES
from cxrbio.run.atomic import atomic_write_text

PHANTOM_VERSION = 3  # 3: ground-truth body masks (masks/body/)


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
#: The phantom's manifest without its sources: ``cxrbio data scan PHANTOM/manifest-no-source.csv RUN`` scans the
#: images as a user with class folders of renamed files has them (nothing records or names the site).
HIDDEN_SOURCE_MANIFEST = "manifest-no-source.csv"
FINDINGS: dict[str, tuple[str, ...]] = {
    "COVID-19": ("ground_glass",),
    "Edema": ("perihilar_haze", "kerley_lines", "cardiomegaly"),
    "Effusion": ("effusion",),
    "Emphysema": ("hyperinflation", "bullae"),
    "Fibrosis": ("reticulation",),
    "Pneumonia": ("consolidation",),
    "Normal": (),
}
#: What a localisation test scores per disease (:mod:`cxrbio.analysis.localisation`): the findings that make
#: up its lesion, and the region the lesion is scored within ("lung": the lungs with the lesion, "body": the
#: body mask). Emphysema is scored on its bullae (hyperinflation is the whole lung, nothing to localise);
#: edema's enlarged heart lies outside the lungs, so its findings are scored within the body.
LOCALISED: dict[str, tuple[tuple[str, ...], str]] = {
    "COVID-19": (("ground_glass",), "lung"),
    "Edema": (("perihilar_haze", "kerley_lines", "cardiomegaly"), "body"),
    "Effusion": (("effusion",), "lung"),
    "Emphysema": (("bullae",), "lung"),
    "Fibrosis": (("reticulation",), "lung"),
    "Pneumonia": (("consolidation",), "lung"),
}


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



def _anatomy(rng: np.random.Generator, label: str) -> Anatomy:
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


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    field_ = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field_ / (field_.std() + 1e-8)


def _draw_polyline(canvas: np.ndarray, ys: np.ndarray, xs: np.ndarray, value: float) -> None:
    """Add ``value`` along a sampled polyline (pixel coordinates), clipped to the canvas."""
    h, w = canvas.shape
    iy, ix = np.rint(ys).astype(int), np.rint(xs).astype(int)
    keep = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    np.add.at(canvas, (iy[keep], ix[keep]), value)


class _Canvas:
    """Normalised coordinate grids of one image."""

    def __init__(self, height: int, width: int) -> None:
        self.h, self.w = height, width
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        self.y = (yy + 0.5) / height
        self.x = (xx + 0.5) / width
        self.px = 1.0 / height


def _lung_masks(c: _Canvas, a: Anatomy, heart: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _heart_mask(c: _Canvas, a: Anatomy) -> np.ndarray:
    thorax = 2 * (a.lung_center_offset + a.lung_half_width)
    half_width = a.heart_ratio * thorax / 2
    cx = 0.5 + 0.22 * half_width
    # A wide ellipse resting on the diaphragm, its apex pointing to the patient's left.
    u = (c.x - cx) / half_width
    v = (c.y - a.heart_center_y) / 0.15
    return (u**2 + v**2 < 1.0) & (c.y < a.diaphragm - 0.01 + 0.04 * (c.x > cx))


def _ribs(c: _Canvas, a: Anatomy) -> np.ndarray:
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


def _clavicles(c: _Canvas, a: Anatomy) -> np.ndarray:
    d = np.abs(c.x - 0.5)
    centre = a.lung_top + 0.02 - 0.25 * (d - 0.05)
    return np.exp(-(((c.y - centre) / 0.012) ** 2)) * (d > 0.03) * (d < 0.3)


def _vessels(c: _Canvas, a: Anatomy, rng: np.random.Generator) -> np.ndarray:
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
            _draw_polyline(vessels, ys, xs, 1.0)
    vessels = ndimage.gaussian_filter(vessels, 0.8)
    return vessels / (vessels.max() + 1e-8)


def _body_mask(c: _Canvas, a: Anatomy) -> np.ndarray:
    return ((c.x - 0.5) / a.body_half_width) ** 2 + ((c.y - 0.62) / 0.62) ** 2 < 1.0


def _render_density(c: _Canvas, a: Anatomy, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Density of the normal chest, the two lung masks and the heart mask."""
    heart = _heart_mask(c, a)
    right, left = _lung_masks(c, a, heart)
    lungs = right | left
    body = _body_mask(c, a)
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
    density += 0.025 * _smooth_noise(rng, (c.h, c.w), 2.0) * lung_soft
    return density, right, left, heart


def _finding_ground_glass(c, a, rng, right, left, severity):
    haze = np.zeros((c.h, c.w), dtype=np.float32)
    for lung, sign in ((right, -1), (left, 1)):
        cx_lateral = 0.5 + sign * (a.lung_center_offset + 0.6 * a.lung_half_width)
        for _ in range(int(rng.integers(2, 4))):
            bx = cx_lateral + rng.normal(0, 0.02)
            by = rng.uniform(a.diaphragm - 0.22, a.diaphragm - 0.08)
            sx, sy = rng.uniform(0.06, 0.09), rng.uniform(0.07, 0.11)
            haze = np.maximum(haze, np.exp(-(((c.x - bx) / sx) ** 2 + ((c.y - by) / sy) ** 2)) * lung)
    texture = 0.75 + 0.25 * _smooth_noise(rng, (c.h, c.w), 2.5)
    density = 0.36 * severity * ndimage.gaussian_filter(haze, 1.0) * texture
    return density, {"ground_glass": haze > 0.35}


def _finding_consolidation(c, a, rng, right, left, severity):
    lung = right if a.side == 0 else left
    sign = -1 if a.side == 0 else 1
    lower = rng.random() < 0.5  # upper/middle-lobe consolidation half the time, as in real pneumonia
    cx = 0.5 + sign * a.lung_center_offset
    fissure = a.lung_top + 0.30 + 0.25 * sign * (c.x - cx) * (1 if lower else -1) + rng.normal(0, 0.02)
    region = lung & ((c.y > fissure) if lower else (c.y < fissure - 0.05))
    region_soft = ndimage.gaussian_filter(region.astype(np.float32), 1.2)
    bronchi = np.zeros((c.h, c.w), dtype=np.float32)
    for _ in range(3):
        t = np.linspace(0, 1, 150)
        angle = rng.uniform(0.2, 1.2)
        ys = (a.heart_center_y - 0.15 + t * 0.18 * math.sin(angle)) * c.h
        xs = (0.5 + sign * (0.08 + t * 0.15 * math.cos(angle))) * c.w
        _draw_polyline(bronchi, ys, xs, 1.0)
    bronchi = ndimage.gaussian_filter(bronchi, 0.7)
    bronchi = bronchi / (bronchi.max() + 1e-8) * region
    density = (0.5 * severity) * region_soft - 0.15 * severity * bronchi
    return density, {"consolidation": region}


def _finding_edema(c, a, rng, right, left, heart, severity):
    lungs = right | left
    hilum_y = a.heart_center_y - 0.16
    bat = np.zeros((c.h, c.w), dtype=np.float32)
    for sign in (-1, 1):
        bat = np.maximum(bat, np.exp(-(((c.x - (0.5 + sign * 0.12)) / 0.09) ** 2 + ((c.y - hilum_y) / 0.14) ** 2)))
    bat *= lungs
    lines = np.zeros((c.h, c.w), dtype=np.float32)
    for sign in (-1, 1):
        lateral = 0.5 + sign * (a.lung_center_offset + a.lung_half_width)
        for _ in range(int(rng.integers(4, 8))):
            y = rng.uniform(a.diaphragm - 0.16, a.diaphragm - 0.04)
            length = rng.uniform(0.025, 0.045)
            xs = np.linspace(lateral - sign * 0.01, lateral - sign * (0.01 + length), 60)
            _draw_polyline(lines, np.full_like(xs, y * c.h), xs * c.w, 1.0)
    lines = np.clip(lines, 0, 1) * lungs
    density = 0.28 * severity * ndimage.gaussian_filter(bat, 1.5) + 0.3 * severity * ndimage.gaussian_filter(lines, 0.5)
    kerley = ndimage.binary_dilation(lines > 0, iterations=1) & lungs
    return density, {"perihilar_haze": bat > 0.4, "kerley_lines": kerley, "cardiomegaly": heart}


def _finding_effusion(c, a, rng, right, left, severity):
    sides = [a.side] if rng.random() < 0.75 else [0, 1]
    region = np.zeros((c.h, c.w), dtype=bool)
    for side in sides:
        lung = right if side == 0 else left
        sign = -1 if side == 0 else 1
        lateral = 0.5 + sign * (a.lung_center_offset + a.lung_half_width)
        level = a.diaphragm - (0.08 + 0.14 * severity)
        meniscus = level - 0.10 * (1 - np.abs(c.x - lateral) / (2 * a.lung_half_width)).clip(0, 1) ** 2
        # The fluid fills the lung's base up to the meniscus, which rises towards the chest
        # wall, so the costophrenic angle disappears (is "blunted").
        region |= lung & (c.y > meniscus)
    density = 0.5 * ndimage.gaussian_filter(region.astype(np.float32), 1.0) * (0.7 + 0.3 * severity)
    return density, {"effusion": region}


def _finding_emphysema(c, a, rng, right, left, severity):
    lungs = right | left
    bullae = np.zeros((c.h, c.w), dtype=bool)
    for _ in range(int(rng.integers(1, 4))):
        lung, sign = (right, -1) if rng.random() < 0.5 else (left, 1)
        bx = 0.5 + sign * (a.lung_center_offset + rng.uniform(-0.3, 0.6) * a.lung_half_width)
        by = rng.uniform(a.lung_top + 0.04, a.lung_top + 0.2)
        r = rng.uniform(0.025, 0.05)
        bullae |= (((c.x - bx) ** 2 + (c.y - by) ** 2) < r**2) & lung
    rim = bullae ^ ndimage.binary_erosion(bullae, iterations=1)
    density = -0.10 * severity * bullae + 0.05 * rim - 0.04 * severity * lungs
    return density, {"hyperinflation": lungs, "bullae": bullae}


def _finding_reticulation(c, a, rng, right, left, severity):
    lungs = right | left
    noise = rng.standard_normal((c.h, c.w))
    # The mesh scales with the image so that it survives downsampling to small training sizes.
    fine = max(0.8, 0.006 * c.h)
    band = ndimage.gaussian_filter(noise, fine) - ndimage.gaussian_filter(noise, 2.5 * fine)
    net = np.abs(band) / (np.abs(band).std() + 1e-8)
    lateral_distance = np.minimum(
        np.abs(c.x - (0.5 - a.lung_center_offset - a.lung_half_width)),
        np.abs(c.x - (0.5 + a.lung_center_offset + a.lung_half_width)),
    )
    envelope = np.exp(-((lateral_distance / 0.09) ** 2)) * np.clip((c.y - a.lung_top) / (a.diaphragm - a.lung_top), 0.2, 1.0)
    envelope *= lungs
    density = 0.26 * severity * net * envelope
    return density, {"reticulation": envelope > 0.35}


def _affine(shape: tuple[int, int], angle_deg: float, shift: tuple[float, float], scale: float):
    """Matrix and offset for ndimage.affine_transform: rotate/scale about the centre, then shift."""
    theta = math.radians(angle_deg)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]]) / scale
    centre = np.array(shape, dtype=float) / 2
    offset = centre - rot @ (centre + np.asarray(shift))
    return rot, offset


def render_image(anatomy: Anatomy, label: str, rng: np.random.Generator, height: int,
                 shortcut: bool = False, site: Site | None = None,
                 severity_range: tuple[float, float] = (0.7, 1.0)) -> PhantomImage:
    """One radiograph of this patient: density -> pose -> exposure -> blur and noise (-> the site's label)."""
    if site is not None:
        height = round(height * site.height_scale)
    width = max(16, round(height * anatomy.width_ratio))
    c = _Canvas(height, width)
    density, right, left, heart = _render_density(c, anatomy, rng)
    severity = float(rng.uniform(*severity_range)) if label != "Normal" else 0.0
    lesion_rng = np.random.default_rng([anatomy.lesion_seed, int(rng.integers(0, 3))])
    lesions: dict[str, np.ndarray] = {}
    if label == "COVID-19":
        extra, lesions = _finding_ground_glass(c, anatomy, lesion_rng, right, left, severity)
    elif label == "Pneumonia":
        extra, lesions = _finding_consolidation(c, anatomy, lesion_rng, right, left, severity)
    elif label == "Edema":
        extra, lesions = _finding_edema(c, anatomy, lesion_rng, right, left, heart, severity)
    elif label == "Effusion":
        extra, lesions = _finding_effusion(c, anatomy, lesion_rng, right, left, severity)
    elif label == "Emphysema":
        extra, lesions = _finding_emphysema(c, anatomy, lesion_rng, right, left, severity)
    elif label == "Fibrosis":
        extra, lesions = _finding_reticulation(c, anatomy, lesion_rng, right, left, severity)
    else:
        extra = 0.0
    density = density + extra

    angle = float(rng.uniform(-4, 4))
    shift = (float(rng.normal(0, 0.025 * height)), float(rng.normal(0, 0.025 * width)))
    scale = float(rng.uniform(0.93, 1.05))
    matrix, offset = _affine((height, width), angle, shift, scale)
    density = ndimage.affine_transform(density, matrix, offset=offset, order=1, mode="constant", cval=0.02)
    lungs = ndimage.affine_transform((right | left).astype(np.uint8), matrix, offset=offset, order=0) > 0
    body = (ndimage.affine_transform(_body_mask(c, anatomy).astype(np.uint8), matrix, offset=offset, order=0) > 0) | lungs
    lesions = {
        name: ndimage.affine_transform(mask.astype(np.uint8), matrix, offset=offset, order=0) > 0
        for name, mask in lesions.items()
    }

    gain, bias, gamma = rng.uniform(0.85, 1.2), rng.uniform(-0.06, 0.06), rng.uniform(0.8, 1.25)
    if site is not None:
        gamma *= site.gamma
    image = np.clip(density * gain + bias, 0, 1) ** gamma
    blur = float(rng.uniform(0.3, 0.9))
    image = ndimage.gaussian_filter(image, blur)
    noise = rng.uniform(*site.noise) if site is not None else rng.uniform(0.008, 0.03)
    acquisition = {"gain": float(gain), "bias": float(bias), "gamma": float(gamma), "blur": blur, "noise": float(noise)}
    image = image + rng.normal(0, noise, image.shape)
    image = np.clip(image, 0, 1).astype(np.float32)

    box = None
    if shortcut:
        image, box = _stamp_marker(image, lungs, rng)
        body[box[1] : box[3], box[0] : box[2]] = False
    if site is not None and site.corner_label:
        image, label_box = _burn_corner_label(image, lungs)
        if label_box is not None:
            body[label_box[1] : label_box[3], label_box[0] : label_box[2]] = False
    return PhantomImage(image=image, lungs=lungs, lesions=lesions, severity=severity, shortcut_box=box, body=body,
                        acquisition=acquisition)


def _stamp_marker(image: np.ndarray, lungs: np.ndarray, rng: np.random.Generator):
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


def _burn_corner_label(image: np.ndarray, lungs: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
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


def partial_null_classes(classes: tuple[str, ...], seed: int) -> tuple[list[str], list[str]]:
    """(planted, null) disease classes of a partial-null phantom: half of the diseases each, chosen by ``seed``.

    Different seeds null different classes, so a calibration over seeds is not one class's
    peculiarity; the control class (Normal) is never among them.
    """
    diseases = [c for c in classes if c != "Normal"]
    order = np.random.default_rng([seed, 7919]).permutation(len(diseases))
    planted = sorted((diseases[i] for i in order[: (len(diseases) + 1) // 2]), key=diseases.index)
    return planted, [c for c in diseases if c not in planted]


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


def parse_severity(text: str) -> tuple[float, float]:
    """'LOW,HIGH' -> (low, high); clear error otherwise (the range itself is checked by generate_phantom)."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise DataError(f"--severity {text!r} is not LOW,HIGH.", fix="e.g. --severity 0.3,1.0") from None
    return low, high


def _save_export(path: Path, array: np.ndarray, export: str) -> None:
    """The image as a site exports it: a 16-bit PNG, or an 8-bit RGB JPEG at quality 80."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if export == "png16":
        Image.fromarray(np.clip(np.rint(array * 65535), 0, 65535).astype(np.uint16)).save(tmp, format="PNG")
    else:
        grey = Image.fromarray(np.clip(np.rint(array * 255), 0, 255).astype(np.uint8))
        grey.convert("RGB").save(tmp, format="JPEG", quality=80)
    tmp.replace(path)


def _save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        array = np.clip(np.rint(array * 255), 0, 255).astype(np.uint8)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(array).save(tmp, format="PNG")
    tmp.replace(path)


def generate_phantom(
    out: str | Path,
    per_class: int,
    size: int = 200,
    seed: int = 0,
    shortcut: tuple[str, float] | None = None,
    images_per_patient: tuple[int, int] = (1, 3),
    classes: tuple[str, ...] = PAPER_CLASSES,
    progress: Callable[[int, int], None] | None = None,
    site_confound: bool = False,
    null: bool = False,
    severity: tuple[float, float] = (0.7, 1.0),
    isolated_site: str | None = None,
    nested_site: str | None = None,
    partial_null: bool = False,
) -> pd.DataFrame:
    """Write the phantom data set to ``out`` and return its manifest.

    Deterministic per (seed, per_class, size, shortcut, site_confound, null): each patient
    draws from its own random stream keyed by (seed, class, patient number), so adding classes
    or images does not change the others.

    ``site_confound``: every patient is imaged at one of two acquisition sites (:data:`SITES`),
    site b with the class's share in :data:`SITE_B_SHARE`; the manifest's ``source`` and ``site``
    columns record it. ``null``: no class has its anatomy or finding (every image is drawn as
    Normal; only the label differs): with ``site_confound`` the site is then the only signal.
    ``severity``: the range each image's finding severity is drawn from (uniform; the same draw,
    rescaled, so every other image property is unchanged). The default (0.7, 1.0) keeps findings
    clear; a wider range such as (0.3, 1.0) grades them, so that a feature of a disease can be
    checked against what varies *within* the disease (partialled descriptors).

    Designs a source check must get right (docs/confounding.md), each recording its sites like
    ``site_confound`` and writing :data:`HIDDEN_SOURCE_MANIFEST` beside the manifest:
    ``isolated_site`` (a class): that class entirely at site b, which images no one else (its
    effect is not estimable free of source); ``nested_site`` (a class): that class entirely at site
    b, which also images :data:`NESTED_CONTROL_SHARE` of the Normal patients (estimable within
    site b); the other classes at site a.

    ``partial_null``: half the disease classes (:func:`partial_null_classes`, chosen by the seed)
    have their anatomy and finding; the others are drawn exactly as Normal, only their label
    differs. The models then learn real features (so matching and selection work as on real
    data) while the null classes' p-values against the controls must be uniform: calibration,
    not a count of passes.
    """
    low, high = severity
    if null and partial_null:
        raise DataError("--null and --partial-null are different null designs; choose one.")
    planted = set(partial_null_classes(classes, seed)[0]) if partial_null else set(classes)
    designs = [name for name, value in (("--site-confound", site_confound), ("--isolated-site", isolated_site),
                                        ("--nested-site", nested_site)) if value]
    if len(designs) > 1:
        raise DataError(f"{' and '.join(designs)} are different site designs; choose one.")
    for option, chosen in (("--isolated-site", isolated_site), ("--nested-site", nested_site)):
        if chosen is not None and (chosen not in classes or chosen == "Normal"):
            raise DataError(f"{option} must name a disease class, one of {', '.join(c for c in classes if c != 'Normal')}; "
                            f"got {chosen!r}.")
    with_sites = bool(designs)
    if not 0.0 < low <= high <= 1.5:
        raise DataError(f"--severity must be LOW,HIGH with 0 < LOW <= HIGH <= 1.5, got {low},{high}.")
    if per_class < 1:
        raise DataError(f"--per-class must be at least 1, got {per_class}.")
    if size < 48:
        raise DataError(f"--size must be at least 48 px for the anatomy to be drawn, got {size}.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []
    finding_rows: list[dict[str, object]] = []
    total, done = per_class * len(classes), 0
    for class_index, label in enumerate(classes):
        slug = class_slug(label)
        made, patient = 0, 0
        while made < per_class:
            rng = np.random.default_rng([seed, class_index, patient])
            drawn_as = "Normal" if null or label not in planted else label
            anatomy = _anatomy(rng, drawn_as)
            site = None
            if site_confound:  # extra draws only here: the plain phantom's streams are unchanged
                site = SITES[1] if rng.random() < SITE_B_SHARE.get(label, 0.5) else SITES[0]
            elif isolated_site is not None:
                site = SITES[1] if label == isolated_site else SITES[0]
            elif nested_site is not None:
                at_b = label == nested_site or (label == "Normal" and rng.random() < NESTED_CONTROL_SHARE)
                site = SITES[1] if at_b else SITES[0]
            if site is not None:
                anatomy.width_ratio = float(rng.uniform(*site.width_ratio))
            n_images = min(int(rng.integers(images_per_patient[0], images_per_patient[1] + 1)), per_class - made)
            for k in range(n_images):
                stamp = shortcut is not None and shortcut[0] == label and rng.random() < shortcut[1]
                result = render_image(anatomy, drawn_as, rng, size, shortcut=stamp, site=site,
                                      severity_range=(low, high))
                image_name = f"{slug}-p{patient:04d}-{k}"
                suffix = ".jpg" if site is not None and site.export == "jpeg" else ".png"
                image_path = Path("images") / slug / f"{image_name}{suffix}"
                lung_path = Path("masks") / "lungs" / f"{image_name}.png"
                if site is None:
                    _save_png(out / image_path, result.image)
                else:
                    _save_export(out / image_path, result.image, site.export)
                body_path = Path("masks") / "body" / f"{image_name}.png"
                _save_png(out / lung_path, result.lungs)
                _save_png(out / body_path, result.body)
                for finding, mask in result.lesions.items():
                    mask_path = Path("masks") / "lesions" / finding / f"{image_name}.png"
                    _save_png(out / mask_path, mask)
                    finding_rows.append(
                        {"path": image_path.as_posix(), "finding": finding, "mask": mask_path.as_posix(),
                         "area_px": int(mask.sum())}
                    )
                box = result.shortcut_box
                rows.append(
                    {
                        "path": image_path.as_posix(),
                        "label": label,
                        "patient_id": f"phantom-{slug}-{patient:04d}",
                        "source": site.name if site is not None else "phantom",
                        **({"site": site.name} if site is not None else {}),
                        "lung_mask": lung_path.as_posix(),
                        "body_mask": body_path.as_posix(),
                        "findings": "|".join(result.lesions),
                        "severity": round(result.severity, 4),
                        **{f"acq_{name}": round(value, 5) for name, value in result.acquisition.items()},
                        "shortcut": box is not None,
                        "shortcut_x0": box[0] if box else -1,
                        "shortcut_y0": box[1] if box else -1,
                        "shortcut_x1": box[2] if box else -1,
                        "shortcut_y1": box[3] if box else -1,
                    }
                )
                made += 1
                done += 1
                if progress:
                    progress(done, total)
            patient += 1
    manifest = pd.DataFrame(rows)
    atomic_write_text(out / "findings.csv", pd.DataFrame(finding_rows, columns=["path", "finding", "mask", "area_px"]).to_csv(index=False))
    atomic_write_text(out / "manifest.csv", manifest.to_csv(index=False))
    if with_sites:
        atomic_write_text(out / HIDDEN_SOURCE_MANIFEST, manifest.drop(columns=["source", "site"]).to_csv(index=False))
    params = {
        "generator": "cxrbio phantom",
        "version": PHANTOM_VERSION,
        "seed": seed,
        "per_class": per_class,
        "size": size,
        "images_per_patient": list(images_per_patient),
        "shortcut": {"class": shortcut[0], "fraction": shortcut[1]} if shortcut else None,
        "site_confound": {"sites": [site.name for site in SITES], "site_b_share": SITE_B_SHARE} if site_confound else None,
        "isolated_site": isolated_site,
        "nested_site": {"class": nested_site, "control_share_at_site_b": NESTED_CONTROL_SHARE} if nested_site else None,
        "null": null,
        "partial_null": dict(zip(("planted", "null"), partial_null_classes(classes, seed))) if partial_null else None,
        "severity": [low, high],
        "classes": list(classes),
        "findings": {c: list(FINDINGS[c]) for c in classes},
    }
    atomic_write_text(out / "phantom.json", json.dumps(params, indent=2) + "\n")
    return manifest
