"""Does a passing candidate describe the planted physics and point at the lesion? The bar, over seeds.

The graded phantom (``cxrbio data phantom --severity 0.3,1.0``: a finding's severity varies within
its disease, so a within-disease descriptor has planted variation to find) is run through the
whole pipeline for each seed (phantom -> scan -> train -> embed -> masks (ground truth) ->
radiomics -> analyze; each stage resumed or skipped, so the sweep can be interrupted and run
again). Per seed and disease it asks for a passing candidate that

* carries the planted physics in a **within-disease** descriptor whose tier is
  ``disease-specific`` (``descriptors.parquet``; brighter for the density findings, darker or
  larger for emphysema, more textured for fibrosis: :data:`PHYSICS`), and
* **localises**: the per-image pixel AUROC of its map (``--map occlusion``, the pilot's choice:
  patches filled with the lungs' mean, the unit's change in the candidate's direction; or
  ``gradient``), lesion against the rest of the lung (edema: its findings, heart included,
  against the rest of the body; emphysema: its bullae), bootstrapped by patient, lies above both
  nulls (the weight-randomised model's maps, and another same-disease image's lesion mask) with
  the CI of each difference above 0 (:mod:`cxrbio.analysis.localisation`).

Two phases, so that the thresholds are set before the seeds they are judged on are seen:
``--phase pilot`` (2 seeds) prints per-disease power; the thresholds then go into
docs/validation.md, and ``--phase confirm`` (at least 5 fresh seeds) prints the share of seeds
per disease that meet the bar, with a Wilson 95% interval. Each seed's evaluation is kept beside
its run (``evaluation-<map>-<images>-<smoothing>.csv``), so ``--phase evaluate`` can do some
seeds ahead and the confirmation reuses them. Also printed: the gradient maps' Spearman
correlation with a randomised model's, beside two randomised models' (``sanity_max_rho``).

Sizes are smaller than the demo's (``--per-class``, ``--size``, ``--epochs``); one full-size
graded run is ``analyses/validate_phantom.py --only graded``.

    uv run python analyses/validate_candidates.py --phase pilot --seeds 11,12 --per-class 80 --epochs 80
    uv run python analyses/validate_candidates.py --phase confirm --seeds 21,22,23,24,25 --per-class 80 --epochs 80
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SEVERITY = (0.3, 1.0)


def run_seed(root: Path, seed: int, args: argparse.Namespace) -> None:
    """One graded phantom through the whole pipeline (each stage resumed or skipped)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from validate_phantom import pipeline

    pipeline(root, None, args.per_class, None, [args.strategy], severity=args.severity, phantom_seed=seed,
             extra={"folds.seed": seed, "train.epochs": args.epochs, "train.deterministic": False,
                    "data.image_size": args.size})


class Saliency:
    """Unit saliency of a run's fold models and of their weight-randomised copies, models loaded once."""

    def __init__(self, run: object, strategy: str, seed: int) -> None:
        self.run, self.strategy, self.seed = run, strategy, seed
        self.models: dict[int, tuple[object, object]] = {}

    def maps(self, fold: int, dim: str, images: object, fill: object, direction: int, kind: str) -> tuple[object, object]:
        """(the trained model's maps, the randomised model's): occlusion maps in the unit's direction, or |gradient|."""
        from cxrbio.analysis.audit import activations, randomised_copy, unit_saliency
        from cxrbio.analysis.localisation import occlusion_map
        from cxrbio.features.embedding import embedding_model
        from cxrbio.models import saving

        if fold not in self.models:
            model = saving.load_model(self.run.path("train_fold", strategy=self.strategy, fold=fold) / "model.keras",
                                      compile=False)
            gap = embedding_model(model)
            self.models[fold] = (gap, randomised_copy(gap, self.seed + fold))
        gap, random = self.models[fold]
        unit = int(dim[1:])
        if kind == "gradient":
            return unit_saliency(gap, images, unit), unit_saliency(random, images, unit)
        size = images.shape[-1]  # type: ignore[attr-defined]
        patch = max(2, size // 8)

        def maps_of(model: object) -> object:
            return occlusion_map(lambda stack: activations(model, stack.astype("float32"))[:, unit], images, fill,
                                 patch=patch, stride=max(1, patch // 2), direction=direction)

        return maps_of(gap), maps_of(random)


def evaluate_seed(root: Path, seed: int, args: argparse.Namespace, smoothing: list[float]) -> list[dict]:
    """Per passing candidate and smoothing: its planted physics (disease-specific) and its localisation against both nulls.

    ``smoothing``: Gaussian sigmas (pixels) applied to the real and the randomised maps alike (0: raw).
    """
    import numpy as np
    import pandas as pd
    from scipy import ndimage
    from validate_phantom import lesion_masks, physics_hits

    from cxrbio.analysis import localisation
    from cxrbio.data.phantom import LOCALISED
    from cxrbio.run.mask_files import read_body_mask, read_mask
    from cxrbio.run.rundir import open_run
    from cxrbio.training.data import load_training_data

    run, cfg = open_run(root)
    folder = run.path("analysis", strategy=args.strategy)
    candidates = pd.read_parquet(folder / "candidates.parquet")
    descriptors = pd.read_parquet(folder / "descriptors.parquet")
    per_fold = pd.read_parquet(folder / "confirmation.parquet")
    lesions = lesion_masks(run.root, cfg.data.image_size)
    data = load_training_data(run, cfg, cache="disk")
    manifest = data.manifest.set_index("image_id")
    row = {i: k for k, i in enumerate(data.manifest["image_id"])}
    held_out = {f.fold: set(data.manifest["image_id"].to_numpy()[f.test]) for f in data.folds}
    saliency = Saliency(run, args.strategy, seed)
    rows = []
    for item in candidates[candidates["passed"].astype(bool)].itertuples():
        cls, feature = str(item[candidates.columns.get_loc("class") + 1]), str(item.feature)
        if cls not in LOCALISED:  # the controls: nothing planted to localise
            continue
        wanted, region = LOCALISED[cls]
        tables: dict[float, list] = {sigma: [] for sigma in smoothing}
        for dim in per_fold[(per_fold["class"] == cls) & (per_fold["feature"] == feature)].itertuples():
            own = sorted(i for i in held_out[int(dim.fold)] if manifest.loc[i, "label"] == cls
                         and any(f in lesions.get(i, {}) for f in wanted))[: args.per_dim]
            if len(own) < 2:
                continue
            masks, references = {}, {}
            for i in own:
                masks[i] = np.logical_or.reduce([lesions[i][f] for f in wanted if f in lesions[i]])
                outline = read_mask(run, i) if region == "lung" else read_body_mask(run, i)
                references[i] = outline | masks[i]
            images = np.stack([np.asarray(data.images[row[i]]) for i in own]).astype(np.float32)
            # occluded patches take the lungs' mean (the audit's fill): structure gone, brightness kept
            fill = np.array([images[k][read_mask(run, i)].mean() for k, i in enumerate(own)], np.float32)
            real, random = saliency.maps(int(dim.fold), str(dim.dim), images, fill, int(item.direction), args.map)
            shuffled = localisation.shuffled_masks(masks, references, dict.fromkeys(own, cls), seed=seed)
            for sigma in smoothing:
                tables[sigma].append(localisation.image_table(
                    own, {i: str(manifest.loc[i, "patient_id"]) for i in own},
                    {i: ndimage.gaussian_filter(m, sigma) if sigma > 0 else m for i, m in zip(own, real)},
                    {i: ndimage.gaussian_filter(m, sigma) if sigma > 0 else m for i, m in zip(own, random)},
                    masks, references, shuffled))
        # rho and q of descriptors.parquet are the within-disease ones; the tier asks for disease-specific
        hits = physics_hits(descriptors, cls, feature, int(item.direction), tier="disease-specific")
        for sigma in smoothing:
            table = (pd.concat(tables[sigma], ignore_index=True) if tables[sigma]
                     else pd.DataFrame(columns=localisation.IMAGE_COLUMNS))
            # A patient appears once per fold dim it was held out for: the bootstrap resamples patients.
            found = localisation.summarise(table, resamples=1000, seed=seed)
            rows.append({"seed": seed, "smooth": sigma, "class": cls, "feature": feature, "auc": float(item.auc),
                         "direction": int(item.direction), "marker": str(item.marker),
                         "descriptor_tier": str(item.descriptor_tier),
                         "physics": "; ".join(f"{w} ({n} rho {r:+.2f})" for w, n, r in hits),
                         "carries_physics": bool(hits), **found})
    return rows


def sanity_distribution(root: Path, seed: int, args: argparse.Namespace) -> list[dict]:
    """Per audited dim: its map's rho with the randomised model's (map_rho) and two randomised models' rho."""
    import numpy as np
    import pandas as pd

    from cxrbio.analysis.audit import map_similarity, randomised_copy, unit_saliency
    from cxrbio.features.embedding import embedding_model
    from cxrbio.models import saving
    from cxrbio.run.rundir import open_run
    from cxrbio.training.data import load_training_data

    run, cfg = open_run(root)
    dims = pd.read_parquet(run.path("analysis", strategy=args.strategy) / "audit_dims.parquet").drop_duplicates(["fold", "dim"])
    data = load_training_data(run, cfg, cache="disk")
    row = {i: k for k, i in enumerate(data.manifest["image_id"])}
    twins: dict[int, tuple[object, object]] = {}
    out = []
    for item in dims.itertuples():
        fold = int(item.fold)
        if fold not in twins:
            model = saving.load_model(run.path("train_fold", strategy=args.strategy, fold=fold) / "model.keras",
                                      compile=False)
            gap = embedding_model(model)
            twins[fold] = (randomised_copy(gap, 1000 + fold), randomised_copy(gap, 2000 + fold))
        ids = item.images.split("|")
        images = np.stack([np.asarray(data.images[row[i]]) for i in ids]).astype(np.float32)
        a = unit_saliency(twins[fold][0], images, int(item.dim[1:])).mean(axis=0)
        b = unit_saliency(twins[fold][1], images, int(item.dim[1:])).mean(axis=0)
        out.append({"seed": seed, "fold": fold, "dim": item.dim, "map_rho": float(item.map_rho),
                    "random_rho": map_similarity(a, b, np.ones_like(a, bool))})
    return out


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion."""
    import math

    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def report(frame: object, seeds: list[int], classes: list[str], phase: str) -> None:
    """Per disease: passing candidates, with physics, localising, and the share of seeds meeting the bar."""
    import numpy as np

    print(f"\n{phase}: {len(seeds)} seed(s) ({', '.join(map(str, seeds))})")
    print(f"{'class':<10} {'passing':>8} {'physics':>8} {'localise':>9} {'both':>5} {'AUROC':>6} {'-random':>8} "
          f"{'-shuffled':>10}  seeds meeting the bar")
    met_classes = 0
    for cls in classes:
        part = frame[frame["class"] == cls] if len(frame) else frame  # type: ignore[index]
        both = part[part["carries_physics"] & part["localises"]] if len(part) else part
        met = sorted({int(s) for s in both["seed"]}) if len(both) else []
        low, high = wilson(len(met), len(seeds))
        share = len(met) / len(seeds)
        met_classes += share >= 0.8
        print(f"{cls:<10} {len(part):>8} {int(part['carries_physics'].sum()) if len(part) else 0:>8} "
              f"{int(part['localises'].sum()) if len(part) else 0:>9} {len(both):>5} "
              f"{np.nanmean(part['auroc']) if len(part) else np.nan:>6.2f} "
              f"{np.nanmean(part['minus_random']) if len(part) else np.nan:>+8.2f} "
              f"{np.nanmean(part['minus_shuffled']) if len(part) else np.nan:>+10.2f}  "
              f"{len(met)} of {len(seeds)} ({share:.0%}, Wilson 95% [{low:.2f}, {high:.2f}])")
    print(f"diseases with a share of at least 0.8: {met_classes} of {len(classes)} (bar: 5 of 6)")


def run_name(seed: int, args: argparse.Namespace) -> str:
    """graded-seedN, or plain-seedN (or severity-LOW-HIGH-seedN) for another severity range."""
    if tuple(args.severity) == SEVERITY:
        return f"graded-seed{seed}"
    return f"plain-seed{seed}" if tuple(args.severity) == (0.7, 1.0) else \
        f"severity-{args.severity[0]:g}-{args.severity[1]:g}-seed{seed}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", choices=("pilot", "confirm", "train", "evaluate"), default="pilot",
                        help="pilot: per-disease power; confirm: the bar on fresh seeds; train: the pipeline only; "
                             "evaluate: evaluate (and keep) some seeds ahead of a confirm over them all")
    parser.add_argument("--seeds", default="11,12")
    parser.add_argument("--out", type=Path, default=Path("runs/candidates"))
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--strategy", default="scratch")
    parser.add_argument("--severity", type=lambda t: tuple(float(v) for v in t.split(",")), default=SEVERITY,
                        help="LOW,HIGH severity range (default 0.3,1.0, graded; 0.7,1.0 is the plain phantom, where "
                             "little varies within a disease)")
    parser.add_argument("--per-dim", type=int, default=8, help="held-out images of the disease per fold dim")
    parser.add_argument("--map", choices=("occlusion", "gradient"), default="occlusion",
                        help="occlusion: patches of 1/8 of the image filled with the lungs' mean, stride half a patch, "
                             "in the unit's direction (the pilot's choice); gradient: |d unit / d pixel|")
    parser.add_argument("--smooth", default="0",
                        help="Gaussian sigmas (pixels) for the saliency maps, comma-separated; the pilot compares "
                             "several, the confirmation uses the one written into docs before it ran")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s]
    sys.path.insert(0, str(Path(__file__).parent))
    for seed in seeds:
        run_seed(args.out / run_name(seed, args), seed, args)
    if args.phase == "train":
        return
    if args.phase == "confirm" and len(seeds) < 5:
        raise SystemExit("--phase confirm needs at least 5 fresh seeds (none of the pilot's).")
    import pandas as pd

    from cxrbio.data.phantom import LOCALISED

    smoothing = [float(v) for v in args.smooth.split(",") if v]
    if args.phase == "confirm" and len(smoothing) != 1:
        raise SystemExit("--phase confirm takes one --smooth value (the pilot's choice, written into docs).")
    rows, sanity = [], []
    for seed in seeds:
        root = args.out / run_name(seed, args)
        # Each seed's evaluation is kept beside its run, keyed by the settings: a sweep resumes.
        key = f"{args.map}-{args.per_dim}-{'_'.join(f'{v:g}' for v in smoothing)}"
        found, maps_found = root / f"evaluation-{key}.csv", root / "evaluation-sanity.csv"
        if not found.is_file():
            pd.DataFrame(evaluate_seed(root, seed, args, smoothing)).to_csv(found, index=False)
        if not maps_found.is_file():
            pd.DataFrame(sanity_distribution(root, seed, args)).to_csv(maps_found, index=False)
        rows += pd.read_csv(found).to_dict("records") if found.stat().st_size > 1 else []
        sanity += pd.read_csv(maps_found).to_dict("records") if maps_found.stat().st_size > 1 else []
    columns = ["seed", "smooth", "class", "feature", "carries_physics", "localises", "auroc", "minus_random",
               "minus_shuffled"]
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=columns)
    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out / f"candidates-{args.phase}.csv", index=False)
    maps = pd.DataFrame(sanity)
    maps.to_csv(args.out / f"sanity-{args.phase}.csv", index=False)
    print(f"Sizes: {args.per_class} images per class at {args.size} px, 3 folds, {args.epochs} epochs, "
          f"{args.strategy}; severities {args.severity[0]}-{args.severity[1]}; up to {args.per_dim} held-out images per fold dim; "
          f"{args.map} maps")
    for sigma in smoothing:
        part = frame[frame["smooth"] == sigma] if len(frame) else frame
        report(part, seeds, list(LOCALISED), f"{args.phase}, saliency smoothed with sigma {sigma:g} px")
    if len(maps):
        quantiles = [0.05, 0.5, 0.95]
        print("\nSaliency sanity (audited dims): rho of the trained map with a randomised model's, quantiles 5/50/95: "
              + " / ".join(f"{q:.2f}" for q in maps["map_rho"].quantile(quantiles))
              + "; two randomised models' maps: " + " / ".join(f"{q:.2f}" for q in maps["random_rho"].quantile(quantiles)))


if __name__ == "__main__":
    main()
