"""Can a collection's look pass for a disease? The whole pipeline on four phantoms whose design says the answer.

1. **site-null, source hidden** (``--site-confound --null``, scanned from ``manifest-no-source.csv``):
   no findings; most Pneumonia and Normal patients at site b; nothing records the site. Expected:
   no class ``free of source`` (nothing is recorded), Pneumonia and Normal ``acquisition-confounded``
   (the acquisition baseline names them), the others ``source unverified``; 0 candidates pass.
2. **isolated** (``--isolated-site Emphysema``): Emphysema only at site b, which images no one else.
   Expected: Emphysema ``not estimable``, not tested, 0 pass for it; the other classes estimable.
3. **nested-null** (``--nested-site Effusion --null``): Effusion only at site b, which also images
   half of the Normal patients; no findings. Expected: Effusion estimable within site b; 0 pass.
4. **nested** (``--nested-site Effusion``): the same with the planted findings. Expected: Effusion's
   planted finding passes, ``free of source`` (power within site b).

Prints per phantom: the design check per class (design, strata, patients, smallest detectable
AUC), the acquisition baseline's verdict, and per class the source tier, the features tested and
those that passed (with AUC, q, strata and the within-class source flag).

    uv run python analyses/validate_sources.py [--out runs/validate] [--per-class 100] [--only site-null-hidden,...]

Each phantom's run directory is reused when it exists (every stage resumes or skips).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PHANTOMS = {
    "site-null-hidden": {"site_confound": True, "null": True, "hide_source": True},
    "isolated": {"isolated_site": "Emphysema"},
    "nested-null": {"nested_site": "Effusion", "null": True},
    "nested": {"nested_site": "Effusion"},
}


def summarise(root: Path, strategies: list[str]) -> None:
    import pandas as pd

    design = pd.read_parquet(root / "confounding" / "design.parquet")
    print("  design check (confounding/design.parquet):")
    for row in design.itertuples():
        mda = row.min_detectable_auc
        print(f"    {row[1]:<10} {row.contrast:<10} {row.design:<18} strata: {row.strata or '-'}; "
              f"{row.patients_class} vs {row.patients_control} patients; smallest detectable AUC "
              f"{'-' if mda != mda else f'{mda:.2f}'}")
    acquisition = json.loads((root / "confounding" / "acquisition.json").read_text())
    print(f"  acquisition baseline names: {', '.join(acquisition.get('flagged') or []) or 'none'}")
    for strategy in strategies:
        metrics = json.loads((root / "metrics" / f"{strategy}.json").read_text())
        ci = metrics["ci95"]["accuracy"]
        print(f"  {strategy}: CNN 7-class accuracy {metrics['pooled']['accuracy']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]")
        candidates = pd.read_parquet(root / "analysis" / strategy / "candidates.parquet")
        tiers = pd.read_parquet(root / "analysis" / strategy / "design.parquet").set_index("class")
        print(f"  {strategy}: {len(candidates)} (class, feature) pairs tested, {int(candidates['passed'].sum())} passed")
        for cls in tiers.index:
            part = candidates[candidates["class"] == cls]
            tier = part["source_tier"].iloc[0] if len(part) else f"(not tested: {tiers.loc[cls, 'design']})"
            confirmed = int(part["gate_confirmation"].astype(bool).sum()) if len(part) else 0
            print(f"    {cls:<10} tier {tier:<24} tested {len(part):>3}, confirmed {confirmed:>3}, "
                  f"passed {int(part['passed'].sum()) if len(part) else 0}")
        for row in candidates[candidates["passed"]].itertuples():
            flag = "-" if pd.isna(row.source_equivalent) else ("equivalent" if row.source_equivalent else "not equivalent")
            print(f"    PASSED {row[1]} {row.feature}: AUC {row.auc:.2f} [{row.auc_low:.2f}, {row.auc_high:.2f}] "
                  f"({row.contrast}), q {row.q:.2g}, {row.strata} strata, folds {row.folds_agree}/{row.folds_tested}, "
                  f"{row.source_tier}, between sources: {flag}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/validate"))
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--strategies", default="scratch")
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--only", default=",".join(PHANTOMS))
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from validate_phantom import pipeline

    strategies = args.strategies.split(",")
    for name in args.only.split(","):
        root = args.out / name
        pipeline(root, args.config, args.per_class, None, strategies, **PHANTOMS[name])
        print(f"\n== {name} phantom ({root})")
        summarise(root, strategies)


if __name__ == "__main__":
    main()
