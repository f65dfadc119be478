import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from cxrbio.evaluation.metrics import strategy_metrics
from cxrbio.evaluation.paper import PAPER_CLASSES

SCRIPT = Path(__file__).resolve().parents[1] / "analyses" / "paper_tables.py"


def load_script():
    spec = importlib.util.spec_from_file_location("paper_tables", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table_7_predictions():
    """The study's Table 6 as predictions: 3,905 images whose pooled matrix is the published one."""
    classes = list(PAPER_CLASSES)
    published = load_script().PUBLISHED_TABLE_6  # rows predicted, columns actual
    rows = []
    for p, row in enumerate(published):
        for a, count in enumerate(row):
            for i in range(count):
                rows.append({"image_id": f"{p}-{a}-{i}", "patient_id": f"{p}-{a}-{i}", "fold": i % 10, "true": a, "predicted": p})
    frame = pd.DataFrame(rows)
    for k, c in enumerate(classes):
        frame[f"p_{c}"] = (frame["predicted"] == k).astype(float)
    return frame, classes


def test_tables_reproduce_the_published_scratch_results(tmp_path):
    frame, classes = table_7_predictions()
    metrics = strategy_metrics(frame, classes, "COVID-19", {}, n_boot=20)
    metrics.update(strategy="scratch", status="done")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "scratch.json").write_text(json.dumps(metrics))
    (tmp_path / "metrics" / "offshelf.json").write_text(json.dumps({"status": "skipped", "reason": "no weights"}))
    console = Console(record=True, width=250)
    load_script().print_tables(tmp_path, console)
    text = console.export_text()
    # Table 5: beside the paper's 87.66 etc., our mean over folds (here with uneven folds, so not the
    # pooled figure); below it, pooled out-of-fold from the published matrix equals the published numbers.
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip("│ ").startswith("scratch"))
    first, second = lines[at], lines[at + 1]
    folds = [v["accuracy"] for v in metrics["folds"].values()]
    assert f"{100 * np.mean(folds):.2f} ± {100 * np.std(folds, ddof=1):.2f}" in first and "87.66" in first
    assert f"({100 * min(folds):.2f}-{100 * max(folds):.2f})" in first
    for published in ("99.18", "87.66", "97.36", "99.42"):  # 2-class acc, 7-class acc, sensitivity, specificity
        assert f"pooled {published} [" in second, published
    assert "443 [443]" in text and "1340 [1340]" in text  # Tables 6 and 7, ours [paper]
    assert "skipped" in text  # offshelf
    assert np.isclose(metrics["pooled"]["accuracy"], 0.8766, atol=5e-5)
