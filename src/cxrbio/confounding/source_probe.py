"""The source probe: can the source (hospital, collection), or a covariate, be read from a feature space within one class?

If a strategy's embeddings tell, among COVID-19 images alone, which collection an image came
from, the network has learned the collection's look; so have radiomics features that do. Within
each class with several known sources, a linear probe (standardised features, L2 logistic
regression, balanced class weights) predicts the source under patient-grouped cross-validation;
its balanced accuracy is judged against the patient-grouped permutation null of
:mod:`cxrbio.confounding.permutation`. Within a class the label is fixed, so what the probe finds
is source, not disease. The same probe reads categorical covariates (sex, view, device; age as
paediatric or adult) within each class: :func:`covariate_probes`.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from cxrbio.confounding.permutation import permutation_null
from cxrbio.data.provenance import UNKNOWN

#: Fewest patients per source (within a class) for that class to be probed.
MIN_PATIENTS = 3
COLUMNS = ["space", "target", "class", "sources", "images", "balanced_accuracy", "null_mean", "null_p95", "p"]


def probe_predictions(values: np.ndarray, sources: np.ndarray, groups: np.ndarray, *, seed: int, c: float = 0.1) -> np.ndarray:
    """Out-of-fold source predictions (codes into ``np.unique(sources)``) from patient-grouped CV; -1 where none."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    names, codes = np.unique(sources, return_inverse=True)
    per_source = pd.DataFrame({"s": codes, "g": groups}).groupby("s")["g"].nunique()
    splits = int(min(5, per_source.min()))
    predicted = np.full(len(codes), -1)
    if splits < 2 or len(names) < 2:
        return predicted
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        folds = list(StratifiedGroupKFold(splits, shuffle=True, random_state=seed).split(values, codes, groups))
    for train, test in folds:
        if len(np.unique(codes[train])) < 2:
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=2000))
        predicted[test] = model.fit(values[train], codes[train]).predict(values[test])
    return predicted


def source_probe(space: str, values: np.ndarray, labels: np.ndarray, sources: np.ndarray, groups: np.ndarray,
                 classes: list[str], *, permutations: int, seed: int, target: str = "source") -> pd.DataFrame:
    """One row per class with at least two known values (sources) of :data:`MIN_PATIENTS` patients each."""
    rows = []
    sources = np.asarray(sources).astype(str)
    for k, name in enumerate(classes):
        keep = (np.asarray(labels) == k) & (sources != UNKNOWN)
        if not keep.any():
            continue
        patients = pd.DataFrame({"s": sources[keep], "g": np.asarray(groups)[keep]}).groupby("s")["g"].nunique()
        eligible = patients[patients >= MIN_PATIENTS].index
        keep &= np.isin(sources, eligible)
        if len(eligible) < 2:
            continue
        predicted = probe_predictions(values[keep], sources[keep], np.asarray(groups)[keep], seed=seed)
        scored = predicted >= 0
        if not scored.any():
            continue
        names, codes = np.unique(sources[keep], return_inverse=True)
        null = permutation_null(codes[scored], predicted[scored], np.asarray(groups)[keep][scored], list(names),
                                permutations=permutations, seed=seed)
        rows.append({"space": space, "target": target, "class": name, "sources": ", ".join(names), "images": int(scored.sum()),
                     "balanced_accuracy": null.observed, "null_mean": null.null_mean, "null_p95": null.null_p95,
                     "p": null.p})
    return pd.DataFrame(rows, columns=COLUMNS)


def covariate_targets(manifest: pd.DataFrame, listed: list[str]) -> dict[str, pd.Series]:
    """Categorical versions of the manifest's covariates: age as paediatric/adult, others as given."""
    from cxrbio.confounding.covariates import PAEDIATRIC_AGE, as_numbers, find_covariates

    targets = {}
    for column, kind in find_covariates(manifest, listed).items():
        raw = manifest[column]
        if kind == "age":
            numbers = as_numbers(raw)
            values = pd.Series(np.where(numbers < PAEDIATRIC_AGE, f"< {PAEDIATRIC_AGE}", f">= {PAEDIATRIC_AGE}"),
                               index=manifest.index).where(numbers.notna(), UNKNOWN)
        else:
            values = raw.astype(str).str.strip().where(raw.notna() & (raw.astype(str).str.strip() != ""), UNKNOWN)
        targets[column] = values
    return targets


def covariate_probes(space: str, values: np.ndarray, labels: np.ndarray, covariates: dict[str, np.ndarray],
                     groups: np.ndarray, classes: list[str], *, permutations: int, seed: int) -> pd.DataFrame:
    """:func:`source_probe` for each covariate (``covariates``: name -> each image's value, 'unknown' where missing)."""
    frames = [source_probe(space, values, labels, target, groups, classes, permutations=permutations, seed=seed,
                           target=name) for name, target in covariates.items()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
