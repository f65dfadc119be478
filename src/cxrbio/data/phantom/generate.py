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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from cxrbio.data.phantom.anatomy import Anatomy, Canvas, PhantomImage, body_outline, class_slug, pose_affine, render_density, sample_anatomy
from cxrbio.data.phantom.findings import (
    FINDINGS,
    finding_consolidation,
    finding_edema,
    finding_effusion,
    finding_emphysema,
    finding_ground_glass,
    finding_reticulation,
)
from cxrbio.data.phantom.sites import NESTED_CONTROL_SHARE, SITE_B_SHARE, SITES, Site, burn_corner_label, stamp_marker
from cxrbio.errors import DataError
from cxrbio.evaluation.paper import PAPER_CLASSES
from cxrbio.run.atomic import atomic_write_text

PHANTOM_VERSION = 3  # 3: ground-truth body masks (masks/body/)


#: The phantom's manifest without its sources: ``cxrbio data scan PHANTOM/manifest-no-source.csv RUN`` scans the
#: images as a user with class folders of renamed files has them (nothing records or names the site).
HIDDEN_SOURCE_MANIFEST = "manifest-no-source.csv"


def render_image(anatomy: Anatomy, label: str, rng: np.random.Generator, height: int,
                 shortcut: bool = False, site: Site | None = None,
                 severity_range: tuple[float, float] = (0.7, 1.0)) -> PhantomImage:
    """One radiograph of this patient: density -> pose -> exposure -> blur and noise (-> the site's label)."""
    if site is not None:
        height = round(height * site.height_scale)
    width = max(16, round(height * anatomy.width_ratio))
    c = Canvas(height, width)
    density, right, left, heart = render_density(c, anatomy, rng)
    severity = float(rng.uniform(*severity_range)) if label != "Normal" else 0.0
    lesion_rng = np.random.default_rng([anatomy.lesion_seed, int(rng.integers(0, 3))])
    lesions: dict[str, np.ndarray] = {}
    extra: np.ndarray | float
    if label == "COVID-19":
        extra, lesions = finding_ground_glass(c, anatomy, lesion_rng, right, left, severity)
    elif label == "Pneumonia":
        extra, lesions = finding_consolidation(c, anatomy, lesion_rng, right, left, severity)
    elif label == "Edema":
        extra, lesions = finding_edema(c, anatomy, lesion_rng, right, left, heart, severity)
    elif label == "Effusion":
        extra, lesions = finding_effusion(c, anatomy, lesion_rng, right, left, severity)
    elif label == "Emphysema":
        extra, lesions = finding_emphysema(c, anatomy, lesion_rng, right, left, severity)
    elif label == "Fibrosis":
        extra, lesions = finding_reticulation(c, anatomy, lesion_rng, right, left, severity)
    else:
        extra = 0.0
    density = density + extra

    angle = float(rng.uniform(-4, 4))
    shift = (float(rng.normal(0, 0.025 * height)), float(rng.normal(0, 0.025 * width)))
    scale = float(rng.uniform(0.93, 1.05))
    matrix, offset = pose_affine((height, width), angle, shift, scale)
    density = ndimage.affine_transform(density, matrix, offset=offset, order=1, mode="constant", cval=0.02)
    lungs = ndimage.affine_transform((right | left).astype(np.uint8), matrix, offset=offset, order=0) > 0
    body = (ndimage.affine_transform(body_outline(c, anatomy).astype(np.uint8), matrix, offset=offset, order=0) > 0) | lungs
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
        image, box = stamp_marker(image, lungs, rng)
        body[box[1] : box[3], box[0] : box[2]] = False
    if site is not None and site.corner_label:
        image, label_box = burn_corner_label(image, lungs)
        if label_box is not None:
            body[label_box[1] : label_box[3], label_box[0] : label_box[2]] = False
    return PhantomImage(image=image, lungs=lungs, lesions=lesions, severity=severity, shortcut_box=box, body=body,
                        acquisition=acquisition)


def partial_null_classes(classes: tuple[str, ...], seed: int) -> tuple[list[str], list[str]]:
    """(planted, null) disease classes of a partial-null phantom: half of the diseases each, chosen by ``seed``.

    Different seeds null different classes, so a calibration over seeds is not one class's
    peculiarity; the control class (Normal) is never among them.
    """
    diseases = [c for c in classes if c != "Normal"]
    order = np.random.default_rng([seed, 7919]).permutation(len(diseases))
    planted = sorted((diseases[i] for i in order[: (len(diseases) + 1) // 2]), key=diseases.index)
    return planted, [c for c in diseases if c not in planted]


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
            anatomy = sample_anatomy(rng, drawn_as)
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
                if result.body is not None:  # render_image always draws the body; the type allows its absence
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


def read_design(folder: str | Path) -> dict[str, Any]:
    """The parameters a phantom folder was generated with (``phantom.json``)."""
    return json.loads((Path(folder) / "phantom.json").read_text())
