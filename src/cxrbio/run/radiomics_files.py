"""Reading a run's radiomics features (``radiomics/features.parquet``: image_id + one column per feature)."""

from __future__ import annotations

import pandas as pd

from cxrbio.run.artifacts import missing_error
from cxrbio.run.rundir import RunDir


def read_features(run: RunDir) -> pd.DataFrame:
    """The features table; the error names 'cxrbio radiomics' where it is missing."""
    path = run.path("radiomics")
    if not path.is_file():
        raise missing_error("radiomics", run.root)
    return pd.read_parquet(path)
