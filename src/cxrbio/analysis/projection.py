"""UMAP projections with separation scores, so a picture is never the only evidence.

Per fold (a fold model's out-of-fold embeddings; dims are per model) and for the radiomics
features of all images: standardised, then projected with umap-learn (seeded, hence
single-threaded and reproducible). Separation is scored in the original space and in the
projection: silhouette of the classes, and the 5-fold cross-validated accuracy of a 5-nearest-
neighbour classifier whose folds are grouped by patient (``fold_group``: a patient and every
image a near-duplicate joins to it), so no image is scored by a neighbour from the same patient
or a copy of itself. The projection's scores are descriptive: UMAP optimises neighbourhoods.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd


def separation(values: np.ndarray, y: np.ndarray, seed: int, *, groups: np.ndarray) -> dict[str, float]:
    """Silhouette of the classes, and patient-grouped cross-validated 5-NN accuracy (NaN when too few patients)."""
    from sklearn.metrics import silhouette_score
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    present = np.unique(y)
    if len(present) < 2:
        return {"silhouette": np.nan, "knn_accuracy": np.nan}
    groups = np.asarray(groups).astype(str)
    per_class = pd.DataFrame({"y": y, "g": groups}).groupby("y")["g"].nunique()
    splits = int(min(5, per_class.min()))
    knn = np.nan
    if splits >= 2:
        cv = StratifiedGroupKFold(splits, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*least populated class.*")
            knn = float(cross_val_score(KNeighborsClassifier(5), values, y, groups=groups, cv=cv).mean())
    return {"silhouette": float(silhouette_score(values, y)), "knn_accuracy": knn}


def project(values: np.ndarray, y: np.ndarray, neighbors: int, min_dist: float, seed: int, *,
            groups: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    """(n, 2) UMAP coordinates and separation rows for the original and projected space (``groups``: patients)."""
    from sklearn.preprocessing import StandardScaler

    scaled = StandardScaler().fit_transform(values)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")  # seeded UMAP runs single-threaded
        warnings.filterwarnings("ignore", category=FutureWarning)
        import umap

        coords = umap.UMAP(n_neighbors=min(neighbors, len(values) - 1), min_dist=min_dist, random_state=seed,
                           n_components=2).fit_transform(scaled)
    rows = [{"space": "original", **separation(scaled, y, seed, groups=groups)},
            {"space": "umap", **separation(coords, y, seed, groups=groups)}]
    return coords.astype(np.float32), rows


def projection_table(ids: np.ndarray, labels: list[str], coords: np.ndarray, **columns: Any) -> pd.DataFrame:
    frame = pd.DataFrame({"image_id": ids, "label": labels, "x": coords[:, 0], "y": coords[:, 1]})
    for name, value in columns.items():
        frame.insert(1, name, value)
    return frame
