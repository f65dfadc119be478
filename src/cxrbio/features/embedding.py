"""Global-average-pooling embeddings of trained fold models: what the network learned, per image.

For each strategy and fold, ``embeddings/<strategy>/fold-<k>.parquet`` holds one row per
included image: ``image_id``, ``split`` (``test`` for the fold's held-out images, ``train``
otherwise) and the GAP vector ``e0000 ... e<D-1>`` (float32, D = 1280 x alpha, rounded as
MobileNetV2 rounds it). Analyses use the ``test`` rows: across the folds of a strategy, every
image has exactly one, computed by a model that never saw it (:func:`cxrbio.run.embedding_files.read_out_of_fold`).

Images are read batch by batch from the run's memory-mapped image cache and embeddings are
written to Parquet a chunk at a time, so memory is bounded by the chunk, not the data set.
There is no augmentation at export. Whether a file is current is its stamp's business
(:mod:`cxrbio.run.freshness`): a retrained fold model makes its embeddings stale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxrbio.models import saving
from cxrbio.models.layers import GAP_LAYER

CHUNK_IMAGES = 1024  # images per model.predict call and per Parquet row group


def embedding_columns(dims: int) -> list[str]:
    return [f"e{i:04d}" for i in range(dims)]


def embedding_model(model: Any) -> Any:
    """The trained network cut at its global-average-pooling layer."""
    import keras

    return keras.Model(model.inputs[0], model.get_layer(GAP_LAYER).output, name="gap_embedder")


@dataclass
class EmbeddingStream:
    """One fold model's embedding of every image, as Parquet tables made a chunk at a time while read."""

    schema: Any  # pyarrow.Schema
    dims: int
    tables: Iterator[Any]  # pyarrow.Table chunks; the model is released when the last one is made


def export_fold(model_path: Path, data: Any, test_mask: np.ndarray, batch_size: int,
                progress: Callable[[int, int], None] | None = None) -> EmbeddingStream:
    """One fold model's embedding of every image, streamed (the stage writes it: :mod:`cxrbio.run.table_files`)."""
    import keras
    import pyarrow as pa

    from cxrbio.data.input_pipeline import make_dataset
    from cxrbio.runtime.quiet import native_stderr_captured

    model = saving.load_model(model_path, compile=False)
    embedder = embedding_model(model)
    dims = int(embedder.output.shape[-1])
    schema = pa.schema([pa.field("image_id", pa.string()), pa.field("split", pa.string())]
                       + [pa.field(c, pa.float32()) for c in embedding_columns(dims)])
    ids = data.manifest["image_id"].to_numpy()
    n = len(ids)

    def tables() -> Iterator[Any]:
        try:
            for start in range(0, n, CHUNK_IMAGES):
                rows = np.arange(start, min(n, start + CHUNK_IMAGES))
                dataset = make_dataset(data.images, rows, data.y[rows], batch_size, training=False)
                # Under op determinism TensorFlow notes a harmless tf.data graph attribute on fd 2
                # at each trace; captured (and replayed if predict fails) to keep the console clean.
                with native_stderr_captured():
                    vectors = np.asarray(embedder.predict(dataset, verbose=0), dtype=np.float32)
                arrays = [pa.array(ids[rows].astype(str)), pa.array(np.where(test_mask[rows], "test", "train"))]
                arrays += [pa.array(vectors[:, j]) for j in range(dims)]
                yield pa.Table.from_arrays(arrays, schema=schema)
                if progress:
                    progress(int(rows[-1]) + 1, n)
        finally:
            keras.backend.clear_session()

    return EmbeddingStream(schema, dims, tables())
