"""Replication on an external set: does each passing candidate hold on patients from elsewhere?

Cross-validated confirmation re-uses the run's collections: the fold models share training data
and every held-out patient comes from the same hospitals. ``cxrbio evaluate RUN --data EXTERNAL``
re-tests every candidate that passed on the external patients, fixed before they are seen:

* the same fold dims (``dims`` of ``candidates.parquet``): each fold model embeds every
  external image, each dim is standardised over the external images, and a patient's value is
  the mean over the candidate's dims and over the patient's images;
* the same direction (``expected_direction``), tested one-sided;
* the same contrast: the class against the control class where the external set holds controls,
  else against the rest; within external sources as strata (van Elteren, a stratified
  permutation p where a stratum is small);
* BH over the strategy's candidates tested there.

Verdict per candidate: ``replicated`` (q < ``gate_q`` and the AUC on the predicted side),
``not replicated``, or ``not testable`` (fewer than ``confirm_min_patients`` patients of the class
or of its reference group in strata holding both; said, never counted as replicated).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from cxrbio.analysis import stratified
from cxrbio.evaluation.multiple_testing import benjamini_hochberg

REPLICATED, NOT_REPLICATED, NOT_TESTABLE = "replicated", "not replicated", "not testable"

COLUMNS = ["class", "feature", "dims", "expected_direction", "contrast", "n_class", "n_reference", "strata", "auc",
           "z", "p", "p_method", "q", "verdict", "internal_auc"]


def parse_dims(text: str) -> list[tuple[int, str]]:
    """'0:e0012|1:e0444' -> [(0, 'e0012'), (1, 'e0444')]."""
    out = []
    for part in str(text or "").split("|"):
        if ":" in part:
            fold, dim = part.split(":", 1)
            out.append((int(fold), dim.strip()))
    return out


def candidate_values(dims: list[tuple[int, str]], embeddings: dict[int, pd.DataFrame]) -> np.ndarray | None:
    """Per external image: the mean of the candidate's standardised fold dims (None: no dim embedded)."""
    columns = []
    for fold, dim in dims:
        frame = embeddings.get(fold)
        if frame is None or dim not in frame:
            continue
        values = frame[dim].to_numpy(np.float64)
        sd = values.std()
        columns.append((values - values.mean()) / sd if sd > 1e-12 else np.zeros_like(values))
    return np.mean(columns, axis=0) if columns else None


def replicate(candidates: pd.DataFrame, embeddings: dict[int, pd.DataFrame], manifest: pd.DataFrame,
              classes: list[str], *, control: str | None, min_patients: int, gate_q: float, permutation_below: int,
              permutations: int, seed: int) -> pd.DataFrame:
    """One row per passing candidate (see the module docstring); ``manifest``: the external images, in embedding order."""
    passing = candidates[candidates["passed"].astype(bool)] if "passed" in candidates else candidates.iloc[:0]
    rng = np.random.default_rng(seed)
    patients = manifest["patient_id"].astype(str).to_numpy()
    labels = manifest["label"].astype(str).to_numpy()
    sources = manifest["source"].astype(str).to_numpy() if "source" in manifest else np.full(len(manifest), "")
    order = pd.unique(patients)
    first = pd.Series(np.arange(len(patients))).groupby(patients).first().reindex(order).to_numpy()
    patient_label, patient_source = labels[first], sources[first]
    has_control = control is not None and (patient_label == control).any()
    rows = []
    item: Any  # pandas types rows and group keys loosely
    for item in passing.itertuples(index=False):
        cls, direction = str(item[passing.columns.get_loc("class")]), int(item.expected_direction)
        dims = parse_dims(getattr(item, "dims", ""))
        values = candidate_values(dims, embeddings)
        versus_control = has_control and cls != control
        contrast = f"vs {control}" if versus_control else "vs rest"
        row = {"class": cls, "feature": item.feature, "dims": getattr(item, "dims", ""), "expected_direction": direction,
               "contrast": contrast, "n_class": 0, "n_reference": 0, "strata": 0, "auc": np.nan, "z": np.nan,
               "p": np.nan, "p_method": "", "q": np.nan, "verdict": NOT_TESTABLE, "internal_auc": float(item.auc)}
        if values is not None:
            per_patient = pd.Series(values).groupby(patients).mean().reindex(order).to_numpy()
            group = patient_label == cls
            reference = (patient_label == control) if versus_control else ~group
            found = stratified.blocks(per_patient[:, None], group, reference, patient_source)
            together = stratified.combine(found, 1)
            row.update(n_class=together.n_group, n_reference=together.n_reference, strata=together.strata)
            if together.n_group >= min_patients and together.n_reference >= min_patients and together.var[0] > 0:
                z = direction * float(together.t[0]) / np.sqrt(float(together.var[0]))
                small = together.smallest < permutation_below
                p = float(stratified.permutation_p(found, resamples=permutations, rng=rng,
                                                   signs=np.full(len(found), direction))[0]) if small \
                    else float(stats.norm.sf(z))
                row.update(auc=float(together.auc[0]), z=z, p=p,
                           p_method="stratified permutation" if small else "van Elteren (normal)")
        rows.append(row)
    out = pd.DataFrame(rows, columns=COLUMNS)
    if out.empty:
        return out
    out["q"] = benjamini_hochberg(out["p"].to_numpy(float))
    on_side = np.sign(out["auc"] - 0.5) == out["expected_direction"]
    testable = out["p"].notna()
    out.loc[testable, "verdict"] = np.where((out.loc[testable, "q"] < gate_q) & on_side[testable],
                                            REPLICATED, NOT_REPLICATED)
    return out


def summary(frame: pd.DataFrame) -> dict[str, Any]:
    """Counts per verdict (and per class), for the evaluate json and the CLI."""
    counts = frame["verdict"].value_counts().to_dict() if len(frame) else {}
    per_class = {str(c): part["verdict"].value_counts().to_dict() for c, part in frame.groupby("class")} if len(frame) else {}
    return {"candidates": int(len(frame)), **{k: int(counts.get(k, 0)) for k in (REPLICATED, NOT_REPLICATED, NOT_TESTABLE)},
            "per_class": per_class}
