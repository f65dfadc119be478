"""The six planted findings, drawn into the density map inside the lungs (class -> finding names: :data:`FINDINGS`)."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from cxrbio.data.phantom.anatomy import Anatomy, Canvas, draw_polyline, smooth_noise

#: A finding drawn: the density map with it, and a mask per finding name (the ground truth).
Finding = tuple[np.ndarray, dict[str, np.ndarray]]

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


def finding_ground_glass(c: Canvas, a: Anatomy, rng: np.random.Generator, right: np.ndarray, left: np.ndarray,
                severity: float) -> Finding:
    haze = np.zeros((c.h, c.w), dtype=np.float32)
    for lung, sign in ((right, -1), (left, 1)):
        cx_lateral = 0.5 + sign * (a.lung_center_offset + 0.6 * a.lung_half_width)
        for _ in range(int(rng.integers(2, 4))):
            bx = cx_lateral + rng.normal(0, 0.02)
            by = rng.uniform(a.diaphragm - 0.22, a.diaphragm - 0.08)
            sx, sy = rng.uniform(0.06, 0.09), rng.uniform(0.07, 0.11)
            haze = np.maximum(haze, np.exp(-(((c.x - bx) / sx) ** 2 + ((c.y - by) / sy) ** 2)) * lung)
    texture = 0.75 + 0.25 * smooth_noise(rng, (c.h, c.w), 2.5)
    density = 0.36 * severity * ndimage.gaussian_filter(haze, 1.0) * texture
    return density, {"ground_glass": haze > 0.35}


def finding_consolidation(c: Canvas, a: Anatomy, rng: np.random.Generator, right: np.ndarray, left: np.ndarray,
                severity: float) -> Finding:
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
        draw_polyline(bronchi, ys, xs, 1.0)
    bronchi = ndimage.gaussian_filter(bronchi, 0.7)
    bronchi = bronchi / (bronchi.max() + 1e-8) * region
    density = (0.5 * severity) * region_soft - 0.15 * severity * bronchi
    return density, {"consolidation": region}


def finding_edema(c: Canvas, a: Anatomy, rng: np.random.Generator, right: np.ndarray, left: np.ndarray,
                  heart: np.ndarray, severity: float) -> Finding:
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
            draw_polyline(lines, np.full_like(xs, y * c.h), xs * c.w, 1.0)
    lines = np.clip(lines, 0, 1) * lungs
    density = 0.28 * severity * ndimage.gaussian_filter(bat, 1.5) + 0.3 * severity * ndimage.gaussian_filter(lines, 0.5)
    kerley = ndimage.binary_dilation(lines > 0, iterations=1) & lungs
    return density, {"perihilar_haze": bat > 0.4, "kerley_lines": kerley, "cardiomegaly": heart}


def finding_effusion(c: Canvas, a: Anatomy, rng: np.random.Generator, right: np.ndarray, left: np.ndarray,
                severity: float) -> Finding:
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


def finding_emphysema(c: Canvas, a: Anatomy, rng: np.random.Generator, right: np.ndarray, left: np.ndarray,
                severity: float) -> Finding:
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


def finding_reticulation(c: Canvas, a: Anatomy, rng: np.random.Generator, right: np.ndarray, left: np.ndarray,
                severity: float) -> Finding:
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
