"""The numbers Apostolopoulos et al. (2020) published, for setting ours beside them.

One place for them: the HTML report and ``analyses/paper_tables.py`` both read this module.
Percentages as printed in the paper's Tables 1, 4 and 5; confusion matrices as printed (rows
predicted, columns actual). Table 2's matrix is garbled in the text we have, so it is absent.
"""

from __future__ import annotations

#: The seven classes of the study, in the order of its confusion matrices (Tables 2 and 6): the one definition
#: (the config's default ``data.classes`` and the phantom's classes are this tuple).
PAPER_CLASSES: tuple[str, ...] = ("COVID-19", "Edema", "Effusion", "Emphysema", "Fibrosis", "Pneumonia", "Normal")

# strategy: (2-class acc, 7-class acc, sensitivity, specificity) in %, None = not reported
PUBLISHED_METRICS: dict[str, tuple[float | None, float | None, float | None, float | None]] = {
    "offshelf": (88.81, 51.98, 4.62, None),
    "finetune-1": (86.44, 50.24, 11.22, None),
    "finetune-3": (88.02, 56.91, 57.26, None),
    "finetune-5": (87.66, 52.67, 58.08, None),
    "finetune-7": (90.37, 43.43, 63.52, 93.91),
    "finetune-9": (91.28, 66.31, 71.84, 94.55),
    "finetune-11": (92.33, 75.67, 82.96, 93.96),
    "scratch": (99.18, 87.66, 97.36, 99.42),
}

# Table 6: rows predicted, columns actual, in PAPER_CLASSES order.
PUBLISHED_TABLE_6 = [
    [443, 1, 4, 4, 7, 3, 1],
    [1, 232, 36, 34, 11, 0, 0],
    [2, 31, 161, 58, 37, 0, 0],
    [3, 12, 54, 156, 40, 0, 0],
    [3, 17, 56, 63, 184, 0, 0],
    [1, 0, 0, 0, 1, 907, 0],
    [2, 0, 0, 0, 0, 0, 1340],
]

# Tables 3 and 7: (TP, FP, FN, TN) of COVID-19 vs the rest.
PUBLISHED_BINARY: dict[str, tuple[int, int, int, int]] = {"offshelf": (21, 3, 434, 3447), "scratch": (443, 20, 12, 3430)}


def strategy_order(name: str) -> tuple[int, int]:
    """offshelf, finetune-1 … finetune-N, scratch: the order of the paper's tables."""
    if name == "offshelf":
        return (0, 0)
    if name.startswith("finetune-"):
        try:
            return (1, int(name.split("-", 1)[1]))
        except ValueError:
            return (1, 999)
    return (2, 0) if name == "scratch" else (3, 0)
