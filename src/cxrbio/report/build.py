"""Assemble the report: read the run, build each section, render one self-contained HTML file."""

from __future__ import annotations

import datetime as dt
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
from cxrbio.report.projection_section import projection_section
from cxrbio.report.provenance_section import provenance_section

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass
class ReportResult:
    path: Path
    size_bytes: int
    missing: list[Missing]
    thumbnails: bool = True  # whether X-ray pixels are embedded (burned-in text travels with the file)


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


@dataclass(frozen=True)
class RenderedReport:
    """The page of a run's report, and what the run lacks (the stage writes the page)."""

    page: str
    missing: list[Missing]
    thumbnails: bool


def build_report(run_dir: Path, progress: Callable[[str], None] | None = None,
                 config: Config | None = None) -> RenderedReport:
    """The report of ``run_dir`` as one HTML page (:mod:`cxrbio.stages.report` writes it)."""
    contents = load_contents(Path(run_dir), config)
    return RenderedReport(render(contents, progress), contents.missing, contents.config.report.thumbnails)
