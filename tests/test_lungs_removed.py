"""Lungs-removed retraining: the blacked-out box, the comparison with the normal model, the stage end to end."""

import json

import numpy as np
import pandas as pd
import pytest

from cxrbio.run.rundir import RunDir
from tests.helpers import copy_run, synthetic_predictions


def test_central_box_is_centred_on_the_content_and_sized_by_it():
    from cxrbio.confounding.lung_removal import central_box, removed_images

    content = np.zeros((40, 40), bool)
    content[:, 10:30] = True  # a portrait image letterboxed: padding left and right
    box = central_box(content, 0.5)
    rows, cols = np.flatnonzero(box.any(axis=1)), np.flatnonzero(box.any(axis=0))
    assert (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) == (10, 30, 15, 25)
    assert not (box & ~content).any()
    images = np.full((2, 40, 40), 200, np.uint8)
    manifest = pd.DataFrame({"height": [80, 40], "width": [40, 40]})  # portrait, square
    out = removed_images(images, manifest, 40, 0.5)
    assert out[0, 20, 20] == 0 and out[0, 20, 12] == 200 and out[1, 20, 20] == 0 and out[1, 5, 5] == 200
    assert images[0, 20, 20] == 200  # the cache is not touched


def test_compare_scores_both_models_on_the_same_images_with_patient_intervals():
    from cxrbio.confounding.lung_removal import compare

    classes = ["A", "B", "C"]
    normal = synthetic_predictions(accuracy=0.95, seed=1, classes=classes)
    chance = synthetic_predictions(accuracy=0.0, seed=2, classes=classes)
    removed = normal[["image_id", "patient_id", "fold", "true"]].assign(
        predicted=chance["predicted"].to_numpy(), **{f"p_{c}": chance[f"p_{c}"].to_numpy() for c in classes})
    found = compare(normal, removed, classes, resamples=200, seed=0, level=0.95)
    assert found["images"] == len(normal) and found["chance_balanced_accuracy"] == pytest.approx(1 / 3)
    for row in found["per_class"]:
        assert row["normal_auroc"] > 0.9 and row["normal_auroc_ci"][0] > 0.5
        assert row["removed_auroc_ci"][0] < 0.5 < row["removed_auroc_ci"][1] or row["removed_auroc"] < 0.6
        assert not row["recognised_without_lungs"]
    assert found["normal"]["balanced_accuracy"] > 0.9
    lo, hi = found["removed"]["balanced_accuracy_ci"]
    assert lo < 1 / 3 + 0.1 and lo <= found["removed"]["balanced_accuracy"] <= hi
    same = compare(normal, normal, classes, resamples=200, seed=0, level=0.95)
    assert all(r["recognised_without_lungs"] for r in same["per_class"])


def test_the_stage_refuses_a_strategy_that_is_not_trained(scanned_tiny, tmp_path):
    from cxrbio.errors import CxrbioError
    from cxrbio.stages import lungs_removed

    run = copy_run(scanned_tiny, tmp_path / "run")
    with pytest.raises(CxrbioError, match="not trained on every fold"):
        lungs_removed.run(run.root)


@pytest.mark.slow  # trains networks
def test_lungs_removed_trains_every_fold_on_blacked_out_images_resumes_and_reports(trained_run, tmp_path):
    from typer.testing import CliRunner

    from cxrbio.cli.app import app

    run = copy_run(trained_run.root, tmp_path / "run")  # the session's trained run (scratch, 2 folds)
    result = CliRunner().invoke(app, ["lungs-removed", str(run.root)])
    assert result.exit_code == 0, result.output
    assert "Lungs removed, scratch" in result.output and "balanced accuracy" in result.output
    for fold in range(2):
        out = run.path("lungs_removed_fold", strategy="scratch", fold=fold)
        assert {"model.keras", "predictions.parquet", "validation.parquet"} <= {p.name for p in out.iterdir()}
        normal = pd.read_parquet(run.path("train_fold", strategy="scratch", fold=fold) / "predictions.parquet")
        removed = pd.read_parquet(out / "predictions.parquet")
        assert list(normal["image_id"]) == list(removed["image_id"])  # the same folds
    found = json.loads(run.path("lungs_removed", strategy="scratch").read_text())
    assert found["box_fraction"] == 0.7 and len(found["per_class"]) == 7
    again = CliRunner().invoke(app, ["lungs-removed", str(run.root)])
    assert again.exit_code == 0 and "lungs removed, scratch fold" not in again.output  # every fold up to date
    page = tmp_path / "r.html"
    assert CliRunner().invoke(app, ["report", str(RunDir(run.root).root), "--html", str(page)]).exit_code == 0
    assert "Lungs removed" in page.read_text()
