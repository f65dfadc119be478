"""Lung-field masks for every included image: masks/<image_id>.png in the letterboxed frame.

Each mask is a 0/255 PNG of ``data.image_size`` x ``data.image_size``, aligned with the
letterboxed image that the network and radiomics see, and never covering the letterbox
padding. Where it came from is recorded in the manifest:

``mask_source``
    ``folder`` (a user mask file named like the image), ``column`` (a path in the manifest
    column ``masks.column``; the phantom's ground truth), ``segmented`` (the built-in classical
    segmentation, :mod:`cxrbio.lungseg`), ``content`` (the whole non-padding area: the
    segmentation scored below ``masks.min_qc``, or ``masks.source: content``), or ``none`` (no
    usable mask: unreadable image, unreadable/empty/mismatched user mask; no features).
``mask_qc``
    The segmentation's plausibility score (1.0 for user masks, NaN without a mask).
``mask_note``
    Why a mask is a fallback or missing, naming the file.

User masks are never silently replaced: a bad user mask gives ``none`` and a note, so the
report can list the image as lacking features.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from cxrbio.config import Config
from cxrbio.errors import CxrbioError, DataError
from cxrbio.parallel import imap_jobs
from cxrbio.rundir import RunDir, atomic_write, atomic_write_parquet, atomic_write_text

SEGMENTATION_VERSION = 1  # bump when cxrbio.lungseg changes its output
MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")
MASK_COLUMNS = ("mask_source", "mask_qc", "mask_note")


@dataclass(frozen=True)
class MaskJob:
    image_id: str
    image_path: str
    user_mask: str | None  # absolute path of a user/ground-truth mask, or None
    user_kind: str | None  # 'folder' or 'column'
    size: int
    min_qc: float
    segment: bool  # False: the whole content area (masks.source = content)
    out: str


def _read_user_mask(path: str, image_shape: tuple[int, int]) -> np.ndarray:
    """A binary mask in the source image's frame; any non-zero pixel is lung."""
    try:
        mask = read_mask_file(path)
    except (OSError, UnidentifiedImageError) as error:
        raise CxrbioError(f"mask file {path} cannot be read ({error.__class__.__name__}).",
                          fix="replace it with a PNG of the lung fields (0 = background).") from None
    (h, w), (mh, mw) = image_shape, mask.shape
    if abs(mh / mw - h / w) > 0.02 * (h / w):
        raise CxrbioError(f"mask file {path} is {mw}x{mh} px, its image {w}x{h} px (another shape).",
                          fix="masks must cover the whole image, at its size or scaled with its aspect ratio.")
    return mask


def build_mask(job: MaskJob) -> dict[str, Any]:
    """Make and write one mask; returns its manifest fields (never raises for one bad image)."""
    from cxrbio.data.imageio import read_image
    from cxrbio.data.preprocess import letterbox, letterbox_mask
    from cxrbio.lungseg import segment_lungs

    result: dict[str, Any] = {"image_id": job.image_id, "mask_source": "none", "mask_qc": np.nan, "mask_note": ""}
    try:
        decoded = read_image(job.image_path)
        image, geometry = letterbox(decoded.pixels, job.size)
        content = geometry.content_mask()
        if job.user_mask is not None:
            mask = letterbox_mask(_read_user_mask(job.user_mask, decoded.pixels.shape).astype(np.uint8), job.size) > 0
            mask &= content
            if not mask.any():
                raise CxrbioError(f"mask file {job.user_mask} is empty (no non-zero pixel inside the image).",
                                  fix="fix or remove the mask file.")
            result.update(mask_source=job.user_kind, mask_qc=1.0)
        elif job.segment:
            segmentation = segment_lungs(image, content)
            if segmentation.qc >= job.min_qc:
                mask = segmentation.mask
                result.update(mask_source="segmented", mask_qc=segmentation.qc, mask_note=segmentation.note)
            else:
                mask = content
                result.update(mask_source="content", mask_qc=segmentation.qc,
                              mask_note=f"segmentation QC {segmentation.qc:.2f} < {job.min_qc}: "
                                        f"{segmentation.note or 'implausible lung fields'}; whole image used")
        else:
            mask, result["mask_source"], result["mask_note"] = content, "content", "masks.source = content"
    except CxrbioError as error:
        result["mask_note"] = error.message + (f" ({error.fix})" if error.fix else "")
        return result
    payload = (mask.astype(np.uint8) * 255)
    atomic_write(Path(job.out), lambda tmp: Image.fromarray(payload).save(tmp, format="PNG"))
    return result


def _index_folder(folder: Path) -> dict[str, Path]:
    """Mask files of a folder (recursive) by file stem; a stem seen twice is an error."""
    if not folder.is_dir():
        raise DataError(f"the mask folder {folder} does not exist.", fix="pass an existing folder (masks.folder / --masks).")
    index: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in MASK_SUFFIXES and path.is_file():
            if path.stem in index:
                raise DataError(f"two mask files share the name {path.stem}: {index[path.stem]} and {path}.",
                                fix="keep one mask per image name.")
            index[path.stem] = path
    return index


def resolve_column_path(value: Any, image_path: str) -> str | None:
    """A mask path from a manifest cell: absolute, or relative to a folder above the image."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == "":
        return None
    candidate = Path(str(value).strip())
    if candidate.is_absolute():
        return str(candidate)
    for parent in Path(image_path).parents:  # e.g. DATA/masks/lungs/x.png for DATA/images/cls/x.png
        if (parent / candidate).is_file():
            return str(parent / candidate)
    return str(Path(image_path).parent / candidate)  # reported as unreadable by build_mask


def plan_masks(run: RunDir, config: Config, manifest: pd.DataFrame, folder: str | None = None,
               source: str | None = None) -> list[MaskJob]:
    """One job per included image, with the mask source the settings choose for it."""
    settings = config.masks
    source = source or settings.source
    folder = folder or settings.folder
    if source == "folder" and not folder:
        raise DataError("masks.source is 'folder' but no mask folder is set.", fix="pass --masks FOLDER or set masks.folder.")
    if source == "column" and settings.column not in manifest:
        raise DataError(f"the manifest has no column {settings.column!r} of mask paths.",
                        fix="add it to the data CSV and re-scan, or set masks.column / masks.source.")
    index = _index_folder(Path(folder)) if folder and source in ("auto", "folder") else None
    jobs = []
    for row in manifest.itertuples(index=False):
        user, kind = None, None
        if index is not None:
            found = index.get(Path(row.path).stem)
            if found is not None:
                user, kind = str(found), "folder"
            elif source == "folder":
                user, kind = str(Path(folder) / f"{Path(row.path).stem}.png"), "folder"  # reported missing
        if user is None and source in ("auto", "column") and settings.column in manifest:
            user = resolve_column_path(getattr(row, settings.column), row.path)
            kind = "column" if user else None
        jobs.append(MaskJob(row.image_id, row.path, user, kind, config.data.image_size, settings.min_qc,
                            source != "content", str(run.mask(row.image_id))))
    return jobs


def _settings_key(config: Config, folder: str | None, source: str | None) -> dict[str, Any]:
    return {"size": config.data.image_size, "source": source or config.masks.source,
            "folder": folder or config.masks.folder, "column": config.masks.column,
            "min_qc": config.masks.min_qc, "segmentation_version": SEGMENTATION_VERSION}


def make_masks(run: RunDir, config: Config, folder: str | None = None, source: str | None = None,
               workers: int | None = None, force: bool = False,
               progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Write every included image's mask and record its source in the manifest; returns those rows.

    Images whose mask exists under the same settings are not redone (``force`` redoes all).
    """
    manifest = run.read_manifest()
    included = manifest[manifest["included"]]
    settings = _settings_key(config, folder, source)
    settings_file = run.root / "masks" / "settings.json"
    same = settings_file.is_file() and json.loads(settings_file.read_text()) == settings
    known = manifest.set_index("image_id")["mask_source"] if "mask_source" in manifest else pd.Series(dtype=object)
    jobs = [job for job in plan_masks(run, config, included, folder, source)
            if force or not same or known.get(job.image_id) is None or pd.isna(known.get(job.image_id))
            or (known.get(job.image_id) != "none" and not Path(job.out).is_file())]
    results = pd.DataFrame(list(imap_jobs(build_mask, jobs, workers, progress, min_jobs=64, chunksize=8)),
                           columns=["image_id", *MASK_COLUMNS])
    for column in MASK_COLUMNS:
        if column not in manifest:
            manifest[column] = np.nan if column == "mask_qc" else None
    if len(results):
        updates = results.set_index("image_id")
        rows = manifest["image_id"].isin(updates.index)
        for column in MASK_COLUMNS:
            manifest.loc[rows, column] = manifest.loc[rows, "image_id"].map(updates[column]).to_numpy()
    for stale in set(manifest.loc[manifest["mask_source"] == "none", "image_id"]):
        run.mask(stale).unlink(missing_ok=True)
    manifest["mask_qc"] = manifest["mask_qc"].astype(float)
    atomic_write_parquet(run.manifest, manifest)
    atomic_write_text(settings_file, json.dumps(settings, indent=1))
    return manifest.loc[manifest["included"], ["image_id", "path", "label", *MASK_COLUMNS]].reset_index(drop=True)


def read_mask_file(path: str | Path) -> np.ndarray:
    """A mask PNG as a bool array (non-zero = lung); OSError when unreadable."""
    with Image.open(path) as handle:
        return np.asarray(handle.convert("L")) > 0


def read_mask(run: RunDir, image_id: str) -> np.ndarray | None:
    """The run's mask of one image, or None where it has none."""
    path = run.mask(image_id)
    return read_mask_file(path) if path.is_file() else None
