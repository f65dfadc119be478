"""Are the confirmation p-values of classes with nothing planted uniform? Calibration over seeds, not counts.

For each seed and phantom kind the whole pipeline runs (phantom -> scan -> train -> embed ->
masks -> radiomics -> analyze; each resumed or skipped, so the sweep can be interrupted and
run again). Kinds:

* ``partial-null`` (``cxrbio data phantom --partial-null``): half the diseases planted, the
  others drawn exactly as Normal (which ones depends on the seed, phantom.json names them). The
  models learn real features, so matching and selection work; the null classes' p-values against
  the controls must be uniform, and the planted classes should pass.
* ``null`` (every class drawn as Normal), ``site-null`` (``--site-confound --null``: the site
  the only signal, recorded), ``nested-null`` (``--nested-site Effusion --null``): every disease
  is a null class.

Printed, per kind and over all seeds: for the null classes' candidate p-values (one-sided,
against the controls, within source strata: ``candidates.parquet``'s ``p``) the fraction below
0.05 with a 95% CI clustered by seed (a bootstrap over seeds), a KS test against the uniform
(p-values of one run are not independent: read it with the clustered CI), passes per (seed,
class); for the planted classes the share of (seed, class) pairs with a passing candidate. A QQ
plot of the null p-values is written to ``OUT/calibration-qq.html`` and the p-values to
``OUT/calibration.csv``.

Nothing here is tuned: the gates are the config's defaults, fixed before any seed ran, so every
seed is a fresh one. Sizes are smaller than the demo's (``--per-class``, ``--size``,
``--epochs``): the calibration concerns the analysis given trained models, which holds at
any size where the models learn the planted classes (the printed CNN accuracy says whether they did).

    uv run python analyses/calibrate_null.py --seeds 1,2,3,4,5 [--kinds partial-null,null] [--out runs/calibrate]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

KINDS = {
    "partial-null": {"partial_null": True},
    "null": {"null": True},
    "site-null": {"null": True, "site_confound": True},
    "nested-null": {"null": True, "nested_site": "Effusion"},
}


def null_and_planted(root: Path) -> tuple[list[str], list[str]]:
    """The phantom's null disease classes and its planted ones (phantom.json)."""
    params = json.loads((root / "phantom" / "phantom.json").read_text())
    diseases = [c for c in params["classes"] if c != "Normal"]
    if params.get("partial_null"):
        return params["partial_null"]["null"], params["partial_null"]["planted"]
    return (diseases, []) if params.get("null") else ([], diseases)


def collect(root: Path, kind: str, seed: int, strategy: str) -> tuple[object, list[dict]]:
    """The null classes' candidate p-values, and one row per (seed, class): tested, passed, null or planted."""
    import pandas as pd

    null, planted = null_and_planted(root)
    candidates = pd.read_parquet(root / "analysis" / strategy / "candidates.parquet")
    metrics = json.loads((root / "metrics" / f"{strategy}.json").read_text())
    frame = candidates[candidates["class"].isin(null)][["class", "feature", "p", "p_rest", "passed"]].assign(
        kind=kind, seed=seed)
    rows = []
    for cls in null + planted:
        part = candidates[candidates["class"] == cls]
        rows.append({"kind": kind, "seed": seed, "class": cls, "null": cls in null, "tested": len(part),
                     "passed": int(part["passed"].sum()) if len(part) else 0,
                     "accuracy": metrics["pooled"]["accuracy"]})
    return frame, rows


def clustered_fraction(p: object, seeds: object, *, below: float = 0.05, resamples: int = 2000) -> tuple[float, float, float]:
    """Fraction of p below ``below`` and its 95% CI from a bootstrap over seeds (clusters)."""
    import numpy as np

    p, seeds = np.asarray(p, float), np.asarray(seeds)
    clusters = np.unique(seeds)
    hits = np.array([(p[seeds == s] < below).sum() for s in clusters], float)
    sizes = np.array([(seeds == s).sum() for s in clusters], float)
    point = hits.sum() / sizes.sum()
    rng = np.random.default_rng(0)
    draws = rng.integers(0, len(clusters), (resamples, len(clusters)))
    boot = hits[draws].sum(axis=1) / np.maximum(1, sizes[draws].sum(axis=1))
    low, high = np.quantile(boot, [0.025, 0.975])
    return float(point), float(low), float(high)


def qq_plot(p: object, out: Path) -> None:
    import numpy as np
    import plotly.graph_objects as go

    observed = np.sort(np.asarray(p, float))
    expected = (np.arange(1, len(observed) + 1) - 0.5) / len(observed)
    figure = go.Figure([go.Scatter(x=-np.log10(expected), y=-np.log10(observed), mode="markers", name="null classes"),
                        go.Scatter(x=[0, -np.log10(expected[0])], y=[0, -np.log10(expected[0])], mode="lines",
                                   name="uniform")])
    figure.update_layout(title="Null classes' confirmation p-values against the uniform",
                         xaxis_title="expected -log10 p", yaxis_title="observed -log10 p")
    figure.write_html(out, include_plotlyjs=True)


def permuted_reanalysis(root: Path, strategy: str, replicates: int, seed: int) -> object:
    """Cheap null replicates: the trained run re-analysed with its labels permuted among patients, within source.

    No retraining: the fold models and embeddings stay; each patient's label is swapped with another
    patient's of the same source, so every class becomes a null class for the analysis while the
    models, the design and the sizes stay those of the run. Analysed in a copy of the run (the
    run's own analysis is untouched), without the audit, CCA or UMAP. Returns class, p, replicate.
    """
    import shutil

    import numpy as np
    import pandas as pd

    from cxrbio.analysis.inputs import load_inputs
    from cxrbio.analysis.spaces import AnalysisSummary, analyze_strategy
    from cxrbio.run.rundir import open_run

    work = root.parent / f"{root.name}-permuted"
    if not work.exists():
        shutil.copytree(root, work, ignore=shutil.ignore_patterns("analysis", "superseded-*", "external"))
    run, config = open_run(work)
    frames = []
    for replicate in range(replicates):
        inputs = load_inputs(run, config)
        manifest = inputs.manifest
        rng = np.random.default_rng([seed, replicate])
        patients = manifest.groupby("patient_id").agg(label=("label", "first"), source=("source", "first"))
        for _, rows in patients.groupby("source").groups.items():
            patients.loc[rows, "label"] = rng.permutation(patients.loc[rows, "label"].to_numpy())
        manifest["label"] = manifest["patient_id"].map(patients["label"])
        manifest["y"] = manifest["label"].map({c: i for i, c in enumerate(inputs.classes)})
        ranking = analyze_strategy(inputs, strategy, ("attribution", "stats"), AnalysisSummary([strategy]),
                                   lambda message: None).ranking
        frames.append(ranking[["class", "feature", "p", "p_rest"]].assign(replicate=replicate))
    return pd.concat(frames, ignore_index=True)


def replication_check(args: argparse.Namespace, seeds: list[int], kinds: list[str]) -> None:
    """Each run evaluated on a plain phantom of another seed (every class planted) and on a null one.

    Expected: the planted candidates replicate on the plain phantom; nothing replicates on the null one.
    """
    from cxrbio import stages
    from cxrbio.data.phantom import generate_phantom

    externals = {"plain": {}, "null": {"null": True}}
    for name, options in externals.items():
        folder = args.out / f"external-{name}"
        if not (folder / "manifest.csv").is_file():
            generate_phantom(folder, per_class=args.per_class, size=max(64, args.size), seed=9000, **options)
    print("\nReplication of the passing candidates on external phantoms (seed 9000):")
    for kind in kinds:
        for seed in seeds:
            root = args.out / f"{kind}-seed{seed}"
            found = []
            for name in externals:
                result = stages.evaluate.run(root, data=args.out / f"external-{name}", name=f"external-{name}")
                counts = result.results[args.strategy].get("replication") or {}
                found.append(f"{name}: {counts.get('replicated', 0)} of {counts.get('candidates', 0)} replicated "
                             f"({counts.get('not testable', 0)} not testable)")
            print(f"  {kind} seed {seed}: " + "; ".join(found))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/calibrate"))
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--kinds", default="partial-null")
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--strategy", default="scratch")
    parser.add_argument("--permutations", type=int, default=2,
                        help="label-permuted re-analyses per trained run (no retraining; 0: none)")
    parser.add_argument("--no-replication", dest="replication", action="store_false",
                        help="skip evaluating each run on a plain and a null external phantom")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s]
    kinds = args.kinds.split(",")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise SystemExit(f"unknown kind(s) {', '.join(unknown)}; choose from {', '.join(KINDS)}.")
    if len(seeds) < 5:
        print(f"note: {len(seeds)} seed(s): a CI clustered by seed needs at least 5; the interval below is not "
              "reported as one.", file=sys.stderr)

    import pandas as pd
    from scipy import stats

    sys.path.insert(0, str(Path(__file__).parent))
    from validate_phantom import pipeline

    frames, rows = [], []
    for kind in kinds:
        for seed in seeds:
            root = args.out / f"{kind}-seed{seed}"
            pipeline(root, None, args.per_class, None, [args.strategy], phantom_seed=seed,
                     extra={"folds.seed": seed, "train.epochs": args.epochs, "train.deterministic": False,
                            "data.image_size": args.size}, **KINDS[kind])
            frame, found = collect(root, kind, seed, args.strategy)
            frames.append(frame)
            rows += found
    p_values = pd.concat(frames, ignore_index=True)
    per_class = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    p_values.to_csv(args.out / "calibration.csv", index=False)
    per_class.to_csv(args.out / "calibration-classes.csv", index=False)
    print(f"\nSizes: {args.per_class} images per class at {args.size} px, 3 folds, {args.epochs} epochs, "
          f"{args.strategy}; seeds {', '.join(map(str, seeds))}; gates at the config's defaults (nothing tuned).")
    for kind in kinds:
        mine, classes = p_values[p_values["kind"] == kind], per_class[per_class["kind"] == kind]
        print(f"\n== {kind}: CNN accuracy per seed "
              + ", ".join(f"{a:.2f}" for a in classes.groupby("seed")["accuracy"].first()))
        nulls = classes[classes["null"]]
        if len(mine):
            point, low, high = clustered_fraction(mine["p"], mine["seed"])
            ks = stats.kstest(mine["p"].to_numpy(float), "uniform")
            ci = f"[{low:.3f}, {high:.3f}]" if len(seeds) >= 5 else "(no CI: fewer than 5 seeds)"
            print(f"  null classes: {len(mine)} candidate p-values over {mine['seed'].nunique()} seeds; "
                  f"below 0.05: {point:.3f} {ci} (seed-clustered bootstrap); KS against uniform D {ks.statistic:.3f}, "
                  f"p {ks.pvalue:.3g}")
        else:
            print("  null classes: no candidate was tested (nothing to calibrate: said, not passed)")
        if len(nulls):
            with_pass = nulls[nulls["passed"] > 0]
            print(f"  (seed, null class) pairs with a passing candidate: {len(with_pass)} of {len(nulls)}"
                  + ("" if with_pass.empty else ": " + ", ".join(f"{r.seed}/{r._3}" for r in with_pass.itertuples())))
        planted = classes[~classes["null"]]
        if len(planted):
            share = float((planted["passed"] > 0).mean())
            print(f"  (seed, planted class) pairs with a passing candidate: {int((planted['passed'] > 0).sum())} of "
                  f"{len(planted)} ({100 * share:.0f}%)")
        print("  passes per (seed, class): " + "; ".join(
            f"{r.seed}/{r._3}{'*' if r.null else ''} {r.passed}/{r.tested}" for r in classes.itertuples()))
    if args.permutations:
        found = []
        for kind in kinds:
            for seed in seeds:
                found.append(permuted_reanalysis(args.out / f"{kind}-seed{seed}", args.strategy, args.permutations,
                                                 seed).assign(kind=kind, seed=seed))
        permuted = pd.concat(found, ignore_index=True)
        permuted.to_csv(args.out / "calibration-permuted.csv", index=False)
        point, low, high = clustered_fraction(permuted["p"], permuted["seed"])
        ks = stats.kstest(permuted["p"].to_numpy(float), "uniform")
        print(f"\nLabels permuted among patients (no retraining), {args.permutations} per seed: every class null; "
              f"{len(permuted)} candidate p-values; below 0.05: {point:.3f} [{low:.3f}, {high:.3f}] (seed-clustered); "
              f"KS D {ks.statistic:.3f}, p {ks.pvalue:.3g}")
    if args.replication:
        replication_check(args, seeds, kinds)
    if len(p_values):
        qq_plot(p_values["p"], args.out / "calibration-qq.html")
        print(f"\nQQ plot: {args.out / 'calibration-qq.html'}; p-values: {args.out / 'calibration.csv'} "
              "(* marks a null class above)")


if __name__ == "__main__":
    main()
