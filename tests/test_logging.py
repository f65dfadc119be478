"""Library logging: a Python caller who passes no progress callback still hears a stage's lines and notes."""

from __future__ import annotations

import logging

from cxrbio.runtime.progress import ProgressEvent, say, warn


def test_without_a_callback_lines_are_logged_on_the_callers_logger_and_notes_as_warnings(caplog):
    with caplog.at_level(logging.INFO, logger="cxrbio"):
        say(None, "scratch fold 0: trained", logger=logging.getLogger("cxrbio.stages.train"))
        warn(None, "scratch fold 1: model is stale (weights changed)")
    records = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert ("cxrbio.stages.train", logging.INFO, "scratch fold 0: trained") in records
    # warn() names the calling module's logger; a test module is outside the package, so 'cxrbio'
    assert ("cxrbio", logging.WARNING, "scratch fold 1: model is stale (weights changed)") in records


def test_with_a_callback_the_line_goes_to_the_callback_alone(caplog):
    seen: list[ProgressEvent] = []
    with caplog.at_level(logging.INFO, logger="cxrbio"):
        say(seen.append, "embedded")
        warn(seen.append, "not trained")
    assert [e.message for e in seen] == ["embedded", "not trained"] and not caplog.records


def test_the_cli_renders_library_warnings_with_rich_once():
    from rich.logging import RichHandler

    from cxrbio.cli.console import render_library_logging

    render_library_logging()
    render_library_logging()
    handlers = [h for h in logging.getLogger("cxrbio").handlers if isinstance(h, RichHandler)]
    assert len(handlers) == 1 and handlers[0].level == logging.WARNING
