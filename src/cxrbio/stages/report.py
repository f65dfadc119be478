"""Stage ``report``: one self-contained HTML file of the run (docs/report.md).

Reads only the run's files, each optional: a partial run gives a partial report that lists what
is missing with the command that makes it. Written outside the run directory (default
``reports/<run name>.html``): the run holds the pseudonym salt, which must not travel with a
shared file. Report settings may come from a ``config`` that differs from the run's only in
``analysis``/``report``.
"""

from __future__ import annotations

from pathlib import Path

from cxrbio.config import Config
from cxrbio.report.build import ReportResult, build_report
from cxrbio.run import runconfig
from cxrbio.run.report_file import default_report_path, write_report
from cxrbio.run.rundir import open_run
from cxrbio.runtime.progress import Progress, ProgressEvent, silent

__all__ = ["ReportResult", "run"]

STAGE = "report"


def run(run_dir: str | Path, *, out: str | Path | None = None, config: Config | None = None,
        thumbnails: bool | None = None, progress: Progress | None = None) -> ReportResult:
    """Write the report; returns its path, size and what the run lacks.

    ``thumbnails``: embed X-ray thumbnails in the saliency gallery (None: ``report.thumbnails``); False
    writes a file with no patient pixels.
    """

    report = progress or silent
    run, own = open_run(run_dir)
    effective = runconfig.adopt(run, config, stage=STAGE) if config is not None else None
    if thumbnails is not None:
        base = effective or own
        effective = base.model_copy(update={"report": base.report.model_copy(update={"thumbnails": thumbnails})})
    from cxrbio.report.build import SECTION_BUILDERS

    built = iter(range(1, len(SECTION_BUILDERS) + 1))
    rendered = build_report(run.root, config=effective,
                            progress=lambda section: report(ProgressEvent("report", next(built), len(SECTION_BUILDERS),
                                                                          message=section)))
    target = Path(out) if out is not None else default_report_path(run.root)
    size = write_report(target, rendered.page)
    return ReportResult(target, size, rendered.missing, rendered.thumbnails)
