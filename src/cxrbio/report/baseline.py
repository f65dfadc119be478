"""The radiomics baseline: a per-fold logistic regression on pyradiomics features, and its top features.

It is the classical yardstick beside the CNN: if radiomics alone matches a strategy, the network's
extra capacity bought little; the top features say which hand-crafted measurements carry the classes.
"""

from __future__ import annotations

from typing import Any

from cxrbio.report.contents import RunContents
from cxrbio.report.formatting import number, p_value, pct, pct_ci, sort_key


def baseline_section(contents: RunContents) -> dict[str, Any] | None:
    baseline = contents.baseline
    if baseline is None:
        return None
    ci = baseline.get("ci95", {})
    binary = baseline.get("binary", {})
    classes = contents.classes
    matrix = baseline.get("confusion")
    confusion = None
    if matrix:
        confusion = [{"predicted": name, "cells": [{"ours": matrix[a][p], "diagonal": a == p} for a in range(len(classes))]}
                     for p, name in enumerate(classes)]
    candidates = contents.radiomics_analysis.get("candidates")
    bootstrap = contents.radiomics_analysis.get("bootstrap")
    per_class = []
    for disease in classes:
        rows = []
        if candidates is not None:
            frame = candidates[candidates["class"] == disease].sort_values("rank").head(contents.config.report.radiomics_features)
            for _, row in frame.iterrows():
                direction = int(row["direction"]) if row["direction"] == row["direction"] else 0
                rows.append({"rank": int(row["rank"]), "feature": str(row["feature"]),
                             "shap": number(row["mean_abs_shap"], 4), "shap_key": sort_key(row["mean_abs_shap"]),
                             "direction": "higher → class" if direction > 0 else "lower → class" if direction < 0 else "–",
                             "auc": number(row["auc"]), "auc_key": sort_key(row["auc"]),
                             "q": p_value(row["q"]), "q_key": sort_key(row["q"]),
                             "top_frequency": number(row.get("effect_top_frequency"), 2),
                             "top_frequency_key": sort_key(row.get("effect_top_frequency"))})
        jaccard = "–"
        if bootstrap is not None and not bootstrap[bootstrap["class"] == disease].empty:
            jaccard = number(bootstrap[bootstrap["class"] == disease]["top_jaccard"].iloc[0], 2)
        per_class.append({"disease": disease, "rows": rows, "bootstrap_jaccard": jaccard})
    return {
        "accuracy": pct_ci(baseline.get("accuracy"), ci.get("accuracy")),
        "balanced_accuracy": pct_ci(baseline.get("balanced_accuracy"), ci.get("balanced_accuracy")),
        "sensitivity": pct_ci(binary.get("sensitivity"), ci.get("sensitivity")),
        "specificity": pct_ci(binary.get("specificity"), ci.get("specificity")),
        "per_fold": _per_fold(baseline.get("per_fold_accuracy")),
        "classifier": str(baseline.get("classifier", "")), "features": baseline.get("features"),
        "confusion": confusion, "classes": classes, "per_class": per_class,
        "positive_class": contents.config.data.positive_class,
    }


def _per_fold(values: Any) -> list[str]:
    if isinstance(values, dict):
        return [f"fold {k}: {pct(v)}" for k, v in values.items()]
    return [pct(v) for v in values or []]
