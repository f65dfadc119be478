"""Calibration in the report: ECE and Brier per strategy and class, a reliability diagram, per source.

Reads ``metrics/<strategy>.json["calibration"]`` (:mod:`cxrbio.evaluation.calibration`, written by ``cxrbio
train``). Temperature-scaled figures sit beside the uncalibrated ones when the run fitted them
(on each fold's inner validation patients).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cxrbio.report.contents import StrategyResults
from cxrbio.report.figures import CLASS_COLOURS, figure_html, plot_text
from cxrbio.report.formatting import number, number_ci, pct

#: Per-class curves leave out bins with fewer images than this (a bin of one image is 0 or 1).
MIN_BIN_IMAGES = 5


def _points(bins: dict[str, list], least: float = 1) -> tuple[list[float], list[float], list[float]]:
    """(confidence, frequency, count) of the bins holding at least ``least`` images."""
    kept = [i for i, c in enumerate(bins["count"]) if c and c >= least]
    return ([bins["confidence"][i] for i in kept], [bins["frequency"][i] for i in kept], [bins["count"][i] for i in kept])


def reliability_figure(name: str, calibration: dict[str, Any], classes: list[str]) -> str:
    """Left: top-label confidence vs accuracy (uncalibrated, and temperature-scaled); right: per class."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=(
        "top label: confidence vs accuracy", f"per class: p(class) vs frequency (bins of ≥ {MIN_BIN_IMAGES} images)"))
    for col in (1, 2):
        figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration", showlegend=col == 1,
                                    line={"dash": "dot", "color": "#999"}), row=1, col=col)
    for key, label, colour, dash in (("uncalibrated", "uncalibrated", "#222222", "solid"),
                                     ("scaled", "temperature-scaled", "#777777", "dash")):
        summary = calibration.get(key)
        if not summary:
            continue
        x, y, n = _points(summary["reliability"])
        size = (6 + 14 * np.sqrt(np.asarray(n) / max(max(n), 1))).tolist() if n else []
        figure.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=f"{label} (ECE {number(summary['ece'])})",
                                    marker={"size": size, "color": colour}, line={"color": colour, "dash": dash},
                                    text=[f"{int(c)} images" for c in n], hovertemplate="%{x:.2f} → %{y:.2f}, %{text}"),
                         row=1, col=1)
    for i, name_ in enumerate(classes):
        entry = calibration.get("uncalibrated", {}).get("per_class", {}).get(name_)
        if not entry:
            continue
        x, y, n = _points(entry["reliability"], MIN_BIN_IMAGES)
        figure.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=plot_text(name_),
                                    line={"color": CLASS_COLOURS[i % len(CLASS_COLOURS)], "width": 1.5},
                                    text=[f"{int(c)} images" for c in n], hovertemplate="%{x:.2f} → %{y:.2f}, %{text}"),
                         row=1, col=2)
    figure.update_xaxes(range=[0, 1], title_text="predicted probability")
    figure.update_yaxes(range=[0, 1.02], title_text="observed frequency")
    figure.update_layout(title=f"Reliability ({name}, pooled out-of-fold; marker size: images in the bin)", height=420)
    return figure_html(figure, f"reliability-{name}")


def calibration_view(result: StrategyResults, classes: list[str]) -> dict[str, Any] | None:
    """What the template shows for one strategy's calibration; None for metrics written before it existed."""
    calibration = (result.metrics or {}).get("calibration")
    if not calibration:
        return None
    raw, scaled = calibration["uncalibrated"], calibration.get("scaled")
    ci = raw.get("ci95", {})
    temperature = calibration.get("temperature", {})
    per_fold = temperature.get("per_fold", {})
    rows = []
    for name in classes:
        entry, after = raw["per_class"].get(name, {}), (scaled or {}).get("per_class", {}).get(name, {})
        rows.append({"class": name, "ece": number(entry.get("ece")), "brier": number(entry.get("brier")),
                     "scaled_ece": number(after.get("ece")) if scaled else "–",
                     "scaled_brier": number(after.get("brier")) if scaled else "–"})
    sources = [{"source": source, "n": entry["n"], "accuracy": pct(entry.get("accuracy")),
                "confidence": pct(entry.get("mean_confidence")), "ece": number(entry.get("ece")),
                "brier": number(entry.get("brier")), "scaled_ece": number(entry.get("scaled_ece"))}
               for source, entry in calibration.get("by_source", {}).items()]
    return {
        "bins": calibration.get("bins"),
        "n": raw.get("n"),
        "ece": number_ci(raw.get("ece"), ci.get("ece")),
        "brier": number_ci(raw.get("brier"), ci.get("brier")),
        "log_loss": number(raw.get("log_loss")),
        "confidence": pct(raw.get("mean_confidence")), "accuracy": pct(raw.get("accuracy")),
        "scaled": {"ece": number(scaled["ece"]), "brier": number(scaled["brier"]), "log_loss": number(scaled["log_loss"]),
                   "confidence": pct(scaled.get("mean_confidence"))} if scaled else None,
        "temperature_status": temperature.get("status", "not fitted"),
        "temperature_reason": temperature.get("reason", ""),
        "temperature_notes": temperature.get("notes", []),
        "validation_images": sum(temperature.get("validation_images", {}).values()),
        "temperatures": ", ".join(f"fold {k}: {float(v):.2f}" for k, v in sorted(per_fold.items(), key=lambda kv: int(kv[0]))),
        "per_class": rows,
        "by_source": sources,
        "figure": reliability_figure(result.name, calibration, classes),
    }
