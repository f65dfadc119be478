"""Does cxrbio stay silent where there is nothing? The whole pipeline on two null phantoms.

1. **Null phantom** (``cxrbio data phantom --null``): no planted findings; every image is drawn
   as Normal (anatomy and exposure independent of the label) and the labels are the only thing
   that differs. Expected: CNN accuracy inside the chance interval, at most 1 passing candidate.
2. **Site-confounded null phantom** (``--site-confound --null``): the same, but most pneumonia
   and normal patients were imaged at site b (JPEG, taller, noisier, a burned-in corner label).
   Expected: the CNN reads the site (accuracy well above chance), the acquisition baseline
   names the site's classes, and still at most 1 passing candidate -- the acquisition gate says
   why.

Prints per phantom: CNN 7-class accuracy with its patient-bootstrap CI beside the chance
interval (binomial 95% interval of 1/7 at the number of images), the acquisition baseline
(balanced accuracy against its permutation null), the source probe (within class), tested and
passing candidates with the gate that stopped the others.

    uv run python analyses/validate_null.py [--out runs/validate] [--per-class 100] [--strategies scratch]

Each phantom's run directory is reused when it exists (every stage resumes or skips).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def chance_interval(n: int, classes: int) -> tuple[float, float]:
    """Binomial 95% interval of the accuracy of a classifier that guesses among ``classes`` balanced classes."""
    from scipy import stats

    low, high = stats.binom.interval(0.95, n, 1 / classes)
    return float(low / n), float(high / n)


def summarise(root: Path, strategies: list[str]) -> None:
    import pandas as pd

    acquisition = root / "confounding" / "acquisition.json"
    if acquisition.is_file():
        a = json.loads(acquisition.read_text())
        print(f"  acquisition baseline: balanced accuracy {a.get('balanced_accuracy', float('nan')):.3f} "
              f"(null mean {a.get('null_mean', float('nan')):.3f}, 95th percentile {a.get('null_p95', float('nan')):.3f}, "
              f"p {a.get('p', float('nan')):.3g}); classes named: {', '.join(a.get('flagged', [])) or 'none'}")
    for strategy in strategies:
        metrics = json.loads((root / "metrics" / f"{strategy}.json").read_text())
        n, classes = metrics["pooled"]["n"], len(metrics["classes"])
        low, high = chance_interval(n, classes)
        ci = metrics["ci95"]["accuracy"]
        print(f"  {strategy}: CNN accuracy {metrics['pooled']['accuracy']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]; "
              f"chance interval [{low:.3f}, {high:.3f}] (1/{classes}, n = {n})")
        folder = root / "analysis" / strategy
        probe = pd.read_parquet(folder / "source_probe.parquet")
        if not probe.empty and "target" in probe:
            source = probe[probe["target"] == "source"] if "target" in probe else probe
            if not source.empty:
                print(f"  {strategy}: source probe within class: {len(source)} (fold, class) rows, "
                      f"median balanced accuracy {source['balanced_accuracy'].median():.2f}, "
                      f"{int((source['p'] < 0.05).sum())} with p < 0.05")
        candidates = pd.read_parquet(folder / "candidates.parquet")
        passing = candidates[candidates["passed"]]
        print(f"  {strategy}: {len(candidates)} (class, feature) pairs tested, {len(passing)} passed every gate")
        gates = pd.Series([g.split(" (")[0] for text in candidates["failed_gates"] for g in str(text).split(", ") if g])
        if not gates.empty:
            print("    stopped by: " + ", ".join(f"{g} {n}" for g, n in gates.value_counts().items()))
        confirmed = candidates[candidates["gate_confirmation"].astype(bool)]
        if not confirmed.empty:
            print(f"    {len(confirmed)} confirmed (q < gate_q); of these, stopped by acquisition: "
                  f"{int((~confirmed['gate_acquisition'].astype(bool)).sum())}")
        for row in passing.itertuples():
            print(f"    PASSED {row[1]} {row.feature}: AUC {row.auc:.2f} [{row.auc_low:.2f}, {row.auc_high:.2f}], "
                  f"q {row.q:.2g}, folds {row.folds_agree}/{row.folds_tested}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/validate"))
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--strategies", default="scratch")
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--only", default="null,site-null")
    parser.add_argument("--seeds", default=None,
                        help="a sweep over seeds: calibration of the null classes' p-values (analyses/calibrate_null.py, "
                             "which takes the same kinds plus partial-null and nested-null)")
    args, rest = parser.parse_known_args()
    import sys

    if args.seeds:
        sys.path.insert(0, str(Path(__file__).parent))
        import calibrate_null

        sys.argv = [sys.argv[0], "--seeds", args.seeds, "--kinds", args.only, "--out", str(args.out), *rest]
        calibrate_null.main()
        return

    sys.path.insert(0, str(Path(__file__).parent))
    from validate_phantom import pipeline

    strategies = args.strategies.split(",")
    for name in args.only.split(","):
        root = args.out / name
        pipeline(root, args.config, args.per_class, None, strategies, site_confound=name == "site-null", null=True)
        print(f"\n== {name} phantom ({root})")
        summarise(root, strategies)


if __name__ == "__main__":
    main()
