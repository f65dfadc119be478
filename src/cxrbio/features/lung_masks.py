"""Lung-field masks for every included image: masks/<image_id>.png in the letterboxed frame.

Each mask is a 0/255 PNG of ``data.image_size`` x ``data.image_size``, aligned with the
letterboxed image that the network and radiomics see, and never covering the letterbox
padding. Where it came from is recorded in the masks stage's own table, ``masks/masks.parquet``
(one row per included image; read with :mod:`cxrbio.run.mask_files`):

``mask_source``
    ``folder`` (a user mask file named like the image), ``column`` (a path in the manifest
    column ``masks.column``; the phantom's ground truth), ``segmented`` (the built-in classical
    segmentation, :mod:`cxrbio.features.lungseg`), ``content`` (the whole non-padding area: the
    segmentation scored below ``masks.min_qc``, or ``masks.source: content``), or ``none`` (no
    usable mask: unreadable image, unreadable/empty/mismatched user mask; no features).
``mask_qc``
    The segmentation's plausibility score (1.0 for user masks, NaN without a mask).
``mask_note``
    Why a mask is a fallback or missing, naming the file.
``body_source``, ``body_qc``, ``body_note``
    The body (thorax outline) mask, ``masks/body/<image_id>.png``, that the shortcut audit uses
    to tell evidence inside the patient from evidence outside (padding, air, burned-in labels):
    ``column`` (a path in the manifest column ``masks.body_column``; the phantom's ground
    truth), ``segmented`` (:func:`cxrbio.features.lungseg.segment_body`, united with the lung mask) or
    ``none`` (segmentation QC below ``masks.body_min_qc``, or an unreadable file: the image is
    left out of the audit, with the reason here).

User masks are never silently replaced: a bad user mask gives ``none`` and a note, so the
report can list the image as lacking features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import UnidentifiedImageError

from cxrbio.config import Config
from cxrbio.errors import CxrbioError, DataError
from cxrbio.run.mask_files import read_mask_file, write_mask_png
from cxrbio.run.rundir import RunDir

SEGMENTATION_VERSION = 2  # bump when cxrbio.features.lungseg changes its output (2: body masks)
MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")

# What ``mask_source`` records (the module docstring says what each means); one spelling for
# every reader, so a check like "is this the classical segmentation?" cannot drift from the writer.
FROM_FOLDER = "folder"
FROM_COLUMN = "column"
SEGMENTED = "segmented"
WHOLE_CONTENT = "content"
NO_MASK = "none"
#: Masks that follow the lung fields (the rest are the whole image, or nothing).
ANATOMICAL = (FROM_FOLDER, FROM_COLUMN, SEGMENTED)


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
    body_mask: str | None = None  # absolute path of a given body mask, or None (segment it)
    body_min_qc: float = 0.5
    body_out: str | None = None  # where the body mask goes; None: no body mask


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
    from cxrbio.features.lungseg import segment_lungs

    result: dict[str, Any] = {"image_id": job.image_id, "mask_source": NO_MASK, "mask_qc": np.nan, "mask_note": "",
                              "body_source": NO_MASK, "body_qc": np.nan, "body_note": ""}
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
                result.update(mask_source=SEGMENTED, mask_qc=segmentation.qc, mask_note=segmentation.note)
            else:
                mask = content
                result.update(mask_source=WHOLE_CONTENT, mask_qc=segmentation.qc,
                              mask_note=f"segmentation QC {segmentation.qc:.2f} < {job.min_qc}: "
                                        f"{segmentation.note or 'implausible lung fields'}; whole image used")
        else:
            mask, result["mask_source"], result["mask_note"] = content, WHOLE_CONTENT, "masks.source = content"
    except CxrbioError as error:
        result["mask_note"] = error.message + (f" ({error.fix})" if error.fix else "")
        return result
    write_mask_png(Path(job.out), mask)
    if job.body_out is not None:
        lungs = mask if result["mask_source"] in ANATOMICAL else None
        result.update(_body_fields(job, decoded.pixels.shape, image, content, lungs))
    return result


def _body_fields(job: MaskJob, shape: tuple[int, ...], image: np.ndarray, content: np.ndarray,
                 lungs: np.ndarray | None) -> dict[str, Any]:
    """Make and write one body mask (given, else segmented); its body_* fields."""
    from cxrbio.data.preprocess import letterbox_mask
    from cxrbio.features.lungseg import segment_body

    assert job.body_out is not None
    if job.body_mask is not None:
        try:
            given = letterbox_mask(_read_user_mask(job.body_mask, (shape[0], shape[1])).astype(np.uint8), job.size) > 0
        except CxrbioError as error:
            return {"body_source": NO_MASK, "body_qc": np.nan, "body_note": error.message}
        body = (given | (lungs if lungs is not None else False)) & content
        fields = {"body_source": FROM_COLUMN, "body_qc": 1.0, "body_note": ""}
    else:
        segmentation = segment_body(image, content, lungs)
        if segmentation.qc < job.body_min_qc:
            return {"body_source": NO_MASK, "body_qc": segmentation.qc,
                    "body_note": f"body segmentation QC {segmentation.qc:.2f} < {job.body_min_qc}: {segmentation.note}; "
                                 "left out of the shortcut audit"}
        body = segmentation.mask
        fields = {"body_source": SEGMENTED, "body_qc": segmentation.qc, "body_note": segmentation.note}
    write_mask_png(Path(job.body_out), body)
    return fields


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
    folder_path = Path(folder or ".")  # set whenever source is 'folder' (checked above)
    jobs = []
    row: Any  # pandas types rows and group keys loosely
    for row in manifest.itertuples(index=False):
        user, kind = None, None
        if index is not None:
            found = index.get(Path(row.path).stem)
            if found is not None:
                user, kind = str(found), FROM_FOLDER
            elif source == "folder":
                user, kind = str(folder_path / f"{Path(row.path).stem}.png"), FROM_FOLDER  # reported missing
        if user is None and source in ("auto", "column") and settings.column in manifest:
            user = resolve_column_path(getattr(row, settings.column), row.path)
            kind = FROM_COLUMN if user else None
        body = resolve_column_path(getattr(row, settings.body_column), row.path) if settings.body_column in manifest else None
        jobs.append(MaskJob(row.image_id, row.path, user, kind, config.data.image_size, settings.min_qc,
                            source != "content", str(run.output("masks", "mask_file", image_id=row.image_id)),
                            body_mask=body, body_min_qc=settings.body_min_qc,
                            body_out=str(run.output("masks", "body_file", image_id=row.image_id))))
    return jobs
