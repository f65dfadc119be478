"""How many dims does matching pair between fold models on real X-rays, against what a shuffle pairs?

The real sample (``../shared/data/cxr-real-sample/``, 74 images of five public collections) is
scanned with the demo's model (scratch, 3 folds), trained and embedded (each stage resumed or
skipped). Then every fold model is matched to the reference fold three ways:

* **fixed** (the previous rule): every image, partialled on the *labels*, kept at r >= 0.3;
* **null** (the rule now): images one of the two models held out, partialled on the *predicted*
  class, kept at the 0.99 quantile of a within-group shuffle null (and r >= 0.3);
* **independent shuffle**: a second shuffle matched at the null's threshold, what the threshold
  lets through where nothing is shared (reported by the null rule as ``null_matched``).

    uv run python analyses/real_sample_matching.py [--data ../shared/data/cxr-real-sample] [--out runs/real-matching]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def show(event: object) -> None:
    """Print a stage's lines (a ProgressEvent with no counts)."""
    if event.is_line:  # type: ignore[attr-defined]
        print(event.message)  # type: ignore[attr-defined]


def trained_real_sample(data: Path, out: Path) -> None:
    """The real sample scanned with the demo's model (scratch, 3 folds), trained and embedded; each stage resumed or skipped."""
    if not (data / "manifest.csv").is_file():
        raise SystemExit(f"no real sample at {data} (its manifest.csv is missing): pass --data.")
    from cxrbio import stages
    from cxrbio.config import bundled_config, load_config

    if not (out / "manifest.parquet").is_file():
        config = load_config(bundled_config("demo.yaml"), {"train.strategies": ["scratch"], "folds.k": 3})
        stages.scan.run(out, data=data / "manifest.csv", config=config, progress=show)
    stages.train.run(out, progress=show)
    stages.embed.run(out, progress=show)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cxr-real-sample"))
    parser.add_argument("--out", type=Path, default=Path("runs/real-matching"))
    parser.add_argument("--quantile", type=float, default=0.99)
    args = parser.parse_args()
    trained_real_sample(args.data, args.out)

    import numpy as np
    import pandas as pd

    from cxrbio.analysis import matching
    from cxrbio.analysis.inputs import load_fold_embeddings, load_inputs
    from cxrbio.run.rundir import open_run

    run, config = open_run(args.out)
    inputs = load_inputs(run, config, need_radiomics=False)
    folds = load_fold_embeddings(inputs, "scratch")
    every = np.sort(inputs.manifest.index.to_numpy())
    live, held_out, predicted = {}, pd.Series(-1, index=every), pd.Series(-1, index=every)
    for fold in folds:
        both = pd.DataFrame(np.concatenate([fold.test, fold.train]), columns=fold.dims,
                            index=np.concatenate([fold.test_ids, fold.train_ids])).reindex(every)
        live[fold.fold] = (fold.dims, both.to_numpy(np.float64))
        held_out.loc[fold.test_ids] = fold.fold
        frame = pd.read_parquet(run.path("train_fold", strategy="scratch", fold=fold.fold) / "predictions.parquet")
        predicted.loc[frame["image_id"].to_numpy()] = frame["predicted"].to_numpy()
    fixed = matching.match_folds(live, inputs.labels(every), min_rho=0.3, null_quantile=None)
    nulled = matching.match_folds(live, predicted.to_numpy(), min_rho=0.3, null_quantile=args.quantile,
                                  held_out=held_out.to_numpy(), seed=0)
    dims = len(folds[0].dims)
    print(f"\nReal sample: {len(every)} images, {len(folds)} fold models of {dims} dims (scratch, demo model)")
    for (_, a), (_, b) in zip(fixed.pairs.iterrows(), nulled.pairs.iterrows()):
        excess = (b["matched"] - b["null_matched"]) / b["dims"]
        print(f"  fold {int(a['fold'])} -> fold {int(a['reference'])}: fixed r >= 0.3 on every image: {int(a['matched'])} "
              f"of {dims} ({100 * a['matched'] / dims:.1f}%); null rule on {int(b['images'])} images (threshold r "
              f"{b['threshold']:.2f}): {int(b['matched'])} ({100 * b['matched'] / dims:.1f}%); an independent shuffle: "
              f"{int(b['null_matched'])} ({100 * b['null_matched'] / dims:.1f}%); excess {100 * excess:+.1f}% of dims")


if __name__ == "__main__":
    main()
