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
(:mod:`cxrbio.artifacts`) with a stamp per unit (:mod:`cxrbio.freshness`), and returns a typed
result. ``progress`` takes :class:`cxrbio.progress.ProgressEvent`s. The ``cxrbio`` command is a
thin shell over these functions.
"""

from cxrbio.stages import analyze, demo, embed, evaluate, lungs_removed, masks, radiomics, report, scan, train

__all__ = ["analyze", "demo", "embed", "evaluate", "lungs_removed", "masks", "radiomics", "report", "scan", "train"]
