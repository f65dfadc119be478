"""Plotly figures as HTML fragments that share one embedded copy of plotly.js.

Plotly draws some HTML tags found in text (``<b>``, ``<a href>``, ``<br>``), so every label that
comes from the user goes through ``plot_text``: escaped, it is shown literally and nothing in it
is interpreted. Plotly's JSON is itself safe inside a script element (it escapes ``<``, ``>``, ``/``).
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

# Okabe-Ito, readable by colour-blind readers, then two more for >8 classes.
CLASS_COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442",
                 "#999999", "#8C564B"]
PLOT_CONFIG = {"displaylogo": False, "responsive": True, "toImageButtonOptions": {"format": "png", "scale": 2}}


def plot_text(value: Any) -> str:
    """A user string made inert for plotly's text renderer (it shows entities as the characters)."""
    return html.escape(str(value), quote=False)


def figure_html(figure: go.Figure, element_id: str) -> str:
    """The figure's div and script; plotly.js itself is embedded once in the page's head."""
    figure.update_layout(template="plotly_white", margin={"l": 50, "r": 20, "t": 60, "b": 50},
                         font={"family": "system-ui, sans-serif", "size": 12})
    return figure.to_html(full_html=False, include_plotlyjs=False, div_id=element_id, config=PLOT_CONFIG)


def plotly_js() -> str:
    """The plotly.js bundle shipped with the plotly package (the report opens with no network)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def saliency_figure(saliency: np.ndarray, mask: np.ndarray | None, element_id: str, px: int, cells: int = 40) -> str:
    """A saliency map alone (no X-ray under it) as a heatmap, with the lung contour in cyan: the gallery's tile
    when the report carries no patient pixels (``report.thumbnails: false``)."""
    size = saliency.shape[0]
    step = max(1, int(np.ceil(size / cells)))
    cut = (size // step) * step
    pooled = saliency[:cut, :cut].reshape(cut // step, step, cut // step, step).mean(axis=(1, 3))
    figure = go.Figure(go.Heatmap(z=np.round(pooled, 3), colorscale="Hot", showscale=False, hoverinfo="skip"))
    if mask is not None and mask.any():
        from scipy import ndimage

        small = mask[:cut, :cut].reshape(cut // step, step, cut // step, step).mean(axis=(1, 3)) > 0.5
        edge = small & ~ndimage.binary_erosion(small)
        rows, cols = np.nonzero(edge)
        figure.add_trace(go.Scatter(x=cols, y=rows, mode="markers", marker={"size": 2, "color": "#00e5ff"},
                                    hoverinfo="skip", showlegend=False))
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    figure.update_layout(width=px + 8, height=px + 8, margin={"l": 4, "r": 4, "t": 4, "b": 4}, plot_bgcolor="black")
    return figure.to_html(full_html=False, include_plotlyjs=False, div_id=element_id,
                          config={"displayModeBar": False, "staticPlot": True})


def embedding_figure(points: pd.DataFrame, classes: list[str], title: str, element_id: str,
                     panel_titles: dict[Any, str] | None = None) -> str:
    """UMAP scatter (WebGL), one panel per fold when ``points`` has a fold column, coloured by class."""
    panels = sorted(points["fold"].unique()) if "fold" in points.columns else [None]
    columns = min(len(panels), 3)
    rows = int(np.ceil(len(panels) / columns))
    titles = [(panel_titles or {}).get(p, f"fold {p}") for p in panels] if panels != [None] else None
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=titles, horizontal_spacing=0.04,
                           vertical_spacing=0.08)
    for k, panel in enumerate(panels):
        frame = points if panel is None else points[points["fold"] == panel]
        for i, name in enumerate(classes):
            subset = frame[frame["label"] == name]
            if subset.empty:
                continue
            figure.add_trace(go.Scattergl(
                x=subset["x"], y=subset["y"], mode="markers", name=plot_text(name), legendgroup=plot_text(name),
                showlegend=k == 0, marker={"size": 5, "color": CLASS_COLOURS[i % len(CLASS_COLOURS)], "opacity": 0.8},
                text=[plot_text(v) for v in subset["image_id"]],
                hovertemplate="%{text}<extra>" + plot_text(name) + "</extra>"),
                row=k // columns + 1, col=k % columns + 1)
    figure.update_xaxes(showticklabels=False)
    figure.update_yaxes(showticklabels=False)
    figure.update_layout(title=title, height=360 * rows, legend={"itemsizing": "constant"})
    return figure_html(figure, element_id)
