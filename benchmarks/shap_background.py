"""How large a SHAP background? Rank stability of mean |SHAP| against cost, on a trained run.

For each fold model of a strategy, the centred-logit head is explained (the analysis's own code,
``cxrbio.analysis.attribution``) with class-stratified backgrounds of several sizes drawn with
several seeds; each size's per-class ranking of dims by mean |SHAP| is compared (Spearman, and
the overlap of the top 10) with the ranking from the largest background, and timed. The
analysis's default (``analysis.shap_background``) is the smallest size whose rank correlation
with the reference is at least 0.95 in every fold (docs/analysis.md).

    uv run python benchmarks/shap_background.py RUN_DIR [--strategy scratch] [--sizes 8,16,32,64,128]
        [--reference 256] [--seeds 3]
"""

from __future__ import annotations

import argparse
import os
import time

from cxrbio.models import saving

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--strategy", default="scratch")
    parser.add_argument("--sizes", default="8,16,32,64,128")
    parser.add_argument("--reference", type=int, default=256)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()

    import keras
    import numpy as np
    from scipy import stats

    from cxrbio.analysis import attribution
    from cxrbio.analysis.inputs import load_fold_embeddings, load_inputs, stratified_sample
    from cxrbio.run.rundir import open_run

    run, config = open_run(args.run_dir)
    inputs = load_inputs(run, config, need_radiomics=False)
    classes = inputs.classes
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{args.strategy}: background sizes {sizes} against {args.reference}, {args.seeds} seed(s), "
          f"up to {config.analysis.shap_max_images} explained images per fold")
    print(f"{'fold':>4} {'size':>5} {'seconds':>8} {'min rho':>8} {'mean rho':>9} {'top-10 overlap':>15}")
    for fold in load_fold_embeddings(inputs, args.strategy):
        model = saving.load_model(run.path("train_fold", strategy=args.strategy, fold=fold.fold) / "model.keras",
                                        compile=False)
        head = attribution.logits_head(model)
        explained = fold.test[stratified_sample(fold.y_test, config.analysis.shap_max_images, 0)]
        names = fold.dims

        def importance(size: int, seed: int, fold=fold, head=head, explained=explained, names=names):  # noqa: ANN001, ANN202
            background = fold.train[stratified_sample(fold.y_train, size, seed)]
            started = time.perf_counter()
            table = attribution.explain_head(head, background, explained, names, classes).table
            seconds = time.perf_counter() - started
            return table.pivot(index="feature", columns="class", values="mean_abs_shap").to_numpy(), seconds

        reference, _ = importance(args.reference, 0)
        for size in sizes:
            rhos, overlaps, times = [], [], []
            for seed in range(1, args.seeds + 1):
                values, seconds = importance(size, seed)
                times.append(seconds)
                for c in range(reference.shape[1]):
                    rhos.append(stats.spearmanr(values[:, c], reference[:, c])[0])
                    top = set(np.argsort(-values[:, c])[:10]) & set(np.argsort(-reference[:, c])[:10])
                    overlaps.append(len(top) / 10)
            print(f"{fold.fold:>4} {size:>5} {np.mean(times):>8.2f} {np.min(rhos):>8.3f} {np.mean(rhos):>9.3f} "
                  f"{np.mean(overlaps):>15.2f}")
        keras.backend.clear_session()


if __name__ == "__main__":
    main()
