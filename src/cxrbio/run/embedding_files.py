"""Reading a run's embeddings (``embeddings/<strategy>/fold-<k>.parquet``): each image's out-of-fold row.

Every fold model embeds every included image; ``split`` marks the fold's held-out rows. The
analysis uses those only: across the folds of a strategy every image has exactly one, computed by
a model that never saw it, or the reader refuses (:func:`read_out_of_fold`). The embed stage
writes them (:mod:`cxrbio.stages.embed`, :mod:`cxrbio.features.embedding`).
"""

from __future__ import annotations

import pandas as pd

from cxrbio.errors import DataError
from cxrbio.run import freshness
from cxrbio.run.artifacts import command_for, missing_error
from cxrbio.run.rundir import RunDir


def embedded_folds(run: RunDir) -> dict[str, list[int]]:
    """Strategies with embeddings (stamped units), and their folds."""
    return freshness.folds_by_strategy(run.root, "embeddings")


def read_out_of_fold(run: RunDir, strategy: str, expected: pd.Series | None = None) -> pd.DataFrame:
    """Each image's embedding from the fold that held it out: image_id, fold, e0000...

    Raises when an image has no out-of-fold row or more than one (folds that do not partition
    the images, or embeddings of an older training), or, with ``expected``, when the image set
    differs from it.
    """
    folds = embedded_folds(run).get(strategy, [])
    if not folds:
        raise missing_error("embeddings", run.root, detail=strategy, strategies=strategy)
    parts = []
    for fold in folds:
        part = pd.read_parquet(run.path("embeddings", strategy=strategy, fold=fold),
                               filters=[("split", "==", "test")]).drop(columns="split")
        part.insert(1, "fold", fold)
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    redo = command_for("embed", run.root, strategies=strategy) + " --force"
    repeated = frame["image_id"][frame["image_id"].duplicated()]
    if len(repeated):
        raise DataError(f"{strategy}: {repeated.nunique()} images have more than one out-of-fold embedding "
                        f"(e.g. {repeated.iloc[0]}).", fix=f"run '{redo}'.")
    if expected is not None:
        missing = sorted(set(expected) - set(frame["image_id"]))
        extra = sorted(set(frame["image_id"]) - set(expected))
        if missing or extra:
            raise DataError(f"{strategy}: out-of-fold embeddings miss {len(missing)} and add {len(extra)} images "
                            f"relative to the manifest.", fix=f"run '{redo}'.")
    return frame
