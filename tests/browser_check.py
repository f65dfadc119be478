"""Open a cxrbio report in headless Chromium and check that it works as a reader would use it.

Used by tests/test_report.py, and on its own for any report:

    uv run python -m tests.browser_check reports/demo.html --screenshot reports/demo.png

Chromium is Debian's (``apt-get install chromium``; ``.ci/run`` installs it), driven by Playwright
with ``executable_path``: Playwright's own browser download is not needed. Set CXRBIO_CHROMIUM to
use another binary.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

SECTIONS = ("summary", "confounding", "performance", "embeddings", "candidates", "radiomics", "limitations", "methods")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--disable-quic",
    # WebGL (plotly's scattergl) on a machine without a GPU: Chromium's software renderer.
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
]


def chromium_path() -> str | None:
    configured = os.environ.get("CXRBIO_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class BrowserReport:
    console_errors: list[str] = field(default_factory=list)
    requests_outside: list[str] = field(default_factory=list)
    sections: dict[str, bool] = field(default_factory=dict)
    plots: int = 0
    plots_rendered: int = 0
    webgl_plots: int = 0
    sorted_column: list[float] = field(default_factory=list)
    sort_state: str | None = None
    title: str = ""
    dialogs: list[str] = field(default_factory=list)


def check_report(report: Path, screenshot: Path | None = None, timeout_ms: int = 60_000) -> BrowserReport:
    """Load the report from disk with the network cut off, collect errors, exercise a sortable table."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise FileNotFoundError("no Chromium found: apt-get install chromium, or set CXRBIO_CHROMIUM")
    result = BrowserReport()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda message: result.console_errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: result.console_errors.append(f"uncaught: {error}"))
            page.on("dialog", lambda dialog: (result.dialogs.append(dialog.message), dialog.dismiss()))

            def only_local(route) -> None:  # noqa: ANN001 - playwright Route
                url = route.request.url
                if url.startswith(("file:", "data:", "blob:", "about:")):
                    route.continue_()
                else:
                    result.requests_outside.append(url)
                    route.abort()

            page.route("**/*", only_local)
            page.goto(report.resolve().as_uri(), wait_until="load", timeout=timeout_ms)
            page.wait_for_timeout(1500)  # plotly draws after load
            result.title = page.title()
            for section in SECTIONS:
                element = page.query_selector(f"section#{section}")
                result.sections[section] = bool(element and element.is_visible() and element.inner_text().strip())
            result.plots = page.locator(".plotly-graph-div").count()
            result.plots_rendered = page.evaluate(
                "Array.from(document.querySelectorAll('.plotly-graph-div')).filter("
                "d => d.classList.contains('js-plotly-plot') && d.querySelector('.main-svg') && d.data && d.data.length).length")
            result.webgl_plots = page.evaluate(
                "Array.from(document.querySelectorAll('.plotly-graph-div')).filter("
                "d => d.querySelector('canvas') && d.data && d.data.some(t => t.type === 'scattergl')).length")
            table = page.locator("table.sortable.candidates").first
            if table.count():
                # the AUC column, found by its title so that adding a column does not move the check
                titles = [text.strip() for text in table.locator("thead th").all_inner_texts()]
                column = titles.index("AUC") if "AUC" in titles else 0
                header = table.locator("thead th").nth(column)
                header.click()
                result.sort_state = header.get_attribute("aria-sort")
                values = table.locator(f"tbody tr td:nth-child({column + 1})").evaluate_all(
                    "cells => cells.map(c => c.getAttribute('data-sort'))")
                result.sorted_column = [float(v) for v in values if v]
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=False)
        finally:
            browser.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--screenshot", type=Path)
    args = parser.parse_args()
    found = check_report(args.report, args.screenshot)
    print(json.dumps(found.__dict__, indent=1))
    healthy = (not found.console_errors and not found.requests_outside and all(found.sections.values())
               and found.plots == found.plots_rendered)
    raise SystemExit(0 if healthy else 1)


if __name__ == "__main__":
    main()
