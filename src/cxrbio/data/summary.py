"""What a scan found, as tables: the numbers a user checks before training anything."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass
class ScanSummary:
    per_class: pd.DataFrame
    per_source: pd.DataFrame
    exclusions: pd.DataFrame
    duplicates: dict[str, int]
    folds: pd.DataFrame | None
    confounding: list[str]


def summarize(manifest: pd.DataFrame, classes: list[str]) -> ScanSummary:
    order = [c for c in classes if c in set(manifest["label"])] + sorted(set(manifest["label"]) - set(classes))
    grouped = manifest.groupby("label")
    included = manifest[manifest["included"]]
    per_class = pd.DataFrame(
        {
            "images": grouped.size(),
            "patients": grouped["patient_id"].nunique(),
            "excluded": grouped["included"].apply(lambda s: int((~s).sum())),
            "used": included.groupby("label").size(),
            "used patients": included.groupby("label")["patient_id"].nunique(),
        }
    ).reindex(order).fillna(0).astype(int)
    crosstab = pd.crosstab(manifest["source"], manifest["label"]).reindex(columns=order, fill_value=0)
    per_source = pd.DataFrame(
        {
            "images": crosstab.sum(axis=1),
            "classes": [", ".join(f"{c} {n}" for c, n in row.items() if n) for _s, row in crosstab.iterrows()],
        }
    )
    exclusions = manifest.loc[~manifest["included"], ["label", "qc_status", "qc_reason", "path"]]
    readable = manifest[manifest["dup_group"] >= 0]
    group_sizes = readable.groupby("dup_group").size()
    multi = group_sizes[group_sizes > 1].index
    in_multi = readable[readable["dup_group"].isin(multi)]
    duplicates = {
        "exact duplicate images": int((readable["exact_duplicates"] > 0).sum()),
        "near-duplicate groups": int(len(multi)),
        "images in near-duplicate groups": int(len(in_multi)),
        "groups spanning patients": int((in_multi.groupby("dup_group")["patient_id"].nunique() > 1).sum()),
        "groups spanning labels": int((in_multi.groupby("dup_group")["label"].nunique() > 1).sum()),
    }
    folds = None
    if (included["fold"] >= 0).all() and len(included):
        folds = pd.crosstab(included["fold"], included["label"]).reindex(columns=[c for c in order if c in set(included["label"])])
    return ScanSummary(per_class, per_source, exclusions, duplicates, folds, confounding_notes(crosstab))


def confounding_notes(crosstab: pd.DataFrame) -> list[str]:
    """Classes that come from a single source, when others do not: a model can learn the source."""
    if len(crosstab.index) < 2:
        return []
    single: dict[str, list[str]] = {}
    for label in crosstab.columns:
        sources = crosstab.index[crosstab[label] > 0]
        if len(sources) == 1:
            single.setdefault(str(sources[0]), []).append(str(label))
    if not single:
        return []
    listed = "; ".join(f"{', '.join(labels)} only from {source}" for source, labels in single.items())
    notes = [
        f"source confounded with class -- {listed}: a model may learn a source's look instead of the disease "
        "(and leave-one-source-out cannot test these classes: each would be missing from training when its source "
        "is held out; see the acquisition baseline and the report's Confounding section)"
    ]
    return notes
