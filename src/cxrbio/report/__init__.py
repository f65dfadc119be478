"""``cxrbio report``: one self-contained, interactive HTML file from a run directory (docs/report.md)."""

from cxrbio.report.build import ReportResult, build_report, default_report_path

__all__ = ["ReportResult", "build_report", "default_report_path"]
