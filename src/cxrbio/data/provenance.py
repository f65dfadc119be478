"""Which public data set an image comes from, and its patient, recognised from the file's name and path.

Chest X-ray collections are often mixed (the study's own: COVID-19 from adult collections,
Pneumonia and Normal from a paediatric set, four classes from ChestX-ray14), and a network can
learn the collection instead of the disease. The first defence is to know where each image came
from. This module recognises the naming schemes of widely used public sets; it is used for the
``source`` of an image (``data.source_from``) and its patient id, never as a feature of a
classifier: file names encode labels (Kermany's ``bacteria``/``virus``/``NORMAL2-``).

Recognised (each documented by its publisher):

========================== ========================================== ==============================
data set (``source``)      naming                                     patient
========================== ========================================== ==============================
``nih-chestxray14``        ``00000013_005.png``                       ``nih:00000013``
``kermany-paediatric``     ``person1_bacteria_1.jpeg``,               ``kermany:person1``,
                           ``IM-0115-0001.jpeg``,                     ``kermany:im-0115``,
                           ``NORMAL2-IM-1427-0001.jpeg``              ``kermany:normal2-im-1427``
``chexpert``               ``.../patient00001/study1/view1_frontal``  ``chexpert:patient00001``
``mimic-cxr``              ``.../p10/p10000032/s50414267/<id>.jpg``   ``mimic:p10000032``
``covid19-radiography-db`` ``COVID-1.png``, ``Viral Pneumonia-12.png`` (none)
========================== ========================================== ==============================

The ChestX-ray14 and covid-chestxray-dataset layouts (their metadata files) name their source
themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

#: The source of an image whose origin is not known (never a folder's name: that says nothing).
UNKNOWN = "unknown"

NIH = "nih-chestxray14"
KERMANY = "kermany-paediatric"
CHEXPERT = "chexpert"
MIMIC = "mimic-cxr"
COVID_RADIOGRAPHY = "covid19-radiography-db"
IEEE8023 = "ieee8023-covid-chestxray"


@dataclass(frozen=True)
class Recognised:
    """A recognised image: its data set, and its patient when the naming carries one."""

    dataset: str
    patient: str | None


_STEM_RULES: tuple[tuple[str, re.Pattern[str], str | None], ...] = (
    (NIH, re.compile(r"(?:^|_)(\d{8})_\d{3}$"), "nih:{0}"),
    (KERMANY, re.compile(r"(?:^|_)(person\d+)_(?:bacteria|virus)(?:_\d+)?$", re.IGNORECASE), "kermany:{0}"),
    (KERMANY, re.compile(r"^((?:NORMAL2-)?IM-\d{4})-\d{4}(?:-\d{4})?$", re.IGNORECASE), "kermany:{0}"),
    (COVID_RADIOGRAPHY, re.compile(r"^(?:COVID|Normal|Viral Pneumonia|Lung_Opacity)-\d+$", re.IGNORECASE), None),
)
_PATH_RULES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    (CHEXPERT, re.compile(r"(?:^|/)(patient\d{5})/study\d+/view\d+_(?:frontal|lateral)$", re.IGNORECASE), "chexpert:{0}"),
    (MIMIC, re.compile(r"(?:^|/)p\d{2}/(p\d{8})/s\d{8}/[^/]+$"), "mimic:{0}"),
)


def recognise(path: str | Path) -> Recognised | None:
    """The public data set (and patient) the file's name or path places it in, or None."""
    path = Path(path)
    for dataset, pattern, patient in _STEM_RULES:
        if match := pattern.search(path.stem):
            return Recognised(dataset, patient.format(match.group(1).lower()) if patient else None)
    tail = path.with_suffix("").as_posix()
    for dataset, pattern, patient in _PATH_RULES:
        if match := pattern.search(tail):
            return Recognised(dataset, patient.format(match.group(1).lower()))
    return None


def patient_from_filename(path: str | Path) -> str | None:
    """Patient id from a recognised naming scheme (ChestX-ray14, Kermany, CheXpert, MIMIC-CXR), else None."""
    found = recognise(path)
    return found.patient if found else None


def dataset_from_filename(path: str | Path) -> str:
    """The recognised public data set, else :data:`UNKNOWN`."""
    found = recognise(path)
    return found.dataset if found else UNKNOWN
