"""From a data set to its manifest: what ``cxrbio data scan`` computes (the stage writes it).

Discovery -> one pass over every image (decode, QC, hashes, letterbox geometry) ->
patient ids -> duplicate groups -> folds -> pseudonyms. The manifest schema is documented in
docs/data.md; :mod:`cxrbio.stages.scan` writes it into the run directory.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbio.config import Config
from cxrbio.data.duplicates import UnionFind, near_duplicate_groups, perceptual_hash, sha256_file
from cxrbio.data.folds import assign_folds
from cxrbio.data.imageio import read_image
from cxrbio.data.layouts import Discovery, discover
from cxrbio.data.preprocess import letterbox_geometry
from cxrbio.data.privacy import pseudonym
from cxrbio.data.qc import (
    QC_LABEL_CONFLICT,
    QC_LOW_CONTRAST,
    QC_MISSING,
    QC_OK,
    QC_TOO_LARGE,
    QC_UNREADABLE,
    contrast_spread,
)
from cxrbio.errors import DataError, ImageReadError, ImageTooLarge
from cxrbio.runtime.executors import Executor, LocalExecutor, imap_jobs

ProgressCallback = Callable[[int, int], None]

#: Below this many images a worker pool costs more to start than it saves.
PARALLEL_THRESHOLD = 200


@dataclass
class ScanResult:
    manifest: pd.DataFrame
    layout: str
    root: Path
    notes: list[str] = field(default_factory=list)
    fold_error: DataError | None = None


def inspect_image(path: str, size: int, max_pixels: int | None = None) -> dict[str, Any]:
    """Everything the manifest needs from one file; problems become a QC status, not an exception."""
    if not os.path.isfile(path):
        return {"qc_status": QC_MISSING, "qc_reason": "file does not exist"}
    try:
        decoded = read_image(path, max_pixels=max_pixels)
    except ImageTooLarge as error:
        return {"qc_status": QC_TOO_LARGE, "qc_reason": error.message.split(": ", 1)[-1]}
    except ImageReadError as error:
        return {"qc_status": QC_UNREADABLE, "qc_reason": error.message.split(": ", 1)[-1]}
    geometry = letterbox_geometry(decoded.height, decoded.width, size)
    return {
        "qc_status": QC_OK,
        "qc_reason": "",
        "width": decoded.width,
        "height": decoded.height,
        "bits": decoded.bits,
        "format": decoded.format,
        "stored_mode": decoded.stored_mode,
        "jpeg_quality": decoded.jpeg_quality,
        "compressed": decoded.compressed,
        "pixel_spacing": decoded.pixel_spacing,
        "qc_contrast": contrast_spread(decoded.pixels),
        "sha256": sha256_file(path),
        "phash": perceptual_hash(decoded.pixels),
        "patient_hint": decoded.patient_hint,
        "device_hint": decoded.device_hint,
        "lb_x0": geometry.x0,
        "lb_y0": geometry.y0,
        "lb_width": geometry.width,
        "lb_height": geometry.height,
    }


def _inspect_star(args: tuple[str, int, int]) -> dict[str, Any]:
    return inspect_image(*args)


def iter_images(function: Callable[[tuple[str, int]], Any], paths: list[str], size: int,
                workers: int | None, progress: ProgressCallback | None = None) -> Iterator[Any]:
    """Yield ``function((path, size))`` for every path, in order; worker processes when it pays."""
    return imap_jobs(function, [(p, size) for p in paths], workers, progress,
                     min_jobs=PARALLEL_THRESHOLD, chunksize=16)


def map_images(function: Callable[[tuple[str, int]], Any], paths: list[str], size: int,
               workers: int | None, progress: ProgressCallback | None) -> list[Any]:
    """Apply ``function`` to every path, in worker processes when it pays; report progress."""
    return list(iter_images(function, paths, size, workers, progress))


def _image_ids(paths: pd.Series, root: Path) -> list[str]:
    """Stable, non-identifying ids: a hash of the path relative to the data root."""
    ids = []
    for path in paths:
        try:
            rel = Path(path).relative_to(root).as_posix()
        except ValueError:
            rel = Path(path).as_posix()
        ids.append("img-" + hashlib.sha1(rel.encode("utf-8")).hexdigest()[:12])
    return ids


def _fill_patients(frame: pd.DataFrame, notes: list[str]) -> pd.Series:
    raw = frame["patient_raw"].copy()
    hints = frame.get("patient_hint")
    if hints is not None:
        use_hint = raw.isna() & hints.notna()
        raw[use_hint] = "dicom:" + hints[use_hint].astype(str)
    anonymous = raw.isna()
    if anonymous.any():
        notes.append(
            f"{int(anonymous.sum())} images have no patient id (no patient_id column, known file-name scheme "
            "or DICOM PatientID): each is taken as its own patient. If one patient has several images, add a "
            "patient_id column, or the folds may leak."
        )
        raw[anonymous] = "file:" + frame.loc[anonymous, "path"]
    return raw.astype(str)


def _duplicates(frame: pd.DataFrame, max_distance: int, notes: list[str]) -> None:
    """Adds dup_group (near-duplicate component, -1 if unreadable) and exact_duplicates."""
    readable = frame["phash"].notna().to_numpy()
    frame["dup_group"] = -1
    frame["exact_duplicates"] = 0
    if not readable.any():
        return
    hashes = frame.loc[readable, "phash"].tolist()
    groups = near_duplicate_groups(hashes, max_distance)
    frame.loc[readable, "dup_group"] = groups
    sizes = frame.loc[readable].groupby("sha256")["sha256"].transform("size") - 1
    frame.loc[readable, "exact_duplicates"] = sizes.astype(int)
    patients_per_group = frame.loc[readable].groupby("dup_group")["patient_raw"].nunique()
    if len(patients_per_group) and patients_per_group.max() > 5:
        notes.append(
            f"one near-duplicate group joins {int(patients_per_group.max())} patients, and all of them must share a "
            "fold; if they are not copies of one radiograph, lower data.duplicates.near_duplicate_max_distance "
            f"(now {max_distance})"
        )


def _label_conflicts(frame: pd.DataFrame, policy: str, notes: list[str]) -> None:
    """The same radiograph (an exact or near duplicate group) filed under several classes: named, and with
    ``policy`` 'exclude' every copy is kept out of training (a contradictory label is a data error, and
    keeping either copy would pick a side at random)."""
    readable = frame[frame["dup_group"] >= 0]
    spanning = readable.groupby("dup_group")["label"].nunique()
    groups = spanning[spanning > 1].index
    if not len(groups):
        return
    members = frame[frame["dup_group"].isin(groups) & (frame["dup_group"] >= 0)]
    described = []
    for _group, rows in members.groupby("dup_group", sort=True):
        copies = " ~ ".join(f"{row} ({label})" for row, label in zip(rows["row"], rows["label"]))
        described.append(copies)
        if policy == "exclude":
            for index, label in zip(rows.index, rows["label"]):
                others = sorted(set(rows["label"]) - {label})
                if frame.at[index, "qc_status"] == QC_OK:
                    frame.at[index, "qc_status"] = QC_LABEL_CONFLICT
                    frame.at[index, "qc_reason"] = f"the same image is also filed as {', '.join(others)}"
                frame.at[index, "included"] = False
    shown = "; ".join(described[:5]) + (f"; and {len(described) - 5} more" if len(described) > 5 else "")
    action = ("all their copies are kept out of training (data.duplicates.label_conflicts: exclude; 'keep' trains on "
              "them as filed)") if policy == "exclude" else ("kept in training as filed (data.duplicates.label_conflicts: "
                                                              "keep): the model sees one radiograph with two labels")
    notes.append(f"{len(members)} images in {len(described)} duplicate groups carry different labels: {shown}; {action}. "
                 "Correct the labels, or remove the wrong copy.")


def _fold_groups(frame: pd.DataFrame) -> pd.Series:
    """A patient's images and all images near-duplicate to them form one fold group.

    The group key is the smallest raw patient id in the component, so it does not depend
    on row order (folds stay reproducible) and never leaves memory un-pseudonymised.
    """
    patients = frame["patient_raw"].to_numpy()
    codes, uniques = pd.factorize(patients, sort=True)
    links = UnionFind(len(uniques))
    readable = frame[frame["dup_group"] >= 0]
    shared = readable[readable.groupby("dup_group")["dup_group"].transform("size") > 1]
    for _group, members in shared.groupby("dup_group"):
        member_codes = np.unique(codes[frame.index.get_indexer(members.index)])
        for other in member_codes[1:]:
            links.union(int(member_codes[0]), int(other))
    roots = links.labels()
    return pd.Series(uniques[roots[codes]], index=frame.index)


def content_group_keys(frame: pd.DataFrame) -> pd.Series:
    """A fold group's key from its images' content (sorted SHA-256s; the image id where unreadable).

    It names no patient and depends only on the data: two scans of the same data (with new
    pseudonym salts, in any row order) give the same keys, so everything ordered by them (the
    inner validation split) is the same too.
    """
    content = frame["sha256"].where(frame["sha256"].notna() & (frame["sha256"] != ""), frame["image_id"]).astype(str)
    keys = content.groupby(frame["fold_group"]).apply(
        lambda members: "G" + hashlib.sha256("|".join(sorted(members)).encode()).hexdigest()[:12])
    return frame["fold_group"].map(keys)


def build_manifest(
    data: str | Path,
    config: Config,
    *,
    salt: bytes | None,
    layout: str | None = None,
    executor: Executor | None = None,
    progress: ProgressCallback | None = None,
) -> ScanResult:
    """The manifest of ``data`` (not written: :mod:`cxrbio.stages.scan` owns the run directory).

    ``salt`` keys the patient pseudonyms (None: pseudonymisation is off in the config).
    """
    discovery: Discovery = discover(data, config.data, layout)
    notes = list(discovery.notes)
    frame = discovery.frame
    size = config.data.image_size
    runner = executor or LocalExecutor()
    jobs = [(p, size, config.data.qc.max_pixels) for p in frame["path"].tolist()]
    inspected = pd.DataFrame(list(runner.map(_inspect_star, jobs, progress, min_jobs=PARALLEL_THRESHOLD, chunksize=16)),
                             index=frame.index)
    frame = pd.concat([frame, inspected], axis=1)
    if "qc_contrast" not in frame:
        frame["qc_contrast"] = np.nan
        frame["phash"] = None
        frame["sha256"] = None
    missing = frame["qc_status"] == QC_MISSING
    if missing.all():
        raise DataError(
            f"none of the {len(frame)} listed images exists (e.g. {frame['path'].iloc[0]}).",
            fix=f"paths in a CSV are relative to the CSV's folder ({discovery.root}); correct them.",
        )
    low = (frame["qc_status"] == QC_OK) & (frame["qc_contrast"] < config.data.qc.min_contrast)
    frame.loc[low, "qc_status"] = QC_LOW_CONTRAST
    frame.loc[low, "qc_reason"] = [
        f"contrast spread {c:.3f} < {config.data.qc.min_contrast}" for c in frame.loc[low, "qc_contrast"]
    ]
    excluded_statuses = {QC_UNREADABLE, QC_MISSING, QC_TOO_LARGE} | (
        {QC_LOW_CONTRAST} if config.data.qc.exclude_low_contrast else set())
    frame["included"] = ~frame["qc_status"].isin(excluded_statuses)
    frame["patient_raw"] = _fill_patients(frame, notes)
    _duplicates(frame, config.data.duplicates.near_duplicate_max_distance, notes)
    _label_conflicts(frame, config.data.duplicates.label_conflicts, notes)
    if not frame["included"].any():
        raise DataError(f"every image in {data} failed QC (unreadable, missing, too large, low contrast or filed "
                        "under two classes).", fix="check the data.")
    frame["fold_group"] = _fold_groups(frame)
    frame["image_id"] = _image_ids(frame["path"], discovery.root)
    if frame["image_id"].duplicated().any():
        dup = frame.loc[frame["image_id"].duplicated(), "path"].iloc[0]
        raise DataError(f"the image {dup} is listed more than once.", fix="remove the repeated rows.")

    fold_error: DataError | None = None
    frame["fold"] = -1
    included = frame["included"]
    try:
        frame.loc[included, "fold"] = assign_folds(
            frame.loc[included, "label"], frame.loc[included, "fold_group"], config.folds.k, config.folds.seed
        )
    except DataError as error:
        fold_error = error

    frame["fold_group"] = content_group_keys(frame)
    if salt is not None:
        frame["patient_id"] = [pseudonym(p, salt) for p in frame["patient_raw"]]
    else:
        frame["patient_id"] = frame["patient_raw"]
    frame["dicom_device"] = _devices(frame["device_hint"] if "device_hint" in frame else pd.Series("", index=frame.index),
                                     salt)
    manifest = _ordered(frame.drop(columns=["patient_raw", "patient_hint", "device_hint"], errors="ignore"))
    manifest.attrs = {}
    return ScanResult(manifest=manifest, layout=discovery.layout, root=discovery.root, notes=notes,
                      fold_error=fold_error)


def _devices(hints: pd.Series, salt: bytes | None) -> list[str]:
    """The DICOM device (manufacturer, model, station) of each image as a keyed hash ('' where none): the design
    check's acquisition groups use it; a station name can name a hospital, so it is never written in clear."""
    key = salt or b"cxrbio-device"
    return ["" if not isinstance(h, str) or not h else "D" + pseudonym(h, key)[1:9] for h in hints]


def manifest_digest(manifest: pd.DataFrame) -> str:
    """Identity of a manifest's content (what downstream stamps depend on)."""
    values = pd.util.hash_pandas_object(manifest.astype(str), index=False).to_numpy()
    return hashlib.sha256(values.tobytes() + ",".join(manifest.columns).encode()).hexdigest()


_FIRST_COLUMNS = [
    "image_id", "path", "label", "raw_label", "patient_id", "source", "fold", "included",
    "qc_status", "qc_reason", "qc_contrast", "width", "height", "bits", "format", "stored_mode", "jpeg_quality",
    "compressed", "pixel_spacing", "dicom_device",
    "lb_x0", "lb_y0", "lb_width", "lb_height", "sha256", "phash", "dup_group", "exact_duplicates",
    "fold_group", "row",
]


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    first = [c for c in _FIRST_COLUMNS if c in frame]
    rest = [c for c in frame.columns if c not in first]
    out = frame[first + rest].reset_index(drop=True)
    for column in ("width", "height", "bits", "lb_x0", "lb_y0", "lb_width", "lb_height"):
        if column in out:
            out[column] = out[column].astype("Int64")
    return out
