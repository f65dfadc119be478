"""Covariates that travel with the label: age, sex, view, device, site.

In the study's kind of data the Pneumonia and Normal images are paediatric and the COVID-19
images adult: age alone then separates the classes, and a network can read age from the
skeleton. Manifest columns recognised as covariates (or listed in ``confounding.covariates``)
are cross-tabulated against the label and tested: chi-square for categories, Kruskal-Wallis for
numbers, Benjamini-Hochberg over the covariates. A sentence names how each significant one
differs by class ("age < 18: 100% of Pneumonia, 0% of COVID-19").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: Column names (lower case, punctuation-free) recognised as covariates, and what they are.
KNOWN = {"age": "age", "patientage": "age", "sex": "sex", "gender": "sex", "patientsex": "sex",
         "patientgender": "sex", "view": "view", "viewposition": "view", "projection": "view",
         "device": "device", "manufacturer": "device", "scanner": "device", "modality": "device",
         "site": "site", "hospital": "site", "institution": "site", "institutionname": "site"}
#: Share of parseable values below which a column is treated as categories, not numbers.
NUMERIC_SHARE = 0.8
#: Age below which an image counts as paediatric in the sentence about age.
PAEDIATRIC_AGE = 18


@dataclass
class CovariateAudit:
    """Per covariate: its kind, the test, q, and a sentence; ``notes`` for columns left out and caveats."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def significant(self) -> list[dict[str, Any]]:
        return [row for row in self.rows if row.get("significant")]


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def find_covariates(manifest: pd.DataFrame, listed: list[str]) -> dict[str, str]:
    """Column -> kind ('age', 'sex', ...; 'listed' for ``confounding.covariates`` entries)."""
    found = {c: KNOWN[_key(c)] for c in manifest.columns if _key(c) in KNOWN}
    for column in listed:
        if column in manifest.columns:
            found.setdefault(column, "listed")
    return found


def as_numbers(values: pd.Series) -> pd.Series:
    """Numbers in the column ('058Y' -> 58); NaN where none."""
    text = values.astype(str).str.extract(r"(-?\d+(?:\.\d+)?)", expand=False)
    return pd.to_numeric(text, errors="coerce").where(values.notna())


def _sentence_numeric(name: str, kind: str, numbers: pd.Series, labels: pd.Series, classes: list[str]) -> str:
    present = [c for c in classes if (labels == c).any()]
    if kind == "age":
        shares = {c: float((numbers[labels == c] < PAEDIATRIC_AGE).mean()) for c in present}
        high, low = max(shares, key=shares.get), min(shares, key=shares.get)  # type: ignore[arg-type]
        if shares[high] - shares[low] >= 0.2:
            return f"{name} < {PAEDIATRIC_AGE}: {shares[high]:.0%} of {high}, {shares[low]:.0%} of {low}"
    medians = {c: float(numbers[labels == c].median()) for c in present}
    high, low = max(medians, key=medians.get), min(medians, key=medians.get)  # type: ignore[arg-type]
    return f"median {name}: {medians[high]:.3g} in {high}, {medians[low]:.3g} in {low}"


def _sentence_categorical(name: str, values: pd.Series, labels: pd.Series) -> str:
    shares = pd.crosstab(values, labels, normalize="columns")
    spread = (shares.max(axis=1) - shares.min(axis=1)).sort_values(ascending=False)
    category = spread.index[0]
    row = shares.loc[category]
    return f"{name} = {category}: {row.max():.0%} of {row.idxmax()}, {row.min():.0%} of {row.idxmin()}"


def audit_covariates(manifest: pd.DataFrame, classes: list[str], *, listed: list[str] | None = None,
                     alpha: float = 0.05) -> CovariateAudit:
    """Test each covariate column against the label (included images); BH over the covariates."""
    from scipy import stats

    from cxrbio.evaluation.multiple_testing import benjamini_hochberg

    audit = CovariateAudit()
    labels = manifest["label"].astype(str)
    for column, kind in find_covariates(manifest, listed or []).items():
        raw = manifest[column]
        present = raw.notna() & (raw.astype(str).str.strip() != "")
        if not present.any():
            audit.notes.append(f"covariate '{column}' is empty for every image: left out.")
            continue
        if present.mean() < 1:
            audit.notes.append(f"covariate '{column}' is missing for {1 - present.mean():.0%} of images; tested on the rest.")
        numbers = as_numbers(raw[present])
        used_labels = labels[present]
        numeric = kind == "age" or (kind == "listed" and numbers.notna().mean() >= NUMERIC_SHARE)
        if kind == "listed" and 0 < numbers.notna().mean() < NUMERIC_SHARE:
            audit.notes.append(f"covariate '{column}' mixes numbers and text: tested as categories.")
        groups = [numbers[used_labels == c].dropna().to_numpy() for c in classes]
        groups = [g for g in groups if len(g)]
        if numeric and len(groups) >= 2 and numbers.notna().any():
            statistic, p = stats.kruskal(*groups) if len(np.unique(np.concatenate(groups))) > 1 else (np.nan, 1.0)
            sentence = _sentence_numeric(column, kind, numbers, used_labels, classes)
            test = "Kruskal-Wallis"
        else:
            values = raw[present].astype(str).str.strip()
            table = pd.crosstab(values, used_labels)
            if table.shape[0] < 2 or table.shape[1] < 2:
                audit.notes.append(f"covariate '{column}' has one value (or one class): nothing to test.")
                continue
            statistic, p, _, _ = stats.chi2_contingency(table)
            sentence = _sentence_categorical(column, values, used_labels)
            test = "chi-square"
        audit.rows.append({"covariate": column, "kind": kind, "test": test, "statistic": float(statistic), "p": float(p),
                           "images": int(present.sum()), "sentence": sentence})
    if audit.rows:
        q = benjamini_hochberg([r["p"] for r in audit.rows])
        for row, value in zip(audit.rows, q):
            row["q"] = float(value)
            row["significant"] = bool(value < alpha)  # NaN (a test that could not run) is never significant
    if "full_labels" in manifest.columns:
        several = manifest["full_labels"].astype(str).str.contains("|", regex=False)
        if several.any():
            example = manifest.loc[several, "full_labels"].iloc[0]
            audit.notes.append(f"{int(several.sum())} images carry several findings (full_labels, e.g. '{example}'): "
                               "their class is one of them, and the others may be what a model reads.")
    return audit
