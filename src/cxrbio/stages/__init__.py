"""The pipeline as a library: one module per stage, each with one keyword-only entry point.

    from cxrbio import stages
    from cxrbio.config import load_config

    stages.scan.run("runs/mine", data="my-xrays", config=load_config("configs/demo.yaml"))
    stages.train.run("runs/mine")
    stages.embed.run("runs/mine")
    stages.masks.run("runs/mine")
    stages.radiomics.run("runs/mine")
    stages.analyze.run("runs/mine")
    stages.lungs_removed.run("runs/mine")     # opt-in: retraining without the image centre
    stages.evaluate.run("runs/mine", data="another-hospital")  # opt-in: external evaluation
    stages.report.run("runs/mine")

Each ``run(run_dir, *, ...)`` opens the run directory, checks that the stages it needs have run
(the error names the command that fixes it), does its work, writes only its own artifacts
(:mod:`cxrbio.run.artifacts`) with a stamp per unit (:mod:`cxrbio.run.freshness`), and returns a typed
result. ``progress`` takes :class:`cxrbio.runtime.progress.ProgressEvent`s. The ``cxrbio`` command is a
thin shell over these functions.

Stages are imported on first use (``stages.train`` imports :mod:`cxrbio.stages.train` alone), so
training runs where the analysis's libraries (plotly, shap, umap, pyradiomics) are not installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cxrbio.stages import analyze, demo, embed, evaluate, lungs_removed, masks, radiomics, report, scan, train

__all__ = ["analyze", "demo", "embed", "evaluate", "lungs_removed", "masks", "radiomics", "report", "scan", "train"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return importlib.import_module(f"cxrbio.stages.{name}")
    raise AttributeError(f"module 'cxrbio.stages' has no attribute {name!r}")
