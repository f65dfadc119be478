"""Assemble the report: read the run, build each section, render one self-contained HTML file."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from cxrbio.config import Config
from cxrbio.report.baseline import baseline_section
from cxrbio.report.candidates import candidates_section
from cxrbio.report.confounding import confounding_section
from cxrbio.report.contents import Missing, RunContents, load_contents
from cxrbio.report.figures import plotly_js
from cxrbio.report.limitations import limitations
from cxrbio.report.methods import methods_section
from cxrbio.report.performance import performance_section, scoreboard
from cxrbio.report.projection import projection_section
from cxrbio.report.provenance import provenance_section
from cxrbio.run.atomic import atomic_write_text

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass
class ReportResult:
    path: Path
    size_bytes: int
    missing: list[Missing]
    thumbnails: bool = True  # whether X-ray pixels are embedded (burned-in text travels with the file)


def default_report_path(run_dir: Path) -> Path:
    """reports/<run folder name>.html under the working directory (docs/report.md)."""
    return Path("reports") / f"{Path(run_dir).resolve().name}.html"


def environment() -> jinja2.Environment:
    """Autoescaping on for every template: user strings (labels, file names, config) render as text."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)


# (section shown while it is built, template variable, builder), in the page's order.
SECTION_BUILDERS: tuple[tuple[str, str, Callable[[RunContents], Any]], ...] = (
    ("summary", "provenance", provenance_section),
    ("confounding", "confounding", confounding_section),
    ("performance", "performance", performance_section),
    ("embeddings", "projection", projection_section),
    ("candidates", "candidates", candidates_section),
    ("radiomics", "baseline", baseline_section),
    ("limitations", "limitations", limitations),
    ("methods", "methods", methods_section),
)


def render(contents: RunContents, progress: Callable[[str], None] | None = None) -> str:
    built = {}
    for section, variable, build in SECTION_BUILDERS:
        if progress is not None:
            progress(section)
        built[variable] = build(contents)
    template = environment().get_template("report.html.j2")
    return template.render(
        title=f"cxrbio report: {contents.run.root.resolve().name}", config_name=contents.config.name,
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        css=(TEMPLATES / "report.css").read_text(), js=(TEMPLATES / "report.js").read_text(),
        plotly_js=_script_safe(plotly_js()), scoreboard=scoreboard(contents), missing=contents.missing, **built,
    )


def _script_safe(code: str) -> str:
    """A script's text must not contain '</script' (it would end the element early)."""
    return code.replace("</script", "<\\/script")


def build_report(run_dir: Path, out: Path | None = None, progress: Callable[[str], None] | None = None,
                 config: Config | None = None) -> ReportResult:
    """Write the report of ``run_dir`` to ``out`` (atomic: an interrupted build leaves any older report intact)."""
    contents = load_contents(Path(run_dir), config)
    page = render(contents, progress)
    target = Path(out) if out is not None else default_report_path(run_dir)
    atomic_write_text(target, page)
    _readable_by_others(target)
    return ReportResult(target, target.stat().st_size, contents.missing, contents.config.report.thumbnails)


def _readable_by_others(path: Path) -> None:
    """A report is meant to be shared: the permissions a new file gets under the umask, not the temp file's 0600."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
