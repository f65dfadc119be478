"""The design check: which biomarker claims can the data support, free of where the images came from?

A class imaged only at a hospital that sent no healthy controls can be told from the controls by
the hospital's look as well as by the disease, and no statistic computed afterwards can separate
the two. What can be separated is decided by the data's design, before any training: a disease
effect is *estimable free of source* only within sources (strata) that hold both the class and its
reference group (the control class, else the rest). This module states, per class, which strata
those are and how large an effect they could detect:

* ``design``: ``estimable`` (recorded sources hold the class and its reference), ``source
  unverified`` (no source recorded for the class; strata inferred from acquisition properties and
  DICOM device tags hold both groups: their estimate is only as good as the inference), ``not
  estimable`` (no stratum holds both groups: every comparison is also a comparison of sources);
* ``min_detectable_auc``: the smallest reference-vs-class AUC the stratified Wilcoxon test (van
  Elteren) detects with probability ``power`` at two-sided level ``alpha`` in those strata, from
  their patient counts (Noether's approximation: ``0.5 + (z_{1-alpha/2} + z_power) /
  sqrt(12 * sum_s n1_s n2_s / (N_s + 1))``);
* ``note``: what the data lacks, in words ("Emphysema: only in source X, which holds no Normal
  images; add X's Normal images").

Sources count as *recorded* when the scan took them from a CSV column, a source subfolder or a
public data set's file names (``source`` other than ``unknown``). Otherwise strata are inferred from
what the file says about its acquisition (format, stored colour mode, bit depth, compression, pixel
spacing, a coarse size, the DICOM device: manufacturer, model and station, pseudonymised at the
scan), labelled ``inferred-<hash>``; they give at most ``source unverified``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from cxrbio.data.provenance import UNKNOWN
from cxrbio.errors import ConfigError

ESTIMABLE = "estimable"
UNVERIFIED = "source unverified"
NOT_ESTIMABLE = "not estimable"
DESIGNS = (ESTIMABLE, UNVERIFIED, NOT_ESTIMABLE)
RECORDED, INFERRED = "recorded", "inferred"

#: Acquisition properties (manifest columns) that make an inferred stratum; absent columns are skipped.
INFERRED_FROM = ("format", "stored_mode", "bits", "compressed", "pixel_spacing", "dicom_device")

COLUMNS = ["class", "contrast", "sources", "strata", "stratum_kind", "patients_class", "patients_control", "design",
           "min_detectable_auc", "alpha", "power", "acquisition_flagged", "note"]


def inferred_groups(manifest: pd.DataFrame) -> pd.Series:
    """Per image: an acquisition group (``inferred-<8 hex>``) from what its file says about how it was made.

    The key is discrete: format, colour mode, bit depth, compression, pixel spacing (0.01 mm), the
    DICOM device (already pseudonymised by the scan) and the image's longer side on a log2 scale
    (sizes vary within a collection, but not by a factor of 1.4). Images of one collection mostly
    share it; it can split a collection or join two, hence "unverified".
    """
    parts = []
    for column in INFERRED_FROM:
        if column in manifest:
            values = manifest[column]
            if column == "pixel_spacing":
                values = pd.to_numeric(values, errors="coerce").round(2)
            parts.append(values.astype(str).fillna(""))
    if {"width", "height"} <= set(manifest.columns):
        longer = np.maximum(pd.to_numeric(manifest["width"], errors="coerce").fillna(1).to_numpy(float),
                            pd.to_numeric(manifest["height"], errors="coerce").fillna(1).to_numpy(float))
        parts.append(pd.Series(np.round(np.log2(np.maximum(longer, 1)) * 2) / 2, index=manifest.index).astype(str))
    if not parts:
        return pd.Series("inferred-00000000", index=manifest.index)
    keys = parts[0].str.cat(list(parts[1:]), sep="|") if len(parts) > 1 else parts[0]  # type: ignore[arg-type]  # Series are accepted
    return keys.map(lambda k: "inferred-" + hashlib.sha1(k.encode()).hexdigest()[:8])


def strata(manifest: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per image: (stratum, kind): its recorded source (kind ``recorded``), else its acquisition group (``inferred``)."""
    source = manifest["source"].astype(str) if "source" in manifest else pd.Series(UNKNOWN, index=manifest.index)
    recorded = source != UNKNOWN
    inferred = inferred_groups(manifest)
    return source.where(recorded, inferred), pd.Series(np.where(recorded, RECORDED, INFERRED), index=manifest.index)


def min_detectable_auc(counts: list[tuple[int, int]], *, alpha: float, power: float) -> float:
    """The smallest AUC (above 0.5) the van Elteren test detects with ``power`` at two-sided ``alpha``; NaN without data.

    ``counts``: (class patients, reference patients) per stratum. Values above 1 mean that no effect,
    however large, is detectable there.
    """
    information = sum(n1 * n2 / (n1 + n2 + 1) for n1, n2 in counts if n1 > 0 and n2 > 0)
    if information <= 0:
        return float("nan")
    z = stats.norm.isf(alpha / 2) + stats.norm.isf(1 - power)
    return float(0.5 + z / np.sqrt(12 * information))


@dataclass
class PatientStrata:
    """One row per patient: its label, stratum and kind (of its most frequent stratum), and its acquisition group."""

    frame: pd.DataFrame  # patient_id, label, stratum, kind, group

    @classmethod
    def of(cls, manifest: pd.DataFrame) -> PatientStrata:
        stratum, kind = strata(manifest)
        images = pd.DataFrame({"patient_id": manifest["patient_id"].astype(str).to_numpy(),
                               "label": manifest["label"].astype(str).to_numpy(), "stratum": stratum.to_numpy(),
                               "kind": kind.to_numpy(), "group": inferred_groups(manifest).to_numpy()})
        first = images.groupby(["patient_id", "stratum", "kind", "group"]).size().reset_index(name="n")
        first = first.sort_values(["patient_id", "n", "stratum"], ascending=[True, False, True]).drop_duplicates("patient_id")
        labels = images.groupby("patient_id")["label"].agg(lambda s: s.value_counts().index[0])
        return cls(first.drop(columns="n").assign(label=first["patient_id"].map(labels)).reset_index(drop=True))


def control_of(settings: Any, classes: list[str]) -> tuple[str | None, list[str]]:
    """(the control class, notes) from ``analysis.control_class`` / ``gate_control`` and the run's classes.

    A control class left at its default (Normal) that the run lacks is noted; one named on purpose that
    is not a class is refused; null (or ``gate_control: false``) compares each class with the rest.
    """
    active = settings.active_control(classes)
    if active is not None:
        return active, []
    name = settings.control_class
    if name is None or not settings.gate_control:
        return None, []
    if name != type(settings).model_fields["control_class"].default:
        raise ConfigError(f"analysis.control_class is {name!r} but the run's classes are {', '.join(classes)}.",
                          fix="set it to the class of the healthy controls, or to null to compare each class with the rest.")
    return None, [f"no class {name!r} in the run: each class is compared with the rest, not with healthy controls "
                  "(set analysis.control_class to the healthy controls' class)."]


def design_table(manifest: pd.DataFrame, classes: list[str], *, control: str | None, alpha: float, power: float,
                 acquisition_flagged: list[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """One row per class with images (schema: :data:`COLUMNS`; docs/confounding.md), and notes for the scan.

    ``manifest``: included images. ``control``: the control class (healthy controls); each other
    class is compared with it, the control class itself with the rest. None, or a control class with
    no images: every class is compared with the rest (said in the notes).
    """
    patients = PatientStrata.of(manifest).frame
    flagged = set(acquisition_flagged or [])
    present = [c for c in classes if (patients["label"] == c).any()]
    notes: list[str] = []
    if control is not None and control not in present:
        notes.append(f"no {control} images (the control class): each class is compared with the rest of the data, not "
                     "with healthy controls.")
        control = None
    unknown = patients["kind"] == INFERRED
    if unknown.all():
        notes.append("no image has a recorded source (a source column, DATA/<class>/<source>/ folders, or a public data "
                     "set's file names): strata are inferred from acquisition properties, so no class is estimable free "
                     "of source.")
    elif unknown.any():
        listed = ", ".join(f"{c} {n}" for c, n in patients.loc[unknown, "label"].value_counts().items())
        notes.append(f"{int(unknown.sum())} patients have no recorded source ({listed}): a class estimable within its "
                     "recorded sources leaves them out; the others are judged within inferred acquisition groups.")
    rows = []
    for cls in present:
        mine = patients["label"] == cls
        reference = (patients["label"] == control) if (control is not None and cls != control) else ~mine
        contrast = f"vs {control}" if (control is not None and cls != control) else "vs rest"
        reference_name = control if (control is not None and cls != control) else "other classes'"
        sources = sorted(patients.loc[mine & ~unknown, "stratum"].unique())
        row = {"class": cls, "contrast": contrast, "sources": ", ".join(sources), "alpha": alpha, "power": power,
               "acquisition_flagged": cls in flagged}
        mine_used, reference_used, column = mine & ~unknown, reference & ~unknown, "stratum"
        chosen, kind = _shared(patients[column], mine_used, reference_used), RECORDED
        if not chosen and (mine & unknown).any():  # no recorded source to estimate in: acquisition groups, unverified
            mine_used, reference_used, column = mine & unknown, reference, "group"
            chosen, kind = _shared(patients[column], mine_used, reference_used), INFERRED
        counts = [(int((mine_used & (patients[column] == s)).sum()), int((reference_used & (patients[column] == s)).sum()))
                  for s in chosen]
        design = (ESTIMABLE if kind == RECORDED else UNVERIFIED) if chosen else NOT_ESTIMABLE
        row.update(strata=", ".join(chosen), stratum_kind=kind if chosen else "none",
                   patients_class=sum(n for n, _ in counts), patients_control=sum(n for _, n in counts), design=design,
                   min_detectable_auc=min_detectable_auc(counts, alpha=alpha, power=power),
                   note=_note(cls, design, sources, reference_name, bool((mine & unknown).any()), chosen, kind))
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS), notes


def _shared(labels: pd.Series, mine: pd.Series, reference: pd.Series) -> list[str]:
    """Strata (values of ``labels``) holding at least one patient of each group."""
    return sorted(set(labels[mine]) & set(labels[reference]))


def _note(cls: str, design: str, sources: list[str], reference: str, has_unknown: bool, chosen: list[str], kind: str) -> str:
    if design == ESTIMABLE:
        return ""
    if design == UNVERIFIED:
        return (f"{cls}: no recorded source; compared with {reference} images within {len(chosen)} acquisition group(s) "
                "inferred from the files. Record each image's source (a source column, or DATA/<class>/<source>/ "
                "folders) to make it estimable.")
    if sources and not has_unknown:
        listed = ", ".join(sources)
        return (f"{cls}: only in source(s) {listed}, which hold no {reference} images. Add {listed}'s {reference} images, "
                f"or {cls} images from a source that has them.")
    return (f"{cls}: no stratum (recorded source or inferred acquisition group) holds both {cls} and {reference} images. "
            "Record each image's source, and add controls imaged where the class was.")


def describe(row: pd.Series) -> str:
    """One line per class for the scan summary and the report."""
    mda = row["min_detectable_auc"]
    detectable = "" if not np.isfinite(mda) else (
        f"; smallest detectable AUC {mda:.2f}" if mda <= 1 else "; no effect detectable at this size")
    where = f" within {row['strata']}" if row["strata"] else ""
    return (f"{row['class']} {row['contrast']}: {row['design']}{where} ({row['patients_class']} vs "
            f"{row['patients_control']} patients{detectable})")
