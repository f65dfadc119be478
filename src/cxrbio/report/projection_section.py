"""UMAP of each strategy's out-of-fold embeddings and of the radiomics features, with separation.

Each fold's network has its own embedding space, so each fold gets its own panel; separation
(silhouette and 5-fold kNN accuracy, in the original space and in the projection) is what
compares the spaces, not the pictures.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from cxrbio.report.contents import RunContents
from cxrbio.report.figures import embedding_figure
from cxrbio.report.formatting import number


def separation_rows(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    if frame is None or frame.empty:
        return []
    rows = []
    for space, group in frame.groupby("space", sort=False):
        rows.append({"space": str(space), "silhouette": number(group["silhouette"].mean(), 3),
                     "silhouette_sd": number(group["silhouette"].std(), 3) if len(group) > 1 else "–",
                     "knn": number(group["knn_accuracy"].mean(), 3),
                     "knn_sd": number(group["knn_accuracy"].std(), 3) if len(group) > 1 else "–", "folds": len(group)})
    return rows


def projection_section(contents: RunContents) -> dict[str, Any]:
    panels = []
    for result in contents.analysed():
        umap = result.analysis.get("umap")
        if umap is None or umap.empty:
            continue
        panels.append({"name": result.name, "separation": separation_rows(result.analysis.get("separation")),
                       "figure": embedding_figure(umap, contents.classes,
                                                  f"UMAP of out-of-fold GAP embeddings ({result.name}), one panel per fold model",
                                                  f"umap-{result.name}")})
    radiomics = contents.radiomics_analysis.get("umap")
    radiomics_panel = None
    if radiomics is not None and not radiomics.empty:
        radiomics_panel = {"name": "radiomics", "separation": separation_rows(contents.radiomics_analysis.get("separation")),
                           "figure": embedding_figure(radiomics, contents.classes, "UMAP of the radiomics features (all images)",
                                                      "umap-radiomics")}
    return {"panels": panels, "radiomics": radiomics_panel}
