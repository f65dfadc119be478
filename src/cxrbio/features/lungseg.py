"""A classical lung-field segmentation for frontal chest X-rays: no trained model, no download.

The method, on the letterboxed image (every length scales with the image side ``S``):

1. **Suppress ribs and vessels.** A grey-level opening with a disc of radius ~S/60 removes bright
   structures thinner than a rib, so the lung fields become continuous dark regions.
2. **Threshold.** Within the image content (never the letterbox padding), intensities are
   stretched between their 2nd and 98th percentiles and split with Otsu's threshold: lungs
   (air) are dark, mediastinum, diaphragm and soft tissue bright.
3. **Remove the air outside the body.** Dark regions that run along the content border for more
   than a quarter of their outline are background (air around the shoulders and neck), not lung.
   A short contact (a tight crop that grazes a lung) is allowed.
4. **Anatomical priors.** A binary opening (radius ~S/40) cuts thin bridges (trachea, gaps
   between the lungs). Candidates must lie in the upper 85 % of the content, away from its
   lateral 5 %, and cover at least 2 % of it. The right lung is the largest candidate left of the
   midline (radiological convention: the patient's right is on the image's left), the left lung
   the largest one right of it; a single region crossing the midline is cut there.
5. **Regularise.** Each lung is closed with a disc of radius ~S/25 and its holes filled, which
   takes back vessels and small opacities inside the field.

The QC score (0..1) is the product of six plausibility factors, each 1 inside its plausible
range and falling linearly to 0 outside it: two lungs found (one: 0.4, none: 0); lung area
12-60 % of the content (0 below 4 % or above 80 %); left/right area balance (a ratio of 0.4 or
more scores 1); a vertical extent of at least 30 % of the content height (0 below 10 %); each
lung's centre 10-40 % of the width from the midline (0 within 3 % or beyond 47 %); and at most
10 % of the outline on the content border (0 at 35 % or more). Below ``min_qc`` the caller falls back
to the whole content area and flags the image. Dense consolidation or large effusions are
bright and therefore excluded by step 2 beyond what step 5 restores: a known limit of
intensity-based segmentation, visible in the QC score and in the report's mask overlays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Segmentation:
    mask: np.ndarray  # bool, same shape as the image, False on padding
    qc: float  # 0..1, higher = more plausible lung fields
    note: str  # why the score is low, or '' when it is not


def disk(radius: float) -> np.ndarray:
    r = max(1, int(round(radius)))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (yy * yy + xx * xx) <= r * r


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of 1-D values (maximises the between-class variance)."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(hist)
    weight_high = weight_low[-1] - weight_low
    mean_low = np.cumsum(hist * centres) / np.maximum(weight_low, 1)
    total = (hist * centres).sum()
    mean_high = (total - np.cumsum(hist * centres)) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(centres[int(np.argmax(between[:-1]))])


def _plateau(value: float, low0: float, low1: float, high1: float, high0: float) -> float:
    """1 on [low1, high1], falling linearly to 0 at low0 and high0."""
    if value < low1:
        return float(np.clip((value - low0) / (low1 - low0), 0.0, 1.0))
    if value > high1:
        return float(np.clip((high0 - value) / (high0 - high1), 0.0, 1.0))
    return 1.0


def convex_hull_mask(mask: np.ndarray) -> np.ndarray:
    """The filled convex hull of a binary mask's pixels."""
    from scipy.spatial import ConvexHull, Delaunay, QhullError

    points = np.argwhere(mask)
    if len(points) < 3:
        return mask.copy()
    try:
        hull = Delaunay(points[ConvexHull(points).vertices])
    except QhullError:  # all points on a line
        return mask.copy()
    grid = np.indices(mask.shape).reshape(2, -1).T
    return (hull.find_simplex(grid) >= 0).reshape(mask.shape)


def _border_contact(component: np.ndarray, content_rim: np.ndarray) -> float:
    """Share of the component's outline that lies on the content border."""
    outline = component & ~ndimage.binary_erosion(component)
    return float((outline & content_rim).sum()) / max(1, int(outline.sum()))


def _stretched(image: np.ndarray, content: np.ndarray) -> np.ndarray | None:
    """Smoothed, rib-suppressed intensities stretched to 0..1 between the content's 2nd and 98th percentiles."""
    size = max(image.shape)
    pixels = np.asarray(image, np.float32)
    smooth = ndimage.gaussian_filter(pixels, sigma=max(0.5, size / 200))
    opened = ndimage.grey_opening(smooth, footprint=disk(size / 60))
    low, high = np.percentile(opened[content], [2, 98])
    if high - low < 1e-6:
        return None
    return np.clip((opened - low) / (high - low), 0, 1)


def _body(stretched: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The patient's silhouette: everything brighter than the air around it.

    Air is the darkest class -- Otsu's threshold applied again within the dark side of a first
    split separates it from lung -- and it is the dark region holding the content border; lung
    is enclosed by the body. The silhouette is close to convex; its hull also spans lungs as dark
    as air (emphysema) that open onto the air at the apex. Air inside the hull that runs along
    the content border (neck, shoulders) is then taken out again. Bright things lying in the air
    (a burned-in label, a side marker) are separate components and stay outside.
    """
    size = max(stretched.shape)
    first = otsu_threshold(stretched[content])
    darkest = stretched[content & (stretched < first)]
    air_level = otsu_threshold(darkest) if darkest.size > 16 else 0.0
    foreground = (stretched >= air_level) & content
    labels, count = ndimage.label(foreground)
    if count:
        foreground = labels == 1 + int(np.argmax(ndimage.sum(foreground, labels, range(1, count + 1))))
    body = convex_hull_mask(foreground) & content
    rim = content & ~ndimage.binary_erosion(content, iterations=max(1, size // 100))
    labels, count = ndimage.label((stretched < air_level) & body)
    for index in range(1, count + 1):
        component = labels == index
        if _border_contact(component, rim) > 0.25:
            body &= ~component
    return body


def segment_body(image: np.ndarray, content: np.ndarray, lungs: np.ndarray | None = None) -> Segmentation:
    """The body (thorax outline) of a letterboxed CXR within ``content``, lungs included.

    The same silhouette the lung segmentation starts from (:func:`_body`), united with the lung
    mask when one is given (lungs are inside the body by definition). QC: the body's share of the
    content, 1 between 35 % and 100 %, falling to 0 at 20 % (a body that small is a failed
    threshold, not a patient). Known limit: a label or marker burned onto the body itself, or a
    bright collimation edge touching it, is counted as body.
    """
    content = np.asarray(content, bool)
    if not content.any():
        return Segmentation(np.zeros_like(content), 0.0, "empty image content")
    stretched = _stretched(image, content)
    if stretched is None:
        return Segmentation(np.zeros_like(content), 0.0, "flat image")
    body = _body(stretched, content)
    if lungs is not None:
        body |= np.asarray(lungs, bool) & content
    share = float(body.sum()) / float(content.sum())
    qc = _plateau(share, 0.2, 0.35, 1.0, 1.01)
    return Segmentation(body, qc, "" if qc >= 1 else f"body {share:.0%} of the image")


def segment_lungs(image: np.ndarray, content: np.ndarray) -> Segmentation:
    """Lung fields of a letterboxed frontal CXR (uint8 or float), restricted to ``content``."""
    content = np.asarray(content, bool)
    if not content.any():
        return Segmentation(np.zeros_like(content), 0.0, "empty image content")
    size = max(image.shape)
    rows, cols = np.flatnonzero(content.any(axis=1)), np.flatnonzero(content.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    height, width = bottom - top, right - left

    stretched = _stretched(image, content)
    if stretched is None:
        return Segmentation(np.zeros_like(content), 0.0, "flat image")
    body = _body(stretched, content)
    if body.sum() < 0.2 * content.sum():
        return Segmentation(np.zeros_like(content), 0.0, "no body region found")
    rim = content & ~ndimage.binary_erosion(content, iterations=max(1, size // 100))
    # Lungs are the dark part of the body's core: the core keeps the thin soft-tissue band at the
    # body's edge (dark after rib suppression) from joining the lungs to the air outside.
    margin = size / 30
    core = ndimage.binary_erosion(body, structure=disk(margin))
    if core.sum() < 0.1 * content.sum():
        core = body
    lung_level = otsu_threshold(stretched[core])
    dark_in_body = (stretched < lung_level) & body
    dark = ndimage.binary_opening(dark_in_body & core, structure=disk(size / 40))
    # Air above the shoulders is as dark as lung and often joins it through a narrow neck. A
    # stronger opening separates the two; regions running along the border are dropped, and the
    # rest is rebuilt within the dark mask (geodesic reconstruction).
    separated = ndimage.binary_opening(dark, structure=disk(size / 20))
    labels, count = ndimage.label(separated)
    for index in range(1, count + 1):
        component = labels == index
        if _border_contact(component, rim) > 0.15:
            separated[component] = False
    air = dark & ~ndimage.binary_propagation(separated, mask=dark)
    labels, count = ndimage.label(dark)
    for index in range(1, count + 1):  # whole regions of air: dark, on the border, no lung inside
        component = labels == index
        if _border_contact(component, rim) > 0.25 or not (component & separated).any():
            dark[component] = False
    lung_seeds = ndimage.binary_dilation(separated, structure=disk(size / 20)) & dark
    dark = ndimage.binary_propagation(separated, mask=lung_seeds) if separated.any() else dark & ~air

    mid = left + width / 2
    sides = []
    for side_mask in (np.arange(image.shape[1]) < mid, np.arange(image.shape[1]) >= mid):
        candidates, count = ndimage.label(dark & side_mask[None, :])
        best, best_area = None, 0
        for index in range(1, count + 1):
            component = candidates == index
            area = int(component.sum())
            cy, cx = ndimage.center_of_mass(component)
            if (area < 0.02 * content.sum() or (cy - top) / height > 0.85
                    or not 0.05 < (cx - left) / width < 0.95):
                continue
            if area > best_area:
                best, best_area = component, area
        if best is not None:
            # Give back the lung edge the core cut off: grow into dark body pixels within the margin.
            grown = ndimage.binary_dilation(best, structure=disk(margin)) & dark_in_body
            best = best | grown
            best = ndimage.binary_closing(np.pad(best, 8), structure=disk(size / 25))[8:-8, 8:-8]
            best = ndimage.binary_fill_holes(best) & content & side_mask[None, :]
        sides.append(best)

    found = [s for s in sides if s is not None]
    mask = np.zeros_like(content)
    for lung in found:
        mask |= lung
    notes = []
    count_factor = {2: 1.0, 1: 0.4, 0: 0.0}[len(found)]
    if len(found) < 2:
        notes.append(f"{len(found)} lung field(s) found")
    area_share = mask.sum() / content.sum()
    area_factor = _plateau(area_share, 0.04, 0.12, 0.60, 0.80)
    if area_factor < 1:
        notes.append(f"lung area {area_share:.0%} of the image")
    areas = [int(s.sum()) for s in found]
    balance = min(areas) / max(areas) if len(areas) == 2 else 0.0
    balance_factor = float(np.clip(balance / 0.4, 0, 1)) if len(found) == 2 else 1.0
    if balance_factor < 1:
        notes.append(f"left/right area ratio {balance:.2f}")
    extent = (np.ptp(np.flatnonzero(mask.any(axis=1))) + 1) / height if mask.any() else 0.0
    extent_factor = _plateau(extent, 0.1, 0.3, 1.0, 1.01)
    if extent_factor < 1:
        notes.append(f"vertical extent {extent:.0%}")
    offsets = [abs(ndimage.center_of_mass(lung)[1] - mid) / width for lung in found]
    position_factor = min((_plateau(o, 0.03, 0.10, 0.40, 0.47) for o in offsets), default=1.0)
    if position_factor < 1:
        notes.append("a lung field lies at the midline or the image edge")
    contact = _border_contact(mask, rim) if mask.any() else 0.0
    contact_factor = _plateau(contact, -1.0, 0.0, 0.10, 0.35)
    if contact_factor < 1:
        notes.append(f"{contact:.0%} of the outline on the image border")
    qc = count_factor * area_factor * balance_factor * extent_factor * contact_factor * position_factor
    return Segmentation(mask, float(qc), "; ".join(notes))
