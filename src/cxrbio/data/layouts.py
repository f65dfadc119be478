"""Find the images of a data set and their labels, in any of the supported layouts.

Layouts (``detect_layout`` picks one; see README "Your own data" and docs/data.md):

* ``folders``  -- DATA/<class>/**/<image>, one sub-folder per class;
* ``csv``      -- a CSV with ``path,label`` (+ optional ``patient_id``, ``source``; other
  columns are kept), or a folder whose root holds such a ``manifest.csv``;
* ``nih``      -- ChestX-ray14: ``Data_Entry_2017*.csv`` + its image folders; single-label
  images of the findings mapped in ``data.nih.findings``;
* ``covid``    -- ieee8023 covid-chestxray-dataset: ``metadata.csv`` + images, frontal
  X-ray views of the findings mapped in ``data.covid_dataset.findings``.

The result is one row per candidate image: absolute ``path``, canonical ``label``,
``raw_label``, ``patient_raw`` (may be empty; never written out), ``source``, ``row``
(where the entry came from, for messages) and any extra columns. Images are not opened here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cxrbio.config import DataConfig
from cxrbio.data.imageio import looks_like_image
from cxrbio.data.provenance import IEEE8023, NIH, UNKNOWN, dataset_from_filename, patient_from_filename
from cxrbio.errors import DataError

LAYOUTS = ("folders", "csv", "nih", "covid")

#: Columns cxrbio writes itself; a CSV column of the same name is kept as ``extra_<name>``.
RESERVED_COLUMNS = frozenset(
    {"image_id", "path", "label", "raw_label", "patient_id", "patient_raw", "source", "row", "fold", "fold_group"}
)



@dataclass
class Discovery:
    """Candidate images and everything worth telling the user about how they were found."""

    layout: str
    root: Path
    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def assign_sources(frame: pd.DataFrame, config: DataConfig, *, column: pd.Series | None, subfolder: pd.Series | None,
                   where: str, notes: list[str]) -> pd.Series:
    """Each row's ``source`` under ``data.source_from`` (never a root folder's name; unknown is ``unknown``).

    ``column``: a CSV's source column ('' where empty), ``subfolder``: the folder below each
    image's class folder (None where the image sits in the class folder itself).
    """
    mode = config.source_from
    recognised = pd.Series([dataset_from_filename(p) for p in frame["path"]], index=frame.index)
    if mode == "column" and column is None:
        raise DataError(f"data.source_from is 'column' but {where} has no 'source' column.",
                        fix="add a 'source' column, or use --source-from auto / filename / subfolder / none.")
    if mode == "subfolder" and subfolder is None:
        raise DataError(f"data.source_from is 'subfolder' but {where} is not a folder of class folders.",
                        fix="use --source-from column (a CSV 'source' column), filename, auto or none.")
    if mode == "none":
        sources = pd.Series(UNKNOWN, index=frame.index)
    elif mode == "subfolder":
        sources = subfolder.fillna(UNKNOWN) if subfolder is not None else pd.Series(UNKNOWN, index=frame.index)
    elif mode == "filename":
        sources = recognised
    elif mode == "column" or (column is not None and (column != "").any()):
        sources = column.where(column != "", UNKNOWN) if column is not None else recognised
    else:  # auto without a column: recognised public data sets, else unknown
        sources = recognised
    unknown = int((sources == UNKNOWN).sum())
    if unknown and mode != "none":
        notes.append(f"{unknown} of {len(sources)} images have an unknown source (data.source_from: {mode}); "
                     "confounding by source cannot be checked for them. Give a 'source' column in a CSV, or "
                     "--source-from subfolder for DATA/<class>/<source>/ folders.")
    return sources.astype(str)


def detect_layout(data: Path) -> tuple[str, Path]:
    """The layout of ``data`` and the file or folder to read it from."""
    if not data.exists():
        raise DataError(f"{data} does not exist.", fix="pass a folder of class sub-folders, a CSV, or a data set's metadata file.")
    if data.is_file():
        if data.suffix.lower() != ".csv":
            raise DataError(f"{data} is neither a folder nor a CSV file.", fix="pass a folder or a .csv manifest.")
        columns = {c.strip() for c in pd.read_csv(data, nrows=0).columns}
        if {"Image Index", "Finding Labels"} <= columns:
            return "nih", data
        if {"patientid", "finding", "filename"} <= columns:
            return "covid", data
        return "csv", data
    nih = sorted(data.glob("Data_Entry_2017*.csv"))
    if nih:
        return "nih", nih[-1]
    metadata = data / "metadata.csv"
    if metadata.is_file() and {"patientid", "finding"} <= set(pd.read_csv(metadata, nrows=0).columns):
        return "covid", metadata
    manifest = data / "manifest.csv"
    if manifest.is_file():
        return "csv", manifest
    return "folders", data


def discover(data: str | Path, config: DataConfig, layout: str | None = None) -> Discovery:
    data = Path(data).expanduser().resolve()
    detected, source_file = detect_layout(data)
    layout = layout or detected
    if layout not in LAYOUTS:
        raise DataError(f"unknown layout {layout!r}.", fix=f"use one of {', '.join(LAYOUTS)}.")
    if layout != detected and layout != "folders":
        source_file = data
    reader = {"folders": _discover_folders, "csv": _discover_csv, "nih": _discover_nih, "covid": _discover_covid}[layout]
    discovery = reader(source_file, config)
    if discovery.frame.empty:
        raise DataError(f"no images were found in {data} (layout '{layout}').", fix="check the path and the layout.")
    _warn_missing_classes(discovery, config)
    return discovery


def _warn_missing_classes(discovery: Discovery, config: DataConfig) -> None:
    present = set(discovery.frame["label"])
    absent = [c for c in config.classes if c not in present]
    if absent:
        discovery.notes.append(
            f"classes with no images: {', '.join(absent)} (remove them from data.classes to train without them)"
        )


def _unknown_label_error(unknown: pd.DataFrame, config: DataConfig, where: str) -> DataError:
    counts = unknown.groupby("raw_label")["row"].agg(["count", "first"])
    listed = "; ".join(f"{label!r} ({row['count']} images, e.g. {row['first']})" for label, row in counts.iterrows())
    return DataError(
        f"labels not in the config in {where}: {listed}. Known classes: {', '.join(config.classes)}.",
        fix="add them to data.classes or data.label_aliases, or set data.drop_unknown_labels: true to skip them.",
    )


def _apply_labels(frame: pd.DataFrame, config: DataConfig, where: str, notes: list[str]) -> pd.DataFrame:
    """Map raw labels to classes; unknown labels fail or are skipped (and said) per config."""
    frame = frame.copy()
    frame["raw_label"] = frame["raw_label"].astype(str).str.strip()
    frame["label"] = [config.canonical_label(raw) for raw in frame["raw_label"]]
    unknown = frame[frame["label"].isna()]
    if not unknown.empty:
        if not config.drop_unknown_labels:
            raise _unknown_label_error(unknown, config, where)
        labels = ", ".join(sorted(set(unknown["raw_label"])))
        notes.append(f"skipped {len(unknown)} images with labels not in the config: {labels}")
        frame = frame[frame["label"].notna()]
    return frame.reset_index(drop=True)


def _discover_folders(root: Path, config: DataConfig) -> Discovery:
    notes: list[str] = []
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(
            f"{root} has no class sub-folders.",
            fix="put each class's images in DATA/<class>/, or pass a CSV with path,label columns.",
        )
    rows: list[dict[str, object]] = []
    ignored: list[Path] = []
    for class_dir in class_dirs:
        files = sorted(p for p in class_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
        images = [p for p in files if looks_like_image(p)]
        ignored.extend(p for p in files if not looks_like_image(p))
        if not images:
            raise DataError(
                f"class folder {class_dir} holds no images (PNG, JPEG, TIFF, BMP or DICOM).",
                fix="add its images, or remove the empty folder.",
            )
        for image in images:
            rows.append(
                {
                    "path": str(image),
                    "raw_label": class_dir.name,
                    "patient_raw": patient_from_filename(image),
                    "subfolder": image.relative_to(class_dir).parts[0] if len(image.relative_to(class_dir).parts) > 1
                    else None,
                    "row": str(image.relative_to(root)),
                }
            )
    if ignored:
        example = ignored[0].relative_to(root)
        notes.append(f"ignored {len(ignored)} files that are not images by name (e.g. {example})")
    frame = _apply_labels(pd.DataFrame(rows), config, str(root), notes)
    frame["source"] = assign_sources(frame, config, column=None, subfolder=frame.pop("subfolder"), where=str(root),
                                     notes=notes)
    return Discovery("folders", root, frame, notes)


#: Columns read as text whatever they hold (ids such as 00012 keep their zeros).
_TEXT_COLUMNS = ("path", "label", "patient_id", "source", "Image Index", "Finding Labels", "Patient ID",
                 "patientid", "finding", "view", "modality", "folder", "filename")


def _read_csv(path: Path) -> pd.DataFrame:
    """Read a CSV: identifier columns as text ('' when empty), other columns type-inferred."""
    try:
        header = [c.strip() for c in pd.read_csv(path, nrows=0).columns]
        frame = pd.read_csv(path, dtype={c: str for c in header if c in _TEXT_COLUMNS})
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{path} cannot be parsed as CSV ({error}).", fix="save it as UTF-8 comma-separated text.") from None
    frame.columns = header
    for column in header:
        if column in _TEXT_COLUMNS:
            frame[column] = frame[column].fillna("")
    return frame


def _discover_csv(csv_path: Path, config: DataConfig) -> Discovery:
    notes: list[str] = []
    raw = _read_csv(csv_path)
    missing = {"path", "label"} - set(raw.columns)
    if missing:
        raise DataError(
            f"{csv_path} lacks the column(s) {', '.join(sorted(missing))}; it has {', '.join(raw.columns)}.",
            fix="name the image column 'path' and the class column 'label' (optional: patient_id, source).",
        )
    base = csv_path.parent
    frame = pd.DataFrame(
        {
            "path": [str((base / p).resolve()) if p else "" for p in raw["path"].str.strip()],
            "raw_label": raw["label"],
            "source_column": raw["source"].str.strip() if "source" in raw else None,
            "row": [f"{csv_path.name} row {i + 2}" for i in range(len(raw))],
        }
    )
    empty_paths = frame["path"] == ""
    if empty_paths.any():
        raise DataError(f"{frame.loc[empty_paths, 'row'].iloc[0]}: empty path.", fix="fill in the path or remove the row.")
    notes.extend(_paths_outside(raw["path"].str.strip(), frame["row"], base))
    if "patient_id" in raw:
        frame["patient_raw"] = raw["patient_id"].str.strip().replace("", None)
    else:
        frame["patient_raw"] = [patient_from_filename(Path(p)) for p in frame["path"]]
    for column in raw.columns:
        if column in {"path", "label", "patient_id", "source"}:
            continue
        frame[f"extra_{column}" if column in RESERVED_COLUMNS else column] = raw[column].values
    frame = _apply_labels(frame, config, str(csv_path), notes)
    source_column = frame.pop("source_column")
    frame["source"] = assign_sources(frame, config, column=source_column if "source" in raw else None, subfolder=None,
                                     where=str(csv_path), notes=notes)
    return Discovery("csv", base, frame, notes)


def _paths_outside(given: pd.Series, rows: pd.Series, base: Path) -> list[str]:
    """Notes naming CSV paths that are absolute, or relative but leading out of the CSV's folder (``../``).

    Both are read (a CSV may rightly point at images elsewhere), but a user sharing a CSV, or
    reading one from elsewhere, should see which rows reach outside its folder. The check is on the
    path as written (normalised, symlinks not followed): a symlinked image folder inside is not named.
    """
    absolute, escaping = [], []
    for text, row in zip(given, rows):
        if not text:
            continue
        if Path(text).expanduser().is_absolute():
            absolute.append(f"{row}: {text}")
        elif os.path.normpath(text).split(os.sep)[0] == os.pardir:
            escaping.append(f"{row}: {text} -> {os.path.normpath(base / text)}")
    notes = []
    for found, what in ((escaping, "lead outside the CSV's folder"), (absolute, "are absolute")):
        if found:
            shown = "; ".join(found[:3]) + (f"; and {len(found) - 3} more" if len(found) > 3 else "")
            notes.append(f"{len(found)} CSV path(s) {what} ({base}): {shown}. They are read as given; check that they "
                         "are the images you meant.")
    return notes


def _index_images(root: Path) -> dict[str, Path]:
    """File name -> path for every image under ``root`` (data sets spread images over folders)."""
    index: dict[str, Path] = {}
    for folder, _dirs, names in os.walk(root):
        for name in names:
            if Path(name).suffix.lower() in (".png", ".jpg", ".jpeg", ".dcm"):
                index.setdefault(name, Path(folder) / name)
    return index


def _discover_nih(csv_path: Path, config: DataConfig) -> Discovery:
    notes: list[str] = []
    raw = _read_csv(csv_path)
    needed = {"Image Index", "Finding Labels", "Patient ID"}
    if needed - set(raw.columns):
        raise DataError(f"{csv_path} is not a ChestX-ray14 Data_Entry file (needs {', '.join(sorted(needed))}).")
    wanted = {f: c for f, c in config.nih.findings.items() if config.canonical_label(c) is not None}
    findings = raw["Finding Labels"].str.strip()
    single = ~findings.str.contains("|", regex=False)
    selected = raw[single & findings.isin(list(wanted))].copy()
    notes.append(
        f"ChestX-ray14: {len(raw)} entries, {int(single.sum())} single-label, {len(selected)} of the findings "
        f"{', '.join(wanted) or '(none of data.nih.findings maps to a class)'}"
    )
    index = _index_images(csv_path.parent)
    paths = [index.get(name) for name in selected["Image Index"]]
    found = [p is not None for p in paths]
    if not all(found):
        absent = selected.loc[[not f for f in found], "Image Index"]
        notes.append(
            f"{len(absent)} selected entries have no image file under {csv_path.parent} (e.g. {absent.iloc[0]}); "
            "they are left out"
        )
    selected = selected[found]
    frame = pd.DataFrame(
        {
            "path": [str(p) for p in paths if p is not None],
            "raw_label": [wanted[f] for f in selected["Finding Labels"].str.strip()],
            "patient_raw": [f"nih:{int(pid):08d}" if str(pid).isdigit() else f"nih:{pid}" for pid in selected["Patient ID"]],
            "source": NIH,
            "row": [f"{csv_path.name} row {i + 2}" for i in selected.index],
            "full_labels": selected["Finding Labels"].values,
        }
    )
    for column, name in (("View Position", "view"), ("Patient Age", "age"), ("Patient Gender", "sex"), ("Follow-up #", "follow_up")):
        if column in selected:
            frame[name] = selected[column].values
    frame = _apply_labels(frame, config, str(csv_path), notes)
    return Discovery("nih", csv_path.parent, frame, notes)


def _covid_label(finding: str, mapping: dict[str, str]) -> str | None:
    """Map 'Pneumonia/Viral/COVID-19' by its full text, else by its most specific part."""
    finding = finding.strip()
    if finding in mapping:
        return mapping[finding]
    return mapping.get(finding.split("/")[-1].strip())


def _discover_covid(csv_path: Path, config: DataConfig) -> Discovery:
    notes: list[str] = []
    raw = _read_csv(csv_path)
    needed = {"patientid", "finding", "view", "filename"}
    if needed - set(raw.columns):
        raise DataError(f"{csv_path} is not a covid-chestxray-dataset metadata.csv (needs {', '.join(sorted(needed))}).")
    cfg = config.covid_dataset
    mapping = {f: c for f, c in cfg.findings.items() if config.canonical_label(c) is not None}
    views = {v.lower() for v in cfg.views}
    frontal = raw["view"].str.strip().str.lower().isin(views)
    modality = raw["modality"].str.strip().str.lower() == cfg.modality.lower() if "modality" in raw else True
    labels = raw["finding"].map(lambda f: _covid_label(f, mapping))
    selected = raw[frontal & modality & labels.notna()].copy()
    selected["raw_label"] = labels[selected.index]
    notes.append(
        f"covid-chestxray-dataset: {len(raw)} entries, {int((frontal & modality).sum())} frontal {cfg.modality} views, "
        f"{len(selected)} of the findings {', '.join(mapping)}"
    )
    folders = selected["folder"] if "folder" in selected else pd.Series("images", index=selected.index)
    paths = [csv_path.parent / str(folder) / str(name) for folder, name in zip(folders, selected["filename"])]
    exists = [p.is_file() for p in paths]
    if not all(exists):
        first = next(p for p, e in zip(paths, exists) if not e)
        notes.append(f"{exists.count(False)} selected entries have no image file (e.g. {first}); they are left out")
    keep = selected[exists]
    frame = pd.DataFrame(
        {
            "path": [str(p) for p, e in zip(paths, exists) if e],
            "raw_label": keep["raw_label"].values,
            "patient_raw": [f"ieee8023:{pid}" for pid in keep["patientid"]],
            "source": IEEE8023,
            "row": [f"{csv_path.name} row {i + 2}" for i in keep.index],
            "full_labels": keep["finding"].values,
            "view": keep["view"].values,
        }
    )
    frame = _apply_labels(frame, config, str(csv_path), notes)
    return Discovery("covid", csv_path.parent, frame, notes)
