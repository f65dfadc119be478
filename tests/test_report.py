"""`cxrbio report` and `cxrbio demo` end to end: every section from a real (tiny) pipeline run, user
strings escaped, partial runs, non-run folders, and the page checked in headless Chromium."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxrbio.cli.app import app
from tests.browser_check import chromium_path
from tests.helpers import FAST_CHECKS, FAST_PARAMS, write_png

keras = pytest.importorskip("keras")

EVIL = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """`cxrbio demo` at test scale with two trained strategies (a weights file made here stands in for
    ImageNet), then run again: every stage is reused. Returns (run dir, report, first output, second output)."""
    from cxrbio.models.weights import load_backbone

    root = tmp_path_factory.mktemp("demo")
    weights = root / "backbone.weights.h5"
    keras.utils.set_random_seed(7)
    load_backbone(32, 0.35, None).save_weights(weights)
    (root / "params.yaml").write_text(FAST_PARAMS)
    config = root / "tiny-demo.yaml"
    config.write_text(
        "data: {image_size: 32}\nfolds: {k: 2}\n"
        f"model: {{alpha: 0.35, dense_units: 16, batchnorm_momentum: 0.9, weights: '{weights}'}}\n"
        "train: {epochs: 2, batch_size: 16, early_stopping_patience: 0, strategies: [scratch, finetune-1], "
        "deterministic: false, checkpoint_seconds: 3600, augment_frozen: false}\n"  # as configs/demo.yaml
        "confounding: {permutations: 99, forest_trees: 1}\n"
        f"radiomics: {{params: '{root / 'params.yaml'}'}}\n"
        "analysis: {permutations: 5, bootstrap: 5, audit_dims: 2, audit_images: 3, confirm_min_patients: 2}\n")
    out, report = root / "demo", root / "demo-report.html"
    args = ["demo", str(out), "--config", str(config), "--per-class", "5", "--html", str(report)]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    stamp = report.stat().st_mtime_ns
    (out / "phantom" / "manifest.csv").touch()
    phantom_stamp = (out / "phantom" / "manifest.csv").stat().st_mtime_ns
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    assert (out / "phantom" / "manifest.csv").stat().st_mtime_ns == phantom_stamp  # same phantom: not regenerated
    assert report.stat().st_mtime_ns != stamp  # the report is always rebuilt (cheap)
    return out, report, first.output, second.output


@pytest.mark.slow  # the demo trains networks
def test_demo_runs_every_stage_reuses_them_and_prints_the_report(demo_run):
    out, report, first, second = demo_run
    stages = first.split("Stage times")[1]
    for stage in ("phantom", "scan", "train", "embed", "masks", "radiomics", "analyze", "report"):
        assert f"{stage} " in stages
    assert f"The report: {report}" in " ".join(first.split())
    for strategy in ("scratch", "finetune-1"):
        assert json.loads((out / "metrics" / f"{strategy}.json").read_text())["status"] == "done"
        assert sorted(p.name for p in (out / "embeddings" / strategy).iterdir()) == ["fold-0.parquet", "fold-1.parquet"]
        assert (out / "analysis" / strategy / "candidates.parquet").is_file()
    assert len(list((out / "masks").glob("img-*.png"))) == 35
    status = pd.read_parquet(out / "radiomics" / "status.parquet")
    assert len(status) == 35 and (status["status"] == "ok").all()
    assert "already finished" in second and "up to date" in second and "Radiomics: up to date" in second
    assert "scratch: inputs unchanged" in second


def sections_of(page: str) -> dict[str, str]:
    found = {}
    for match in re.finditer(r'<section id="([a-z]+)">(.*?)</section>', page, flags=re.S):
        found[match.group(1)] = match.group(2)
    return found


@pytest.mark.slow  # the demo trains networks
def test_report_holds_every_section_with_the_runs_own_numbers(demo_run):
    out, report, _first, _second = demo_run
    page = report.read_text()
    sections = sections_of(page)
    assert list(sections) == ["summary", "confounding", "performance", "embeddings", "candidates", "radiomics",
                              "limitations", "methods"]
    # the methods paragraph is the run's own: its images, folds and the gates the analysis used
    included = pd.read_parquet(out / "manifest.parquet").query("included")
    assert f"We analysed {len(included)} chest X-rays" in sections["methods"]
    assert "-fold cross-validation" in sections["methods"] and "Benjamini–Bogomolov" in sections["methods"]
    assert 'id="missing"' not in page  # a complete run
    # plotly.js once, inline; nothing fetched from the network.
    assert page.count("plotly.js v") == 1 and not re.search(r'<script[^>]+src=', page)
    markup = re.sub(r"<script>.*?</script>", "", page, flags=re.S)  # the page, without plotly.js's own code
    assert not re.search(r'(?:src|href)="https?:', markup)
    # Tables 1-7 beside the published numbers: the run's pooled accuracy, with the paper's 87.66 for scratch.
    metrics = json.loads((out / "metrics" / "scratch.json").read_text())
    scratch_row = re.search(r"<td>Table 5</td><td>scratch</td>(.*?)</tr>", sections["performance"], flags=re.S).group(1)
    assert f"pooled {100 * metrics['pooled']['accuracy']:.1f} [" in scratch_row and "87.66" in scratch_row
    # Beside the paper: the mean over folds, as the paper reports it.
    fold_mean = f"{100 * metrics['fold_mean']['accuracy']:.1f} ± {100 * metrics['fold_sd']['accuracy']:.1f}"
    assert f'<span class="fold-mean">{fold_mean}</span>' in scratch_row
    # Calibration per strategy; comparisons Holm-adjusted with paired differences.
    assert 'id="reliability-scratch"' in page and "Expected calibration error" in sections["performance"]
    assert "p, Holm" in sections["performance"] and "Δ accuracy" in sections["performance"]
    assert "Table 6" in sections["performance"] and "[443]" in sections["performance"]  # Table 6 with the paper's cells
    assert "Nadeau" in sections["performance"] and "finetune-1" in sections["performance"]  # strategy comparison
    for figure in ("roc-scratch", "curves-scratch", "roc-finetune-1", "umap-scratch", "umap-finetune-1", "umap-radiomics"):
        assert f'id="{figure}"' in page, figure
    assert '"type":"scattergl"' in page.replace(" ", "")  # WebGL for the scatter plots
    # Candidates: one panel per disease and strategy, with the top dim of the ranking.
    candidates = pd.read_parquet(out / "analysis" / "scratch" / "candidates.parquet")
    assert not candidates.empty  # at 5 images per class some classes have 2 patients in a held-out fold: tested
    best = candidates.sort_values(["passed", "p"], ascending=[False, True]).iloc[0]
    assert sections["candidates"].count('class="disease"') == 2 * 7
    assert f"<td>{best['feature']}</td>" in sections["candidates"]
    assert "Gates, as the last analysis used them (analysis/log.jsonl)" in sections["candidates"]
    assert "Analysis log: " in sections["candidates"] and "gates changed after" not in sections["candidates"]
    assert "tested features pass every gate" in sections["candidates"]
    # Saliency thumbnails: small embedded PNGs of the configured size.
    thumbnails = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', markup)
    assert thumbnails and all(len(t) * 3 / 4 < 40_000 for t in thumbnails)
    import base64
    import io

    first = Image.open(io.BytesIO(base64.b64decode(thumbnails[0])))
    assert first.size == (112, 112)
    baseline = json.loads((out / "analysis" / "radiomics" / "baseline.json").read_text())
    assert f"{100 * baseline['accuracy']:.1f} [" in sections["radiomics"]
    assert "synthetic phantom" in sections["limitations"] and "deviates from the published protocol" in sections["limitations"]
    # Pseudonyms only: no raw path of the data appears.
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert not any(str(path) in page for path in manifest["path"].head(20))


def test_gallery_overlay_draws_the_lung_contour_and_the_saliency():
    from cxrbio.report.gallery import CONTOUR, overlay

    image = np.full((32, 32), 100, np.uint8)
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    saliency = np.zeros((32, 32), np.float32)
    saliency[0:4, 0:4] = 1.0  # evidence in a corner, outside the lungs
    rgb = overlay(image, saliency, mask, 64)
    assert rgb.shape == (64, 64, 3)
    assert (rgb[16, 30] == CONTOUR).all() and (rgb[32, 32] == 100).all()  # contour on the edge, lung interior untouched
    assert rgb[2, 2, 0] > 200 and rgb[2, 2, 2] < 50  # hot corner
    plain = overlay(image, None, None, 64)
    assert (plain == 100).all()


def test_limitations_speak_only_when_the_data_give_reason():
    from cxrbio.report.limitations import _single_source, _source_confounding

    balanced = pd.DataFrame({"label": ["A", "B"] * 50, "source": ["h1", "h2"] * 25 + ["h2", "h1"] * 25})
    assert _source_confounding(balanced) == []
    confounded = pd.DataFrame({"label": ["A"] * 50 + ["B"] * 50, "source": ["h1"] * 50 + ["h2"] * 40 + ["h1"] * 10})
    notes = _source_confounding(confounded)
    assert notes == [notes[0]] and "100% of A images come from source 'h1', which supplies only 20%" in notes[0]
    unknown = confounded.assign(source="unknown")
    assert _source_confounding(unknown) == []  # 'unknown' is not a source
    assert "source (hospital, collection) of every image is unknown" in _single_source(unknown)[0]


def test_plot_labels_are_made_inert():
    from cxrbio.report.figures import plot_text

    assert plot_text(EVIL) == "&lt;img src=x onerror=alert(1)&gt;"


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """A scanned (not trained) run whose class label, source and a broken file name carry HTML."""
    from cxrbio.config import load_config
    from tests.helpers import scan

    root = tmp_path_factory.mktemp("hostile")
    data = root / "data"
    for c, label in enumerate(["Normal", EVIL]):
        for i in range(4):
            write_png(data / label / "<u>hospital" / f"p{c}{i}.png", seed=10 * c + i)  # the source, by subfolder
    (data / EVIL / '"><svg onload=alert(2)>.png').write_bytes(b"not a png")
    config = load_config(None, {**FAST_CHECKS, "data.classes": ["Normal", EVIL], "data.positive_class": None, "folds.k": 2,
                                "data.image_size": 32, "data.source_from": "subfolder"})
    scan(data, config, root / "run")
    return root / "run"


def test_user_strings_are_shown_as_text_and_a_partial_run_names_the_missing_commands(hostile_run, tmp_path):
    report = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["report", str(hostile_run), "--html", str(report)])
    assert result.exit_code == 0, result.output
    assert f"cxrbio train {hostile_run}" in " ".join(result.output.split())
    page = report.read_text()
    assert EVIL not in page and "<svg onload" not in page and "<u>hospital" not in page
    assert html.escape(EVIL) in page and "&lt;u&gt;hospital" in page
    assert "&lt;svg onload=alert(2)&gt;.png" in page  # the broken file, listed among QC exclusions
    missing = re.search(r'<div class="missing" id="missing">(.*?)</div>', page, flags=re.S).group(1)
    for command in (f"cxrbio train {hostile_run}", "cxrbio masks", "cxrbio radiomics"):
        assert command in missing
    assert "No strategy has been trained yet" in page


def test_report_of_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "photos").mkdir()
    result = CliRunner().invoke(app, ["report", str(tmp_path / "photos")])
    assert result.exit_code == 2 and "is not a cxrbio run directory" in result.output and "cxrbio data scan" in result.output
    result = CliRunner().invoke(app, ["report", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "does not exist" in result.output


needs_browser = pytest.mark.skipif(chromium_path() is None, reason="no Chromium (apt-get install chromium; .ci/run installs it)")


@needs_browser
@pytest.mark.slow  # the demo trains networks
def test_demo_report_in_chromium_renders_sorts_and_raises_no_console_error(demo_run, tmp_path):
    from .browser_check import SECTIONS, check_report

    _out, report, _first, _second = demo_run
    screenshot = tmp_path / "report.png"
    found = check_report(report, screenshot)
    assert found.console_errors == [] and found.requests_outside == [] and found.dialogs == []
    assert all(found.sections[name] for name in SECTIONS), found.sections
    assert found.plots >= 6 and found.plots_rendered == found.plots and found.webgl_plots >= 3
    assert found.sort_state == "ascending" and len(found.sorted_column) >= 2
    assert found.sorted_column == sorted(found.sorted_column)
    with Image.open(screenshot) as shot:
        assert shot.size == (1400, 1000) and len(np.unique(np.asarray(shot.convert("L")))) > 20  # a real page, not blank
    shutil.copy(screenshot, Path(report).with_suffix(".png"))


@needs_browser
def test_hostile_strings_run_no_script_in_chromium(hostile_run, tmp_path):
    from .browser_check import check_report

    report = tmp_path / "r.html"
    assert CliRunner().invoke(app, ["report", str(hostile_run), "--html", str(report)]).exit_code == 0
    found = check_report(report)
    assert found.dialogs == [] and found.console_errors == []


def test_performance_views_put_fold_means_beside_the_paper_with_calibration_and_adjusted_comparisons():
    """The report's tables from hand-made predictions (no training): what sits beside the paper is
    the mean over folds; calibration and Holm-adjusted paired comparisons are shown."""
    from types import SimpleNamespace

    from cxrbio.evaluation.comparisons import compare_strategies
    from cxrbio.evaluation.metrics import strategy_metrics
    from cxrbio.evaluation.paper import PAPER_CLASSES
    from cxrbio.report.calibration_section import calibration_view
    from cxrbio.report.contents import StrategyResults
    from cxrbio.report.performance import comparison_rows, paper_cells, per_class_rows
    from tests.helpers import synthetic_predictions

    classes = list(PAPER_CLASSES)
    good, poor = synthetic_predictions(accuracy=0.9, seed=1), synthetic_predictions(accuracy=0.5, seed=1)
    validation = synthetic_predictions(accuracy=0.9, seed=2)
    metrics = strategy_metrics(good, classes, "COVID-19", {}, n_boot=50, validation=validation)
    metrics.update(status="done")
    cells = paper_cells(metrics)
    folds = [v["accuracy"] for v in metrics["folds"].values()]
    assert cells[1]["mean"] == f"{100 * np.mean(folds):.1f} ± {100 * np.std(folds, ddof=1):.1f}"
    assert cells[1]["range"] == f"{100 * min(folds):.1f}–{100 * max(folds):.1f}" and cells[1]["folds"] == "3"
    assert cells[1]["pooled"].startswith(f"{100 * metrics['pooled']['accuracy']:.1f} [")
    result = StrategyResults("scratch", metrics=metrics)
    view = calibration_view(result, classes)
    assert view["ece"].startswith(f"{metrics['calibration']['uncalibrated']['ece']:.3f} [")
    assert view["scaled"] is not None and "fold 0:" in view["temperatures"] and 'id="reliability-scratch"' in view["figure"]
    assert [row["class"] for row in view["per_class"]] == classes
    assert per_class_rows(result)[0]["sensitivity"].count("[") == 1  # patient-bootstrap interval
    comparison = compare_strategies({"scratch": good, "offshelf": poor}, classes, n_train=120, n_test=60, resamples=50)
    row = comparison_rows(SimpleNamespace(comparison=comparison))[0]
    assert row["nb_holm"] != "–" and row["d_accuracy"].startswith("+") and row["mcnemar_holm"] != "–"


def test_mostly_empty_within_disease_descriptors_are_said_in_words_and_not_as_a_failure():
    from cxrbio.report.candidates import descriptors_note

    plain = pd.DataFrame({"passed": [True, True, True, False], "descriptor_tier": ["none", "nuisance",
                                                                                    "disease-specific", "none"]})
    note = descriptors_note(plain)
    assert "mostly empty: 1 of 3 passing candidates" in note and "nothing against the candidates" in note
    graded = plain.assign(descriptor_tier=["disease-specific", "disease-specific", "none", "none"])
    assert descriptors_note(graded) == ""
    assert descriptors_note(plain.assign(passed=False)) == ""  # nothing passed: nothing to describe
