"""Does cxrbio's analysis find what was planted? The whole pipeline on three phantoms, checked against ground truth.

1. **Plain phantom** (no shortcut; ``graded``: the same with severities 0.3-1.0): train, embed,
   radiomics on the ground-truth lung masks, analyze. Prints
   * the pointing game: for each disease, the share of its top dims' saliency (audited images)
     inside that image's lesion masks, beside the lesions' share of the image (what saliency
     spread evenly would give), and the share of images whose saliency maximum is inside them;
   * the planted physics in the radiomics ranking: one-vs-Normal direction of mean intensity
     (effusion, consolidation up; emphysema down), lung area (emphysema up) and texture
     (fibrosis up), with their AUCs;
   * per passing candidate (the candidate bar): the planted physics in its partialled
     descriptors, its pointing game (saliency energy and hit rate, each over the lesions' area
     share), how its dims follow the planted severity within the disease, and per disease how
     well the planted property's radiomics follow it there (what a partialled descriptor can
     find at best).
2. **Shortcut phantom** (``--shortcut CLASS:FRACTION``, default Pneumonia:1.0: a bright marker in
   a top corner of every pneumonia image): the same pipeline.
3. **Site-confounded phantom** (``--site-confound``: site b's images are JPEG, taller, noisier and
   carry a burned-in corner label; most pneumonia and normal patients were imaged there).
4. **Null variants** of 2 and 3 (``shortcut-null``, ``site-null``): every image is drawn as Normal,
   so the marker (the site) is the only signal -- the positive controls of the audit.
5. With ``--lungs-removed``: the plain and site phantoms retrained with the image centre blacked
   out (``cxrbio lungs-removed``), per class AUROC beside the normal model's.

For every phantom the shortcut audit is printed: audited and flagged dims, the quantiles of the
outside-of-body ratio (what ``analysis.shortcut_margin`` is chosen from), the saliency sanity
check's correlations, and per class the area-normalised densities, the shortcut score and the
lungs-filled / outside-filled accuracies. On the shortcut and site phantoms each audited dim's
effect is also traced to the planted overlay (marker or label) alone: ``overlay share`` is the
change from filling only the overlay over the change from filling the whole outside.

    uv run python analyses/validate_phantom.py [--out runs/validate] [--config configs/demo.yaml]
        [--per-class 100] [--shortcut Pneumonia:1.0] [--strategies scratch] [--phantom-seed K]
        [--only plain,shortcut,shortcut-null,site,site-null,graded] [--lungs-removed]

Each phantom's run directory is reused when it exists (every stage resumes or skips).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cxrbio.models import saving

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FINDING_OF_CLASS = {"COVID-19": ["ground_glass"], "Pneumonia": ["consolidation"], "Effusion": ["effusion"],
                    "Edema": ["perihilar_haze", "kerley_lines"], "Emphysema": ["bullae", "hyperinflation"],
                    "Fibrosis": ["reticulation"]}


def pipeline(out: Path, config_path: Path | None, per_class: int, shortcut: str | None, strategies: list[str],
             site_confound: bool = False, null: bool = False, severity: tuple[float, float] = (0.7, 1.0),
             phantom_seed: int | None = None, isolated_site: str | None = None, nested_site: str | None = None,
             hide_source: bool = False, partial_null: bool = False, extra: dict | None = None) -> None:
    """Phantom -> scan -> train -> embed -> masks (ground truth) -> radiomics -> analyze, each stage resumed or skipped.

    ``hide_source``: scan the phantom's manifest without its sources (as class folders of renamed files have it).
    ``extra``: config overrides on top of the validation's (smaller sweeps: fewer epochs, no op determinism).
    """
    from cxrbio import stages
    from cxrbio.config import bundled_config, load_config
    from cxrbio.data.phantom import generate_phantom, parse_shortcut
    from cxrbio.runtime.progress import ProgressEvent

    # The demo's model with the validation's own folds, schedule and resamples (the demo changed them
    # for its 10-minute budget; the README's validation figures were measured with these).
    overrides = {"train.strategies": strategies}
    if config_path is None:
        overrides |= {"folds.k": 3, "train.epochs": 100, "train.early_stopping_patience": 30, "train.deterministic": True,
                      "analysis.bootstrap": 50, "analysis.permutations": 50, "analysis.audit_images": 8}
    cfg = load_config(config_path or bundled_config("demo.yaml"), overrides | (extra or {}))
    if not (out / "phantom" / "manifest.csv").is_file():
        generate_phantom(out / "phantom", per_class=per_class, size=max(64, cfg.data.image_size),
                         seed=cfg.folds.seed if phantom_seed is None else phantom_seed,
                         shortcut=parse_shortcut(shortcut), site_confound=site_confound, null=null,
                         severity=severity, isolated_site=isolated_site, nested_site=nested_site,
                         partial_null=partial_null)

    def show(event: ProgressEvent) -> None:
        if event.is_line:
            print(event.message)

    if not (out / "manifest.parquet").is_file():
        from cxrbio.data.phantom import HIDDEN_SOURCE_MANIFEST

        data = out / "phantom" / HIDDEN_SOURCE_MANIFEST if hide_source else out / "phantom"
        stages.scan.run(out, data=data, config=cfg, progress=show)
    stages.train.run(out, skip_unavailable=True, progress=show)
    stages.embed.run(out, progress=show)
    stages.masks.run(out, source="column", progress=show)  # the phantom's ground-truth lung and body masks
    stages.radiomics.run(out, progress=show)
    stages.analyze.run(out, progress=show)


def _ids_by_file_name(run_root: Path) -> dict[str, str]:
    """Phantom file name -> image id (names are unique in a phantom; a copied run directory keeps them)."""
    from cxrbio.run.rundir import RunDir

    manifest = RunDir(run_root).read_manifest()
    return {Path(p).name: i for p, i in zip(manifest["path"], manifest["image_id"])}


def lesion_masks(run_root: Path, size: int) -> dict[str, dict[str, object]]:
    """image_id -> finding -> letterboxed bool mask, from the phantom's findings.csv."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from cxrbio.data.preprocess import letterbox_mask
    from cxrbio.run.rundir import RunDir

    by_name = _ids_by_file_name(run_root)
    phantom = RunDir(run_root).path("phantom")
    out: dict[str, dict[str, object]] = {}
    for row in pd.read_csv(phantom / "findings.csv").itertuples():
        image_id = by_name.get(Path(row.path).name)
        if image_id is None:
            continue
        mask = np.asarray(Image.open(phantom / row.mask)) > 0
        out.setdefault(image_id, {})[row.finding] = letterbox_mask(mask.astype(np.uint8), size) > 0
    return out


def _saliency_shares(models: dict[int, object], run: object, strategy: str, fold: int, dim: str, ids: list[str],
                     images: dict[str, object], lesions: dict[str, dict[str, object]], findings: list[str]
                     ) -> tuple[list[float], list[float], list[bool]]:
    """Per image: the share of the dim's saliency inside the image's lesion masks, the masks' area share,
    and whether the saliency maximum lies inside them (the pointing game's hit, Zhang et al. 2018)."""
    import numpy as np

    from cxrbio.analysis.audit import unit_saliency
    from cxrbio.features.embedding import embedding_model

    ids = [i for i in ids if any(f in lesions.get(i, {}) for f in findings)]
    if not ids:
        return [], [], []
    if fold not in models:
        model = saving.load_model(run.path("train_fold", strategy=strategy, fold=fold) / "model.keras",  # type: ignore[attr-defined]
                                        compile=False)
        models[fold] = embedding_model(model)
    batch = np.stack([np.asarray(images[i]) for i in ids]).astype(np.float32)
    share, area, hit = [], [], []
    for s, i in zip(unit_saliency(models[fold], batch, int(dim[1:])), ids):
        lesion = np.zeros_like(s, bool)
        for f in findings:
            if f in lesions[i]:
                lesion |= lesions[i][f]
        share.append(float(s[lesion].sum() / max(s.sum(), 1e-12)))
        area.append(float(lesion.mean()))
        hit.append(bool(s.max() > 0 and lesion.flat[int(np.argmax(s))]))
    return share, area, hit


def pointing_game(run_root: Path, strategy: str) -> None:
    """Saliency share inside the lesions over the lesions' area share (1 = no better than spread evenly).

    The audited dims, on their audit images that carry the disease's lesion. The passing candidates'
    own pointing game, on held-out images of their disease, is in :func:`candidate_evidence`.
    """
    import numpy as np
    import pandas as pd

    from cxrbio.run.rundir import open_run
    from cxrbio.training.data import load_training_data

    run, cfg = open_run(run_root)
    dims = pd.read_parquet(run.path("analysis", strategy=strategy) / "audit_dims.parquet")
    lesions = lesion_masks(run.root, cfg.data.image_size)
    data = load_training_data(run, cfg, cache="disk")
    images = {i: data.images[k] for k, i in enumerate(data.manifest["image_id"])}
    print(f"\nPointing game ({strategy}): saliency share inside the disease's lesion masks, up to "
          f"{cfg.analysis.audit_dims} audited dims per fold, on their audit images")
    print(f"{'class':<10} {'dims':>4} {'images':>6} {'lesion share':>13} {'lesion area':>12} {'enrichment':>11} "
          f"{'hit rate':>9} {'hit/area':>9}")
    models: dict[int, object] = {}
    for cls, findings in FINDING_OF_CLASS.items():
        part = dims[dims["class"] == cls]
        share, area, hit = [], [], []
        for item in part.itertuples():
            s, a, h = _saliency_shares(models, run, strategy, int(item.fold), str(item.dim), item.images.split("|"),
                                       images, lesions, findings)
            share += s
            area += a
            hit += h
        if share:
            print(f"{cls:<10} {len(part):>4} {len(share):>6} {np.mean(share):>13.3f} {np.mean(area):>12.3f} "
                  f"{np.mean(share) / np.mean(area):>11.2f} {np.mean(hit):>9.3f} {np.mean(hit) / np.mean(area):>9.2f}")
        else:
            print(f"{cls:<10} {len(part):>4} {0:>6}  (no image of the disease with its lesion mask)")


# What each disease's finding was drawn with (cxrbio.data.phantom), as radiomics families: (family, sign).
# A passing candidate "describes the planted physics" when one of its significant partialled descriptors
# (descriptors.parquet, q < 0.05) is of the family, with rho x the feature's direction of that sign.
INTENSITY = ("firstorder_Mean", "firstorder_Median", "firstorder_RootMeanSquared", "firstorder_90Percentile",
             "firstorder_10Percentile", "firstorder_Energy", "firstorder_TotalEnergy", "firstorder_Minimum",
             "firstorder_Maximum")
SIZE = ("shape2D_PixelSurface", "shape2D_MeshSurface", "shape2D_MajorAxisLength", "shape2D_MinorAxisLength",
        "shape2D_Perimeter", "shape2D_MaximumDiameter")
TEXTURE = ("glcm_Contrast", "ngtdm_Contrast", "glcm_DifferenceAverage", "glcm_DifferenceEntropy", "glrlm_RunEntropy",
           "glszm_ZoneEntropy", "firstorder_Entropy", "glcm_JointEntropy", "ngtdm_Complexity")
# Every finding but emphysema adds density (brighter); emphysema removes it and enlarges the lungs;
# reticulation is a texture. Edema's enlarged heart is left out (it is outside the lung masks).
PHYSICS = {"COVID-19": [("brighter", INTENSITY, +1)], "Edema": [("brighter", INTENSITY, +1)],
           "Effusion": [("brighter", INTENSITY, +1)], "Pneumonia": [("brighter", INTENSITY, +1)],
           "Emphysema": [("darker", INTENSITY, -1), ("larger", SIZE, +1)], "Fibrosis": [("more textured", TEXTURE, +1)]}


def candidate_physics(run_root: Path, strategy: str) -> None:
    """Per disease: the passing candidates, and whether their descriptors carry the planted physics."""
    import pandas as pd

    folder = run_root / "analysis" / strategy
    candidates = pd.read_parquet(folder / "candidates.parquet")
    descriptors = pd.read_parquet(folder / "descriptors.parquet") if (folder / "descriptors.parquet").is_file() else None
    print(f"\nPassing candidates ({strategy}) and the planted physics in their partialled descriptors (q < 0.05):")
    described = []
    for cls in FINDING_OF_CLASS:
        passing = candidates[(candidates["class"] == cls) & candidates["passed"].astype(bool)]
        tested = int((candidates["class"] == cls).sum())
        line = f"  {cls:<10} {len(passing)} of {tested} tested pass"
        if cls in PHYSICS and descriptors is not None and not passing.empty:
            verdicts = []
            found = {row.feature: physics_hits(descriptors, cls, str(row.feature), int(row.direction))
                     for row in passing.itertuples()}
            for what, _family, _sign in PHYSICS[cls]:
                hits = [f"{feature}: {name} rho {rho:+.2f}" for feature, items in found.items()
                        for w, name, rho in items if w == what]
                verdicts.append(f"{what}: {'yes (' + '; '.join(hits[:2]) + ')' if hits else 'no'}")
            line += "; " + "; ".join(verdicts)
            if any(v.split(": ", 1)[1].startswith("yes") for v in verdicts):
                described.append(cls)
        print(line)
    print(f"  {len(described)} of {len(FINDING_OF_CLASS)} diseases have a passing candidate whose descriptors carry a "
          f"planted property: {', '.join(described) or 'none'}")


def of_family(name: str, family: tuple[str, ...]) -> bool:
    """A radiomics feature of a planted family: intensity and size on the image itself (or its wavelet
    low band), not on LoG edge maps; texture on any image type."""
    return name.endswith(family) and (family is TEXTURE or name.startswith(("original_", "wavelet-LL_")))


def physics_hits(descriptors: object, cls: str, feature: str, direction: int,
                 tier: str | None = None) -> list[tuple[str, str, float]]:
    """(planted property, its strongest significant descriptor, rho) for each property of the disease found.

    ``tier``: only descriptors of that ``descriptor_tier`` count (e.g. "disease-specific").
    """
    import numpy as np

    out = []
    for what, family, sign in PHYSICS.get(cls, []):
        d = descriptors[(descriptors["class"] == cls) & (descriptors["feature_id"] == feature)  # type: ignore[index]
                        & (descriptors["q"] < 0.05)]  # type: ignore[index]
        if tier is not None:
            d = d[d["descriptor_tier"] == tier]
        d = d[np.array([of_family(name, family) for name in d["feature"]], dtype=bool)]
        d = d[d["rho"] * direction * sign > 0]
        if not d.empty:
            best = d.reindex(d["rho"].abs().sort_values(ascending=False).index).iloc[0]
            out.append((what, str(best["feature"]), float(best["rho"])))
    return out


def severities(run_root: Path) -> dict[str, float]:
    """image_id -> the planted finding's severity (0 for Normal), from the phantom's manifest.csv."""
    import pandas as pd

    from cxrbio.run.rundir import RunDir

    by_name = _ids_by_file_name(run_root)
    table = pd.read_csv(RunDir(run_root).path("phantom") / "manifest.csv")
    return {by_name[Path(p).name]: float(v) for p, v in zip(table["path"], table["severity"]) if Path(p).name in by_name}


def physics_ceiling(features: object, labels: dict[str, str], cls: str, severity: dict[str, float]) -> str:
    """How well the radiomics of the planted property track the finding's severity within the disease.

    The partialled descriptors can only name what varies within a class: when no radiomics feature
    of the planted family follows the severity among the disease's own images, no candidate can be
    described by it, however well it reads the finding.
    """
    import numpy as np
    from scipy import stats

    ids = [i for i in features.index if labels.get(i) == cls and i in severity]  # type: ignore[attr-defined]
    parts = []
    for what, family, sign in PHYSICS.get(cls, []):
        columns = [c for c in features.columns if of_family(c, family)]  # type: ignore[attr-defined]
        rho = np.array([stats.spearmanr([severity[i] for i in ids], features.loc[ids, c])[0]  # type: ignore[attr-defined]
                        for c in columns])
        rho = np.where(np.isfinite(rho), rho, 0.0) * sign
        best = int(np.argmax(rho))
        parts.append(f"{what}: {columns[best]} rho {sign * rho[best]:+.2f}")
    return "; ".join(parts)


def candidate_evidence(run_root: Path, strategy: str, per_dim: int = 16, bar: float = 1.5) -> None:
    """The bar, per passing candidate: planted physics in its descriptors and its own pointing game.

    A disease meets it when one passing candidate has both: a significant partialled descriptor of
    a planted property (:func:`physics_hits`) and a pointing game of at least ``bar`` times the
    lesions' area share over its fold dims, on up to ``per_dim`` held-out images of the disease per
    dim. The pointing game is given both ways: the saliency *energy* inside the lesions (share over
    area) and the *hit rate* of the saliency maximum (hits over area, Zhang et al. 2018, no
    tolerance), each against the area share a map spread at random would score. Beside them: how
    the candidate's dims follow the planted severity among the disease's held-out images (Spearman,
    mean over folds), and the same for the planted property's radiomics (what a partialled
    descriptor could find at best).
    """
    import numpy as np
    import pandas as pd
    from scipy import stats

    from cxrbio.run.rundir import open_run
    from cxrbio.training.data import load_training_data

    run, cfg = open_run(run_root)
    folder = run.path("analysis", strategy=strategy)
    candidates = pd.read_parquet(folder / "candidates.parquet")
    descriptors = pd.read_parquet(folder / "descriptors.parquet")
    per_fold = pd.read_parquet(folder / "confirmation.parquet")
    lesions = lesion_masks(run.root, cfg.data.image_size)
    severity = severities(run.root)
    radiomics = pd.read_parquet(run.path("radiomics")).set_index("image_id")
    data = load_training_data(run, cfg, cache="disk")
    images = {i: data.images[k] for k, i in enumerate(data.manifest["image_id"])}
    held_out = {f.fold: set(data.manifest["image_id"].to_numpy()[f.test]) for f in data.folds}
    labels = dict(zip(data.manifest["image_id"], data.manifest["label"]))
    embeddings = {f: pd.read_parquet(run.path("embeddings", strategy=strategy, fold=f))
                  .set_index("image_id") for f in held_out}
    models: dict[int, object] = {}
    print(f"\nEvidence per passing candidate ({strategy}): planted physics in its partialled descriptors, and its "
          f"pointing game (every fold dim, up to {per_dim} held-out images of the disease each; bar {bar}x)")
    print(f"{'class':<10} {'feature':<7} {'auc':>5} {'q':>8} {'energy':>7} {'hits':>6} {'rho sev':>7}  physics")
    met: dict[str, list[str]] = {"energy": [], "hits": []}
    for cls, findings in FINDING_OF_CLASS.items():
        passing = candidates[(candidates["class"] == cls) & candidates["passed"].astype(bool)]
        for row in passing.itertuples():
            share, area, hit, tracks = [], [], [], []
            for item in per_fold[(per_fold["class"] == cls) & (per_fold["feature"] == row.feature)].itertuples():
                own = sorted(i for i in held_out[int(item.fold)] if labels[i] == cls)
                s, a, h = _saliency_shares(models, run, strategy, int(item.fold), str(item.dim), own[:per_dim],
                                           images, lesions, findings)
                share += s
                area += a
                hit += h
                values = embeddings[int(item.fold)].loc[own, str(item.dim)].to_numpy()
                tracks.append(stats.spearmanr(values, [severity[i] for i in own])[0])
            energy = float(np.mean(share) / np.mean(area)) if share else float("nan")
            hits_ratio = float(np.mean(hit) / np.mean(area)) if hit else float("nan")
            hits = physics_hits(descriptors, cls, str(row.feature), int(row.direction))
            physics = "; ".join(f"{what} ({name} rho {rho:+.2f})" for what, name, rho in hits) or "none"
            print(f"{cls:<10} {row.feature:<7} {row.auc:>5.2f} {row.q:>8.1e} {energy:>7.2f} {hits_ratio:>6.2f} "
                  f"{np.nanmean(tracks):>+7.2f}  {physics}")
            for name, value in (("energy", energy), ("hits", hits_ratio)):
                if hits and value >= bar and cls not in met[name]:
                    met[name].append(cls)
        print(f"{'':<10} severity within {cls} vs the planted radiomics: {physics_ceiling(radiomics, labels, cls, severity)}")
    for name, what in (("energy", "saliency energy"), ("hits", "hit rate")):
        print(f"  {len(met[name])} of {len(FINDING_OF_CLASS)} diseases have a passing candidate with the planted physics "
              f"in its descriptors and a pointing game ({what}) of at least {bar}x: {', '.join(met[name]) or 'none'}")


def planted_physics(run_root: Path) -> None:
    import pandas as pd

    from cxrbio.run.rundir import RunDir

    run = RunDir(run_root)
    features = pd.read_parquet(run.path("radiomics")).set_index("image_id")
    labels = run.read_manifest().set_index("image_id")["label"]
    from cxrbio.analysis.stats import rank_auc

    checks = [("COVID-19", "original_firstorder_Mean", +1), ("Edema", "original_firstorder_Mean", +1),
              ("Effusion", "original_firstorder_Mean", +1), ("Pneumonia", "original_firstorder_Mean", +1),
              ("Emphysema", "original_firstorder_Mean", -1), ("Emphysema", "original_shape2D_PixelSurface", +1),
              ("Fibrosis", "original_glcm_Contrast", +1), ("Fibrosis", "original_ngtdm_Contrast", +1)]
    print("\nPlanted physics (radiomics, each class against Normal): AUC > 0.5 means higher in the class")
    for cls, feature, expected in checks:
        part = features.loc[labels.loc[features.index].isin([cls, "Normal"])]
        positive = (labels.loc[part.index] == cls).to_numpy()
        auc = float(rank_auc(part[[feature]].to_numpy(), positive)[0])
        verdict = "as planted" if (auc - 0.5) * expected > 0 else "NOT as planted"
        print(f"{cls:<10} {feature:<32} AUC {auc:.3f}  expected {'up' if expected > 0 else 'down'}: {verdict}")
    ranking = pd.read_parquet(run.path("analysis", strategy="radiomics") / "candidates.parquet")
    print("\nTop radiomics features by SHAP (logistic regression), per class (descriptive, not adjusted for source):")
    for cls, part in ranking.groupby("class"):
        print(f"  {cls:<10} " + ", ".join(part.head(3)["feature"]))


def overlay_boxes(run_root: Path, kind: str) -> dict[str, object]:
    """image_id -> letterboxed bool mask of the planted overlay: the marker (shortcut) or the site label (site b)."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from cxrbio.data.phantom import corner_label_box
    from cxrbio.run.rundir import RunDir

    run = RunDir(run_root)
    manifest = run.read_manifest()
    phantom = pd.read_csv(run.path("phantom") / "manifest.csv")
    by_path = {str((run.path("phantom") / p).resolve()): i for p, i in zip(phantom["path"], phantom.index)}
    out: dict[str, object] = {}
    for row in manifest.itertuples():
        source = phantom.loc[by_path[row.path]] if row.path in by_path else None
        if source is None:
            continue
        h, w = int(row.height), int(row.width)
        box = None
        if kind == "shortcut" and bool(source["shortcut"]):
            box = (int(source["shortcut_x0"]), int(source["shortcut_y0"]), int(source["shortcut_x1"]), int(source["shortcut_y1"]))
        elif kind == "site" and str(source.get("site", "")).endswith("site-b"):
            lungs = np.asarray(Image.open(run.path("phantom") / source["lung_mask"])) > 0
            x0, y0, x1, y1 = corner_label_box(h, w)
            if not lungs[y0:y1, x0:x1].any():
                box = (x0, y0, x1, y1)
        if box is not None:
            mask = np.zeros((h, w), np.uint8)
            mask[box[1]:box[3], box[0]:box[2]] = 1
            out[row.image_id] = mask
    return out


def overlay_reading(run_root: Path, strategy: str, kind: str) -> object:
    """Per audited dim: the share of its outside-of-body occlusion effect that filling the planted overlay alone gives."""
    import numpy as np
    import pandas as pd

    from cxrbio.analysis.audit import FILL, activations, filled
    from cxrbio.data.preprocess import letterbox_geometry, letterbox_mask
    from cxrbio.features.embedding import embedding_model
    from cxrbio.run.mask_files import read_body_mask
    from cxrbio.run.rundir import open_run
    from cxrbio.training.data import load_training_data

    run, cfg = open_run(run_root)
    dims = pd.read_parquet(run.path("analysis", strategy=strategy) / "audit_dims.parquet")
    boxes = {k: letterbox_mask(v, cfg.data.image_size) > 0 for k, v in overlay_boxes(run_root, kind).items()}
    data = load_training_data(run, cfg, cache="disk")
    row = {i: k for k, i in enumerate(data.manifest["image_id"])}
    shape = run.read_manifest().set_index("image_id")[["height", "width"]]
    content = {i: letterbox_geometry(int(h), int(w), cfg.data.image_size).content_mask()
               for i, (h, w) in zip(shape.index, shape.to_numpy())}
    shares = []
    models: dict[int, object] = {}
    for item in dims.itertuples():
        ids = [i for i in item.images.split("|") if i in boxes]
        if not ids:
            shares.append(np.nan)
            continue
        if item.fold not in models:
            model = saving.load_model(run.path("train_fold", strategy=strategy, fold=item.fold) / "model.keras",
                                            compile=False)
            models[item.fold] = embedding_model(model)
        images = np.stack([np.asarray(data.images[row[i]]) for i in ids]).astype(np.float32)
        outside = [~read_body_mask(run, i) & content[i] for i in ids]
        # The overlay alone, filled with the air value (the median of the whole outside), as the audit fills the outside.
        box_only = images.copy()
        for k, i in enumerate(ids):
            box_only[k][boxes[i] & outside[k]] = np.median(images[k][outside[k]])
        all_out = np.stack([filled(images[k], outside[k], FILL["outside"]) for k, i in enumerate(ids)])
        j = int(item.dim[1:])
        base = activations(models[item.fold], images)[:, j]
        d_box = np.abs(base - activations(models[item.fold], box_only)[:, j]).mean()
        d_out = np.abs(base - activations(models[item.fold], all_out)[:, j]).mean()
        shares.append(float(d_box / d_out) if d_out > 1e-9 else np.nan)
    return dims.assign(overlay_share=shares, overlay_images=[sum(i in boxes for i in x.split("|")) for x in dims["images"]])


def shortcut_report(run_root: Path, strategy: str, title: str, kind: str | None = None) -> None:
    import numpy as np
    import pandas as pd

    from cxrbio.run.rundir import open_run

    run, cfg = open_run(run_root)
    folder = run.path("analysis", strategy=strategy)
    dims = pd.read_parquet(folder / "audit_dims.parquet")
    scores = pd.read_parquet(folder / "shortcut_scores.parquet")
    blanked = pd.read_parquet(folder / "audit_model.parquet")
    unique = dims.drop_duplicates(["fold", "dim"])
    margin = cfg.analysis.shortcut_margin
    print(f"\nShortcut audit, {title} ({strategy}); margin {margin}, sanity rho {cfg.analysis.sanity_max_rho}")
    print(f"audited dims: {len(unique)}; flagged {int(unique['likely_shortcut'].sum())} "
          f"({unique['likely_shortcut'].mean():.1%}); outside ratio quantiles (50/90/95/99/max): "
          + " / ".join(f"{q:.2f}" for q in np.nanquantile(unique["outside_ratio"], [0.5, 0.9, 0.95, 0.99, 1.0])))
    print("map rho with the randomised model, quantiles (5/50/95/max): "
          + " / ".join(f"{q:.2f}" for q in np.nanquantile(unique["map_rho"], [0.05, 0.5, 0.95, 1.0]))
          + f"; unreliable {int(unique['map_unreliable'].sum())}")
    table = dims.groupby("class").agg(lung_density=("lung_density", "mean"), body_density=("body_density", "mean"),
                                      outside_density=("outside_density", "mean"), outside_ratio=("outside_ratio", "median"),
                                      ratio_max=("outside_ratio", "max"), flagged=("likely_shortcut", "mean"))
    table = table.join(scores[scores["class"] != "(model)"].groupby("class")["shortcut_score"].mean())
    table = table.join(blanked.groupby("class")[["accuracy", "lungs_blanked_accuracy", "outside_blanked_accuracy"]].mean())
    print(table.round(2).to_string())
    if kind is not None:
        read = overlay_reading(run_root, strategy, kind)
        reading = read[read["overlay_share"] >= 0.5]
        print(f"dims whose outside effect is mostly the planted {'marker' if kind == 'shortcut' else 'label'} "
              f"(overlay share >= 0.5): {len(reading)}; flagged among them: {int(reading['likely_shortcut'].sum())}")
        print(read[read["overlay_images"] > 0][["fold", "class", "dim", "outside_ratio", "overlay_share", "overlay_images",
                                                 "likely_shortcut"]].round(2).to_string(index=False))


PHANTOMS = {  # name -> (shortcut marker, site-confounded, null: every image drawn as Normal)
    "plain": (False, False, False),
    "shortcut": (True, False, False),
    "shortcut-null": (True, False, True),
    "site": (False, True, False),
    "site-null": (False, True, True),
    "graded": (False, False, False),
}
#: Phantoms whose findings' severity is drawn from a wider range than the default (0.7, 1.0):
#: graded findings, so the partialled (within-class) descriptors have planted variation to find.
SEVERITY = {"graded": (0.3, 1.0)}
#: Phantoms with planted findings and no shortcut: the pointing game and the planted physics apply.
PLANTED = ("plain", "graded")


def lungs_removed_report(run_root: Path, title: str) -> None:
    from cxrbio import stages

    found = stages.lungs_removed.run(run_root).results["scratch"]
    print(f"\nLungs removed, {title}: central {found['box_fraction']:.0%} box blacked out, {found['folds']} folds")
    print(f"balanced accuracy {found['normal']['balanced_accuracy']:.3f} -> {found['removed']['balanced_accuracy']:.3f} "
          f"[{found['removed']['balanced_accuracy_ci'][0]:.3f}, {found['removed']['balanced_accuracy_ci'][1]:.3f}] "
          f"(chance {found['chance_balanced_accuracy']:.3f})")
    print(f"{'class':<10} {'AUROC':>6} {'removed':>8} {'95% CI':>15} {'sens':>5} {'removed':>8}  recognised without centre")
    for row in found["per_class"]:
        low, high = row["removed_auroc_ci"]
        print(f"{row['class']:<10} {row['normal_auroc']:>6.3f} {row['removed_auroc']:>8.3f} [{low:.3f}, {high:.3f}] "
              f"{row['normal_sensitivity']:>5.2f} {row['removed_sensitivity']:>8.2f}  {row['recognised_without_lungs']}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("runs/validate"))
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--shortcut", default="Pneumonia:1.0")
    parser.add_argument("--strategies", default="scratch")
    parser.add_argument("--phantom-seed", type=int, default=None,
                        help="draw the phantoms with this seed (default: the config's folds.seed); a replicate "
                             "needs its own --out")
    parser.add_argument("--only", default=",".join(PHANTOMS), help=f"comma-separated, of {', '.join(PHANTOMS)}")
    parser.add_argument("--lungs-removed", action="store_true",
                        help="also retrain scratch with the image centre blacked out on the plain and site phantoms")
    args = parser.parse_args()
    strategies = [s for s in args.strategies.split(",") if s]
    for kind in [k for k in args.only.split(",") if k]:
        marker, site, null = PHANTOMS[kind]
        out = args.out / kind
        pipeline(out, args.config, args.per_class, args.shortcut if marker else None, strategies, site_confound=site,
                 null=null, severity=SEVERITY.get(kind, (0.7, 1.0)), phantom_seed=args.phantom_seed)
        title = f"{kind} phantom" + (f" ({args.shortcut} marker)" if marker else "")
        for strategy in strategies:
            if kind in PLANTED:
                pointing_game(out, strategy)
                candidate_physics(out, strategy)
                candidate_evidence(out, strategy)
            shortcut_report(out, strategy, title, kind="shortcut" if marker else "site" if site else None)
        if kind in PLANTED:
            planted_physics(out)
        if args.lungs_removed and kind in ("plain", "site"):
            lungs_removed_report(out, title)


if __name__ == "__main__":
    main()
