"""Classification results: the study's Tables 1-7 beside the published numbers, per-class metrics
with confidence intervals, ROC curves, calibration, strategy comparisons and training curves.

Beside the paper's numbers sits what the paper reports: the mean over folds (with our SD and
range, which it does not give). Below each, the pooled out-of-fold figure (every image
predicted once, by the fold model that never saw its patient) with its patient-bootstrap
interval. The paper's come from its 10-fold CV on 3,905 images.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from sklearn.metrics import roc_curve

from cxrbio.evaluation.paper import PAPER_CLASSES, PUBLISHED_BINARY, PUBLISHED_METRICS, PUBLISHED_TABLE_6, strategy_order
from cxrbio.report.calibration_section import calibration_view
from cxrbio.report.contents import RunContents, StrategyResults
from cxrbio.report.figures import CLASS_COLOURS, figure_html, plot_text
from cxrbio.report.formatting import number, number_ci, p_value, pct, pct_ci, pct_range, pct_sd, signed_pct_ci

#: The columns beside the paper's Tables 1, 4 and 5: (our summary key, where the pooled value lives).
PAPER_COLUMNS = (("binary_accuracy", "binary", "accuracy"), ("accuracy", None, "accuracy"),
                 ("sensitivity", "binary", "sensitivity"), ("specificity", "binary", "specificity"))


def published(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def paper_cells(metrics: dict[str, Any]) -> list[dict[str, str]]:
    """Per column: the fold mean ± SD (the paper's definition), the fold range, the pooled value [CI]."""
    pooled, ci = metrics["pooled"], metrics.get("ci95", {})
    cells = []
    for key, section, field_name in PAPER_COLUMNS:
        value = (pooled.get(section, {}) if section else pooled).get(field_name)
        cells.append({"mean": pct_sd(metrics.get("fold_mean", {}).get(key), metrics.get("fold_sd", {}).get(key)),
                      "range": pct_range(metrics.get("fold_range", {}).get(key)),
                      "folds": str(metrics.get("fold_count", {}).get(key, "")),
                      "pooled": pct_ci(value, ci.get(key))})
    return cells


def paper_rows(contents: RunContents) -> list[dict[str, Any]]:
    """Tables 1, 4 and 5 as one table: every strategy we ran or the paper reported, in the paper's order."""
    names = sorted({*contents.strategies, *PUBLISHED_METRICS}, key=lambda n: (strategy_order(n), n))
    rows = []
    empty = [{"mean": "–", "range": "", "folds": "", "pooled": ""}] * 4
    for name in names:
        result = contents.strategies.get(name)
        theirs = PUBLISHED_METRICS.get(name, (None, None, None, None))
        table = "Table 1" if name == "offshelf" else "Table 5" if name == "scratch" else "Table 4"
        row: dict[str, Any] = {"strategy": name, "table": table, "paper": [published(v) for v in theirs]}
        if result is None or result.metrics is None:
            row.update(status="not run", ours=empty)
        elif not result.trained:
            row.update(status="skipped: " + str(result.metrics.get("reason", "")), ours=empty)
        else:
            row.update(status="done", ours=paper_cells(result.metrics))
        rows.append(row)
    return rows


def confusion(result: StrategyResults, classes: list[str]) -> dict[str, Any]:
    """The pooled 7-class and 2-class matrices as the paper prints them (rows predicted, columns actual)."""
    metrics = result.metrics or {}
    pooled = metrics["pooled"]
    matrix = pooled["confusion"]  # rows true, columns predicted
    with_paper = result.name == "scratch" and tuple(classes) == PAPER_CLASSES
    rows = []
    for p, name in enumerate(classes):
        cells = []
        for a in range(len(classes)):
            cells.append({"ours": matrix[a][p], "paper": PUBLISHED_TABLE_6[p][a] if with_paper else None,
                          "diagonal": a == p})
        rows.append({"predicted": name, "cells": cells})
    binary = None
    if "binary" in pooled:
        b = pooled["binary"]
        theirs = PUBLISHED_BINARY.get(result.name)
        binary = {"positive": metrics.get("positive_class", ""), "tp": b["tp"], "fp": b["fp"], "fn": b["fn"], "tn": b["tn"],
                  "paper": dict(zip(("tp", "fp", "fn", "tn"), theirs)) if theirs else None}
    table_7 = {"offshelf": ("Table 2", "Table 3"), "scratch": ("Table 6", "Table 7")}.get(result.name)
    return {"classes": classes, "rows": rows, "binary": binary, "with_paper": with_paper,
            "titles": table_7 or ("7-class confusion", "2-class confusion")}


def per_class_rows(result: StrategyResults) -> list[dict[str, Any]]:
    """Per-class one-vs-rest sensitivity, specificity, precision and AUROC with patient-bootstrap 95% intervals."""
    metrics = result.trained_metrics
    pooled, intervals = metrics["pooled"], metrics.get("ci95_per_class", {})
    rows = []
    for name, c in pooled["per_class"].items():
        tp, fp = c["tp"], c["fp"]
        ci = intervals.get(name, {})
        rows.append({
            "class": name, "n": c["tp"] + c["fn"],
            "sensitivity": pct_ci(c.get("sensitivity"), ci.get("sensitivity")),
            "specificity": pct_ci(c.get("specificity"), ci.get("specificity")),
            "precision": pct_ci(tp / (tp + fp) if tp + fp else None, ci.get("precision")),
            "auroc": number_ci(pooled.get("auroc", {}).get(name), ci.get("auroc")),
        })
    return rows


def roc_figure(result: StrategyResults, classes: list[str]) -> str | None:
    """One-vs-rest ROC per class from the pooled out-of-fold probabilities."""
    predictions = result.predictions
    if predictions is None or not all(f"p_{c}" in predictions.columns for c in classes):
        return None
    figure = go.Figure()
    truth = predictions["label"].to_numpy()
    for i, name in enumerate(classes):
        positive = truth == name
        if positive.all() or not positive.any():
            continue
        scores = predictions[f"p_{name}"].to_numpy()
        fpr, tpr, _ = roc_curve(positive, scores)
        auc = number(result.trained_metrics["pooled"].get("auroc", {}).get(name))  # computed by cxrbio train, same predictions
        figure.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name=plot_text(f"{name} (AUC {auc})"),
                                    line={"color": CLASS_COLOURS[i % len(CLASS_COLOURS)], "width": 2}))
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "#999"}))
    figure.update_layout(title=f"ROC, one class vs the rest ({result.name}, pooled out-of-fold)",
                         xaxis_title="1 − specificity", yaxis_title="sensitivity", height=420,
                         xaxis={"range": [0, 1]}, yaxis={"range": [0, 1.02]})
    return figure_html(figure, f"roc-{result.name}")


def training_curves(result: StrategyResults) -> str | None:
    """Loss and accuracy per epoch, fit and validation, one line per fold."""
    if not result.histories:
        return None
    figure = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    palette = CLASS_COLOURS
    for fold, history in sorted(result.histories.items()):
        colour = palette[fold % len(palette)]
        for col, metric in ((1, "loss"), (2, "accuracy")):
            for prefix, dash in (("", "solid"), ("val_", "dot")):
                column = prefix + metric
                if column not in history.columns:
                    continue
                figure.add_trace(go.Scatter(
                    x=history["epoch"] + 1 if "epoch" in history.columns else np.arange(1, len(history) + 1),
                    y=history[column], mode="lines", line={"color": colour, "dash": dash},
                    name=f"fold {fold} {'validation' if prefix else 'fit'}", legendgroup=f"fold-{fold}",
                    showlegend=col == 1), row=1, col=col)
    figure.update_xaxes(title_text="epoch")
    figure.update_layout(title=f"Training curves ({result.name}; dotted: validation patients)", height=380)
    return figure_html(figure, f"curves-{result.name}")


def comparison_rows(contents: RunContents) -> list[dict[str, Any]]:
    """One row per strategy pair: paired differences with intervals, the primary test (Holm), McNemar (image-level)."""
    if not contents.comparison:
        return []
    rows = []
    for pair in contents.comparison.get("pairs", []):
        nb, mc, diff = pair.get("nadeau_bengio", {}), pair.get("mcnemar", {}), pair.get("difference", {})

        def delta(key: str, diff: dict = diff) -> str:
            found = diff.get(key, {})
            return signed_pct_ci(found.get("estimate"), found.get("ci95"))

        rows.append({"a": pair["a"], "b": pair["b"], "accuracy_a": pct(pair.get("accuracy_a")),
                     "accuracy_b": pct(pair.get("accuracy_b")), "d_accuracy": delta("accuracy"),
                     "d_balanced": delta("balanced_accuracy"), "d_auroc": delta("macro_auroc"),
                     "nb_t": number(nb.get("t"), 2), "nb_p": p_value(nb.get("p")), "nb_holm": p_value(nb.get("p_holm")),
                     "significant": bool(nb.get("significant")),
                     "mcnemar_p": p_value(mc.get("p")), "mcnemar_holm": p_value(mc.get("p_holm"))})
    return rows


def performance_section(contents: RunContents) -> dict[str, Any]:
    classes = contents.classes
    strategies = []
    for result in contents.strategies.values():
        entry: dict[str, Any] = {"name": result.name, "trained": result.trained,
                                 "reason": str((result.metrics or {}).get("reason") or "").rstrip(".") if result.metrics else "not run"}
        if result.trained:
            metrics = result.trained_metrics
            entry.update(
                confusion=confusion(result, classes),
                per_class=per_class_rows(result),
                roc=roc_figure(result, classes),
                curves=training_curves(result),
                folds=[{"fold": k, "n": v.get("n"), "accuracy": pct(v.get("accuracy"))}
                       for k, v in sorted(metrics.get("folds", {}).items(), key=lambda kv: str(kv[0]))],
                fold_mean=pct(metrics.get("fold_mean", {}).get("accuracy")),
                fold_sd=pct(metrics.get("fold_sd", {}).get("accuracy")),
                calibration=calibration_view(result, classes),
                training=metrics.get("training", []),
            )
        strategies.append(entry)
    comparison = contents.comparison or {}
    return {"paper_rows": paper_rows(contents), "strategies": strategies, "comparison": comparison_rows(contents),
            "comparison_metric": comparison.get("metric", "7-class accuracy"),
            "comparison_alpha": comparison.get("alpha", contents.config.evaluation.alpha),
            "comparison_resamples": comparison.get("bootstrap", {}).get("resamples"),
            "positive_class": contents.config.data.positive_class}


def scoreboard(contents: RunContents) -> list[dict[str, str]]:
    """The headline: each trained strategy's pooled 7-class accuracy and positive-vs-rest metrics."""
    rows = []
    for result in contents.trained():
        metrics = result.trained_metrics
        pooled, ci = metrics["pooled"], metrics.get("ci95", {})
        binary = pooled.get("binary", {})
        rows.append({"name": result.name, "accuracy": pct_ci(pooled["accuracy"], ci.get("accuracy")),
                     "fold_mean": pct_sd(metrics.get("fold_mean", {}).get("accuracy"),
                                         metrics.get("fold_sd", {}).get("accuracy")),
                     "sensitivity": pct_ci(binary.get("sensitivity"), ci.get("sensitivity")),
                     "specificity": pct_ci(binary.get("specificity"), ci.get("specificity")),
                     "n": str(pooled.get("n", ""))})
    acquisition = contents.acquisition or {}
    if acquisition.get("status") == "done":
        rows.append({"name": "acquisition baseline", "accuracy": "–", "fold_mean": "–", "n": str(acquisition.get("images", "")),
                     "sensitivity": "–", "specificity": "–",
                     "balanced": f"balanced accuracy {pct(acquisition.get('balanced_accuracy'))}% against a permutation "
                                 f"null of {pct(acquisition.get('null_mean'))}% (p = {p_value(acquisition.get('p'))})",
                     "flagged": ", ".join(acquisition.get("flagged", [])) or "none"})
    if contents.baseline:
        ci = contents.baseline.get("ci95", {})
        binary = contents.baseline.get("binary", {})
        per_fold = [float(v) for v in contents.baseline.get("per_fold_accuracy", {}).values()]
        rows.append({"name": "radiomics baseline", "accuracy": pct_ci(contents.baseline.get("accuracy"), ci.get("accuracy")),
                     "fold_mean": pct_sd(np.mean(per_fold) if per_fold else None,
                                         np.std(per_fold, ddof=1) if len(per_fold) > 1 else None),
                     "sensitivity": pct_ci(binary.get("sensitivity"), ci.get("sensitivity")),
                     "specificity": pct_ci(binary.get("specificity"), ci.get("specificity")),
                     "n": str(contents.baseline.get("n", ""))})
    return rows


