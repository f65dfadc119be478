"""``cxrbio report``: one self-contained, interactive HTML file from a run directory (docs/report.md)."""

from cxrbio.report.build import RenderedReport, ReportResult, build_report

__all__ = ["RenderedReport", "ReportResult", "build_report"]
