"""Global-average-pooling embeddings of every trained fold model: what the network learned, per image.

For each strategy and fold, ``embeddings/<strategy>/fold-<k>.parquet`` holds one row per
included image: ``image_id``, ``split`` (``test`` for the fold's held-out images, ``train``
otherwise) and the GAP vector ``e0000 ... e<D-1>`` (float32, D = 1280 x alpha, rounded as
MobileNetV2 rounds it). Analyses use the ``test`` rows: across the folds of a strategy, every
image has exactly one, computed by a model that never saw it (:func:`read_out_of_fold`).

Images are read batch by batch from the run's memory-mapped image cache and embeddings are
written to Parquet a chunk at a time, so memory is bounded by the chunk, not the data set.
There is no augmentation at export. A file records the SHA-256 of the model it came from and
the key of the image set; it is rewritten only when either changed (or with ``force``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbio.config import Config
from cxrbio.data.duplicates import sha256_file
from cxrbio.errors import DataError
from cxrbio.rundir import RunDir, atomic_write

METADATA_KEY = b"cxrbio.embeddings"
CHUNK_IMAGES = 1024  # images per model.predict call and per Parquet row group
FoldProgress = Callable[[str, int, int, int], None]  # strategy, fold, images done, images total


def embedding_columns(dims: int) -> list[str]:
    return [f"e{i:04d}" for i in range(dims)]


def trained_strategies(run: RunDir) -> dict[str, list[int]]:
    """Strategies with at least one finished fold (``DONE``), and those folds."""
    found: dict[str, list[int]] = {}
    train_root = run.root / "train"
    if not train_root.is_dir():
        return found
    for strategy_dir in sorted(p for p in train_root.iterdir() if p.is_dir()):
        folds = sorted(int(d.name.split("-", 1)[1]) for d in strategy_dir.glob("fold-*") if (d / "DONE").is_file())
        if folds:
            found[strategy_dir.name] = folds
    return found


def embedding_model(model: Any) -> Any:
    """The trained network cut at its global-average-pooling layer."""
    import keras

    return keras.Model(model.inputs[0], model.get_layer("gap").output, name="gap_embedder")


def read_metadata(path: Path) -> dict[str, Any] | None:
    import pyarrow.parquet as pq

    try:
        raw = pq.read_schema(path).metadata or {}
        return json.loads(raw[METADATA_KEY])
    except (OSError, KeyError, ValueError):
        return None


@dataclass
class EmbedSummary:
    """What one ``embed`` call did, per strategy."""

    written: dict[str, list[int]] = field(default_factory=dict)
    up_to_date: dict[str, list[int]] = field(default_factory=dict)
    missing_folds: dict[str, list[int]] = field(default_factory=dict)
    skipped_strategies: dict[str, str] = field(default_factory=dict)
    dims: dict[str, int] = field(default_factory=dict)
    images: int = 0


def export_fold(run: RunDir, strategy: str, fold: int, data: Any, test_mask: np.ndarray, images_key: str,
                batch_size: int, force: bool = False, progress: FoldProgress | None = None) -> bool:
    """Write embeddings/<strategy>/fold-<fold>.parquet; False when it was already current."""
    import keras
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cxrbio.data.pipeline import make_dataset
    from cxrbio.quiet import native_stderr_captured

    model_path = run.train_fold(strategy, fold) / "model.keras"
    digest = sha256_file(model_path)
    target = run.embeddings(strategy, fold)
    identity = {"strategy": strategy, "fold": fold, "model_sha256": digest, "images_key": images_key}
    existing = read_metadata(target) if target.is_file() else None
    if not force and existing is not None and all(existing.get(k) == v for k, v in identity.items()):
        return False

    model = keras.models.load_model(model_path, compile=False)
    embedder = embedding_model(model)
    dims = int(embedder.output.shape[-1])
    columns = embedding_columns(dims)
    schema = pa.schema(
        [pa.field("image_id", pa.string()), pa.field("split", pa.string())]
        + [pa.field(c, pa.float32()) for c in columns],
        metadata={METADATA_KEY: json.dumps(identity | {"dims": dims}).encode()},
    )
    ids = data.manifest["image_id"].to_numpy()
    n = len(ids)

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, schema) as writer:
            for start in range(0, n, CHUNK_IMAGES):
                rows = np.arange(start, min(n, start + CHUNK_IMAGES))
                dataset = make_dataset(data.images, rows, data.y[rows], batch_size, training=False)
                # Under op determinism TensorFlow notes a harmless tf.data graph attribute on fd 2
                # at each trace; captured (and replayed if predict fails) to keep the console clean.
                with native_stderr_captured():
                    vectors = np.asarray(embedder.predict(dataset, verbose=0), dtype=np.float32)
                arrays = [pa.array(ids[rows].astype(str)), pa.array(np.where(test_mask[rows], "test", "train"))]
                arrays += [pa.array(vectors[:, j]) for j in range(dims)]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
                if progress:
                    progress(strategy, fold, int(rows[-1]) + 1, n)

    atomic_write(target, write)
    keras.backend.clear_session()
    return True


def embed_run(run: RunDir, config: Config, strategies: list[str] | None = None, batch_size: int | None = None,
              force: bool = False, workers: int | None = None, progress: FoldProgress | None = None,
              on_fold: Callable[[str, int, str], None] | None = None) -> EmbedSummary:
    """Export the embeddings of every finished fold of the chosen (default: all trained) strategies."""
    from cxrbio.data.pipeline import cache_key
    from cxrbio.train import configure_tensorflow, load_training_data

    trained = trained_strategies(run)
    summary = EmbedSummary()
    for skipped in sorted((run.root / "train").glob("*/SKIPPED")) if (run.root / "train").is_dir() else []:
        summary.skipped_strategies[skipped.parent.name] = skipped.read_text().strip()
    if not trained:
        raise DataError(
            f"{run.root} has no trained models (no train/<strategy>/fold-<k>/DONE).",
            fix=f"run 'cxrbio train --out {run.root}' first.",
        )
    chosen = strategies or list(trained)
    unknown = [s for s in chosen if s not in trained]
    if unknown:
        raise DataError(
            f"no trained folds for {', '.join(unknown)} in {run.root}; trained: {', '.join(trained)}.",
            fix=f"train them first ('cxrbio train --out {run.root} --strategies {','.join(unknown)}') or drop them.",
        )
    configure_tensorflow(config)
    data = load_training_data(run, config, cache="disk", workers=workers)
    summary.images = len(data.manifest)
    images_key = cache_key(data.manifest, config.data.image_size)
    for strategy in chosen:
        for fold in data.folds:
            if fold.fold not in trained[strategy]:
                summary.missing_folds.setdefault(strategy, []).append(fold.fold)
                if on_fold:
                    on_fold(strategy, fold.fold, "not trained")
                continue
            wrote = export_fold(run, strategy, fold.fold, data, np.asarray(fold.test, bool), images_key,
                                batch_size or config.train.batch_size, force, progress)
            (summary.written if wrote else summary.up_to_date).setdefault(strategy, []).append(fold.fold)
            if on_fold:
                on_fold(strategy, fold.fold, "written" if wrote else "up to date")
        if strategy not in summary.missing_folds:
            summary.dims[strategy] = read_out_of_fold(run, strategy, expected=data.manifest["image_id"]).shape[1] - 2
    return summary


def read_out_of_fold(run: RunDir, strategy: str, expected: pd.Series | None = None) -> pd.DataFrame:
    """Each image's embedding from the fold that held it out: image_id, fold, e0000...

    Raises when an image has no out-of-fold row or more than one (folds that do not partition
    the images, or embeddings of an older training), or, with ``expected``, when the image set
    differs from it.
    """
    files = sorted(run.root.joinpath("embeddings", strategy).glob("fold-*.parquet"))
    if not files:
        raise DataError(f"{run.root} has no embeddings for {strategy}.", fix=f"run 'cxrbio embed {run.root}' first.")
    parts = []
    for path in files:
        part = pd.read_parquet(path, filters=[("split", "==", "test")]).drop(columns="split")
        part.insert(1, "fold", int(path.stem.split("-", 1)[1]))
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    repeated = frame["image_id"][frame["image_id"].duplicated()]
    if len(repeated):
        raise DataError(f"{strategy}: {repeated.nunique()} images have more than one out-of-fold embedding "
                        f"(e.g. {repeated.iloc[0]}).", fix=f"run 'cxrbio embed {run.root} --force'.")
    if expected is not None:
        missing = sorted(set(expected) - set(frame["image_id"]))
        extra = sorted(set(frame["image_id"]) - set(expected))
        if missing or extra:
            raise DataError(f"{strategy}: out-of-fold embeddings miss {len(missing)} and add {len(extra)} images "
                            f"relative to the manifest.", fix=f"run 'cxrbio embed {run.root} --force'.")
    return frame
