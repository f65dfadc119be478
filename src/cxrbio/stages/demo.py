"""Stage ``demo``: the whole pipeline on the built-in phantom, report included (``cxrbio demo``).

Generates the phantom into ``RUN/phantom`` (kept while its stamp says it has these parameters),
then calls the other stages' entry points in order. Every stage reuses what is fresh, so a second
run of the demo redoes only the report. The demo's config (default ``configs/demo.yaml``) is the
run's; a different one re-configures the run (``reconfigure``: what it changes is moved aside).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxrbio.config import Config, bundled_config, load_config
from cxrbio.run import freshness
from cxrbio.run.rundir import RunDir
from cxrbio.runtime.progress import Progress, counter
from cxrbio.runtime.timing import timed

__all__ = ["DemoResult", "run"]

STAGE = "demo"


@dataclass
class DemoResult:
    run_dir: Path
    report: Any  # ReportResult
    timings: dict[str, float] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)  # stage -> its result


def run(run_dir: str | Path = "runs/demo", *, config: Config | None = None, per_class: int = 100,
        report: str | Path | None = None, progress: Progress | None = None,
        on_stage: Any = None) -> DemoResult:
    """Phantom -> scan -> train -> embed -> masks -> radiomics -> analyze -> report.

    ``on_stage(name, result)`` is called after each stage (the CLI prints each stage's summary).
    """
    from cxrbio.data.phantom import PHANTOM_VERSION, generate_phantom
    from cxrbio.stages import analyze, embed, masks, radiomics, scan, train
    from cxrbio.stages import report as report_stage

    config = config or load_config(bundled_config("demo.yaml"))
    run = RunDir(run_dir)
    out = DemoResult(run.root, None)
    size = max(config.data.image_size, 64)
    options = {"version": PHANTOM_VERSION, "per_class": per_class, "size": size, "seed": config.folds.seed}
    want = freshness.expected(run, "phantom", {}, options=options)

    def done(name: str, result: Any) -> None:
        out.results[name] = result
        if on_stage is not None:
            on_stage(name, result)

    with timed(out.timings, "phantom"):
        phantom = run.output(STAGE, "phantom")
        fresh = freshness.status(run, want).fresh
        if not fresh:
            generate_phantom(phantom, per_class=per_class, size=size, seed=config.folds.seed,
                             progress=counter(progress, "phantom"))
            freshness.write_stamp(run, want)
    with timed(out.timings, "scan"):
        if not fresh or freshness.read_stamp(run.root, "manifest", {}) is None:
            result = scan.run(run.root, data=phantom, config=config, force=True, reconfigure=True, progress=progress)
            done("scan", result)
            if result.fold_error is not None:
                raise result.fold_error
    with timed(out.timings, "train"):
        done("train", train.run(run.root, config=config, skip_unavailable=True, reconfigure=True, progress=progress))
    with timed(out.timings, "embed"):
        done("embed", embed.run(run.root, progress=progress))
    with timed(out.timings, "masks"):
        done("masks", masks.run(run.root, progress=progress))
    with timed(out.timings, "radiomics"):
        done("radiomics", radiomics.run(run.root, progress=progress))
    with timed(out.timings, "analyze"):
        done("analyze", analyze.run(run.root, progress=progress))
    with timed(out.timings, "report"):
        out.report = report_stage.run(run.root, out=report, progress=progress)
        done("report", out.report)
    return out
