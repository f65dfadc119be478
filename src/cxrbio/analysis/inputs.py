"""What ``cxrbio analyze`` reads: labels, each fold's embeddings, radiomics; clear errors when missing.

A fold model's dimensions are its own units, so embeddings are kept per fold: the fold's
held-out (``test``) rows are what statistics, associations and projections use; its ``train``
rows only provide SHAP backgrounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from cxrbio.config import Config
from cxrbio.errors import DataError
from cxrbio.run.radiomics_files import read_features
from cxrbio.run.rundir import RunDir


@dataclass
class FoldEmbeddings:
    fold: int
    dims: list[str]
    test_ids: np.ndarray
    test: np.ndarray  # (n_test, D) float32, out-of-fold
    y_test: np.ndarray
    train: np.ndarray  # (n_train, D)
    y_train: np.ndarray
    train_ids: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))


@dataclass
class AnalysisInputs:
    run: RunDir
    config: Config
    manifest: pd.DataFrame  # included images, indexed by image_id
    classes: list[str]
    radiomics: pd.DataFrame | None  # image_id index, one column per feature
    notes: list[str] = field(default_factory=list)

    def labels(self, image_ids: np.ndarray) -> np.ndarray:
        return self.manifest.loc[image_ids, "y"].to_numpy()

    @cached_property
    def outer_fold(self) -> pd.Series:
        """Each image's outer test fold as training assigned it (``folds.scheme``: stratified or one per source)."""
        from cxrbio.data.folds import outer_fold_numbers

        return pd.Series(outer_fold_numbers(self.manifest, self.config.folds.scheme), index=self.manifest.index)

    @cached_property
    def radiomics_space(self) -> tuple[np.ndarray, list[str], np.ndarray, list[dict[str, str]]]:
        """(values, feature names, image ids, dropped) of the included images that have features.

        Cleaned once per analysis: the radiomics analysis and every strategy's use the same space.
        """
        if self.radiomics is None:
            raise ValueError("these inputs were loaded without radiomics (load_inputs(..., need_radiomics=True))")
        frame = self.radiomics.loc[self.radiomics.index.isin(self.manifest.index)]
        values, names, dropped = clean_columns(frame.to_numpy(np.float64), list(frame.columns))
        return values, names, frame.index.to_numpy(), dropped


def load_inputs(run: RunDir, config: Config, need_radiomics: bool = True) -> AnalysisInputs:
    """Included images (with their mask columns, when masks were made), labels, radiomics features."""
    from cxrbio.run.mask_files import with_masks

    manifest = with_masks(run.read_manifest(), run)
    manifest = manifest[manifest["included"]].set_index("image_id")
    classes = list(config.data.classes)
    manifest["y"] = manifest["label"].map({c: i for i, c in enumerate(classes)})
    radiomics = None
    notes: list[str] = []
    if need_radiomics or run.path("radiomics").is_file():
        radiomics = read_features(run).set_index("image_id")  # names 'cxrbio radiomics' when missing
        missing = len(manifest) - int(manifest.index.isin(radiomics.index).sum())
        if missing:
            notes.append(f"{missing} image(s) have no radiomics features (see radiomics/status.parquet); "
                         "radiomics analyses leave them out.")
    return AnalysisInputs(run, config, manifest, classes, radiomics, notes)


def analysable_strategies(run: RunDir, requested: list[str] | None) -> list[str]:
    """Strategies with embeddings; a clear error naming the command otherwise."""
    from cxrbio.run.artifacts import missing_error
    from cxrbio.run.embedding_files import embedded_folds

    found = list(embedded_folds(run))
    if not found:
        raise missing_error("embeddings", run.root)
    if requested:
        unknown = [s for s in requested if s not in found]
        if unknown:
            raise DataError(f"no embeddings for {', '.join(unknown)}; embedded: {', '.join(found)}.",
                            fix=f"run 'cxrbio embed {run.root} --strategies {','.join(unknown)}' first, or drop them.")
        return list(requested)
    return found


def load_fold_embeddings(inputs: AnalysisInputs, strategy: str) -> list[FoldEmbeddings]:
    """Every fold's embeddings of ``strategy``; refuses folds that do not partition the images."""
    from cxrbio.run.embedding_files import embedded_folds, read_out_of_fold

    read_out_of_fold(inputs.run, strategy, expected=pd.Series(inputs.manifest.index))  # raises with the fix
    folds = []
    for fold_number in embedded_folds(inputs.run)[strategy]:
        frame = pd.read_parquet(inputs.run.path("embeddings", strategy=strategy, fold=fold_number))
        frame = frame[frame["image_id"].isin(inputs.manifest.index)]
        dims = [c for c in frame.columns if c.startswith("e") and c[1:].isdigit()]
        test = frame["split"].to_numpy() == "test"
        ids = frame["image_id"].to_numpy()
        values = frame[dims].to_numpy(np.float32)
        folds.append(FoldEmbeddings(
            fold=fold_number, dims=dims,
            test_ids=ids[test], test=values[test], y_test=inputs.labels(ids[test]),
            train=values[~test], y_train=inputs.labels(ids[~test]), train_ids=ids[~test],
        ))
    return folds


def clean_columns(values: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str], list[dict[str, str]]]:
    """Drop constant and non-finite columns, saying why (they carry no testable signal)."""
    finite = np.isfinite(values).all(axis=0)
    with np.errstate(invalid="ignore"):
        spread = np.nanmax(values, axis=0) - np.nanmin(values, axis=0) if len(values) else np.zeros(len(names))
    constant = finite & (spread == 0)
    dropped = []
    for j in np.flatnonzero(~finite):
        dropped.append({"feature": names[j], "reason": f"non-finite in {int((~np.isfinite(values[:, j])).sum())} image(s)"})
    for j in np.flatnonzero(constant):
        dropped.append({"feature": names[j], "reason": f"constant ({values[0, j]:.4g}) over the images"})
    keep = finite & ~constant
    return values[:, keep], [n for n, k in zip(names, keep) if k], dropped


def stratified_sample(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Row positions of a class-stratified sample of size <= n (all rows when n >= len(y))."""
    if n >= len(y):
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    try:
        chosen, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=seed)
    except ValueError:  # a class too small to stratify
        chosen = np.random.default_rng(seed).choice(len(y), n, replace=False)
    return np.sort(chosen)
