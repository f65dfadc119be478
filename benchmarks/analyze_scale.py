"""`cxrbio analyze` at scale: 4,000 images x 1,280 dims x 10 folds (simulated), time of each part.

Builds a run directory whose inputs are simulated but shaped like the real thing: a manifest
of 4,000 images (7 classes, ~2 images per patient, 10 folds), per fold an embedding file of
every image (1,280 non-negative dims, 40 of them class-dependent) and a fold model with the
study's head (MobileNetV2 alpha 1.0 -> Dense(2500) -> BatchNorm -> Dropout -> Dense(7); the
backbone is never run), and 753 radiomics features (30 class-dependent). Then runs the
analysis with the settings of the config (default: the study's) and prints each part's time.
The shortcut audit is not part of this figure: it needs images and runs the backbone (its cost
is in the demo's and the validation's timings).

    uv run python benchmarks/analyze_scale.py [--images 4000] [--dims 1280] [--folds 10] [--features 753]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def simulate_run(root: Path, images: int, folds: int, features: int, seed: int) -> None:
    import numpy as np
    import pandas as pd

    from cxrbio.config import load_config
    from cxrbio.evaluation.paper import PAPER_CLASSES
    from cxrbio.run import freshness
    from cxrbio.run.runconfig import save_config
    from cxrbio.run.rundir import RunDir

    rng = np.random.default_rng(seed)
    run = RunDir(root)
    root.mkdir(parents=True, exist_ok=True)
    y = rng.integers(0, len(PAPER_CLASSES), images)
    patients = np.arange(images) // 2
    patient_fold = rng.integers(0, folds, patients.max() + 1)
    manifest = pd.DataFrame({
        "image_id": [f"img-{i:06d}" for i in range(images)], "path": [f"/simulated/{i}.png" for i in range(images)],
        "label": [PAPER_CLASSES[c] for c in y], "patient_id": [f"p{p}" for p in patients],
        "fold_group": [f"p{p}" for p in patients], "source": "simulated",
        "fold": patient_fold[patients], "included": True, "width": 200, "height": 200,
    })
    manifest.to_parquet(run.manifest, index=False)
    config = load_config(None, {"folds.k": folds})
    save_config(config, run.config)
    run.record("simulated", data="(simulated)")
    tree = config.model_dump(mode="json")
    freshness.write_stamp(run, freshness.expected(run, "manifest", tree))
    signal = rng.normal(size=(len(PAPER_CLASSES), features)) * (rng.uniform(size=features) < 30 / features)
    radiomics = rng.normal(size=(images, features)) + signal[y]
    frame = pd.DataFrame(radiomics, columns=[f"original_firstorder_F{j:03d}" for j in range(features)])
    frame.insert(0, "image_id", manifest["image_id"])
    run.path("radiomics").parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(run.path("radiomics"), index=False)
    freshness.write_stamp(run, freshness.expected(run, "radiomics", tree))


def simulate_fold(root: Path, fold: int, dims: int, seed: int, model_config) -> None:  # noqa: ANN001
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cxrbio.config import load_config
    from cxrbio.evaluation.paper import PAPER_CLASSES
    from cxrbio.features.embedding import embedding_columns
    from cxrbio.models.mobilenet import build_model
    from cxrbio.models.strategies import Strategy
    from cxrbio.run import freshness
    from cxrbio.run.fold_files import register_fold_model
    from cxrbio.run.rundir import RunDir

    run = RunDir(root)
    manifest = run.read_manifest()
    y = manifest["label"].map({c: i for i, c in enumerate(PAPER_CLASSES)}).to_numpy()
    rng = np.random.default_rng([seed, fold])
    signal = rng.normal(size=(len(PAPER_CLASSES), dims)) * (rng.uniform(size=dims) < 40 / dims)
    values = np.maximum(0, rng.normal(size=(len(y), dims)) * 0.5 + signal[y] + 0.3).astype(np.float32)
    table = pa.table({"image_id": manifest["image_id"].to_numpy(),
                      "split": np.where(manifest["fold"].to_numpy() == fold, "test", "train"),
                      **{c: values[:, j] for j, c in enumerate(embedding_columns(dims))}})
    config = load_config(run.config)
    model = build_model(len(PAPER_CLASSES), 32, model_config, Strategy.parse("scratch"), seed=fold)
    register_fold_model(run, config, "scratch", fold, model)
    unit = {"strategy": "scratch", "fold": fold}
    target = run.path("embeddings", **unit)
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, target)
    freshness.write_stamp(run, freshness.expected(run, "embeddings", config.model_dump(mode="json"), unit))
    del pd


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--dims", type=int, default=1280)
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--features", type=int, default=753)
    args = parser.parse_args()

    from cxrbio.config import load_config
    from cxrbio.run.rundir import RunDir
    from cxrbio.runtime.backend import initialise_tensorflow
    from cxrbio.stages import analyze

    initialise_tensorflow()
    with tempfile.TemporaryDirectory() as tmp_name:
        root = Path(tmp_name) / "run"
        started = time.perf_counter()
        simulate_run(root, args.images, args.folds, args.features, seed=0)
        config = load_config(RunDir(root).config)
        for fold in range(args.folds):
            simulate_fold(root, fold, args.dims, 0, config.model)
        print(f"simulated run: {args.images} images, {args.dims} dims, {args.folds} folds, {args.features} radiomics "
              f"features, head Dense({config.model.dense_units}) ({time.perf_counter() - started:.0f} s to build)", flush=True)
        started = time.perf_counter()
        summary = analyze.run(root, audit=False, force=True)
        total = time.perf_counter() - started
    for part, seconds in sorted(summary.timings.items(), key=lambda item: -item[1]):
        print(f"  {part:<12} {seconds:7.1f} s")
    other = total - sum(summary.timings.values())
    print(f"  {'reading etc.':<12} {other:7.1f} s")
    print(f"analyze total: {total:.1f} s ({total / 60:.1f} min; bar: 10 min)")


if __name__ == "__main__":
    main()
