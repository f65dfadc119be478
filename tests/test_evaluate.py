"""External evaluation: a run's fold models on another phantom; bad external sets get clear errors."""

import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrbio.cli.app import app
from cxrbio.run.rundir import RunDir
from tests.helpers import copy_run


def test_evaluate_refuses_an_untrained_run_and_a_missing_folder(scanned_tiny, phantom_dir, tmp_path):
    run = copy_run(scanned_tiny, tmp_path / "run")
    result = CliRunner().invoke(app, ["evaluate", str(run.root), "--data", str(phantom_dir)])
    assert result.exit_code == 2 and "not trained on every fold" in result.output and "cxrbio train" in result.output
    missing = CliRunner().invoke(app, ["evaluate", str(run.root), "--data", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


@pytest.mark.slow  # needs trained networks (the session's shared trained run)
def test_evaluate_on_a_second_phantom_scores_every_fold_model_and_the_ensemble(trained_run, tmp_path):
    from cxrbio.data.phantom import generate_phantom

    trained = copy_run(trained_run.root, tmp_path / "run").root  # evaluate writes external/ into the run
    # a candidate that passed (written as cxrbio analyze writes it): evaluate re-tests it on the external patients
    (trained / "analysis" / "scratch").mkdir(parents=True)
    pd.DataFrame([{"class": "Pneumonia", "feature": "f0001", "dims": "0:e0000|1:e0001", "expected_direction": 1,
                   "auc": 0.8, "passed": True}]).to_parquet(trained / "analysis" / "scratch" / "candidates.parquet")
    external = tmp_path / "hospital-b"
    generate_phantom(external, per_class=4, size=64, seed=11)  # other patients, other draws
    result = CliRunner().invoke(app, ["evaluate", str(trained), "--data", str(external)])
    assert result.exit_code == 0, result.output
    assert "External set 'hospital-b' (28 images)" in " ".join(result.output.split())
    run = RunDir(trained)
    found = json.loads(run.path("external_metrics", name="hospital-b", strategy="scratch").read_text())
    assert found["images"] == 28 and set(found["metrics"]["fold_models"]) == {"0", "1"}
    ensemble = pd.read_parquet(run.path("external_predictions", name="hospital-b", strategy="scratch") / "ensemble.parquet")
    folds = [pd.read_parquet(run.path("external_predictions", name="hospital-b", strategy="scratch") / f"fold-{k}.parquet")
             for k in range(2)]
    mean = sum(f["p_Normal"] for f in folds) / 2
    assert ensemble["p_Normal"].to_numpy() == pytest.approx(mean.to_numpy())
    pooled = found["metrics"]["pooled"]
    assert pooled["accuracy"] == pytest.approx((ensemble["true"] == ensemble["predicted"]).mean())
    own = json.loads(run.path("metrics", strategy="scratch").read_text())["pooled"]
    drop = found["drop"]["accuracy"]
    assert drop["drop"] == pytest.approx(own["accuracy"] - pooled["accuracy"])
    assert drop["drop_ci"][0] <= drop["drop"] + 1e-9 or drop["drop_ci"][1] >= drop["drop"] - 1e-9
    assert found["shared_images"] == 0
    replicated = pd.read_parquet(run.path("external_predictions", name="hospital-b", strategy="scratch")
                                 / "replication.parquet")
    assert list(replicated["feature"]) == ["f0001"] and replicated["contrast"].iloc[0] == "vs Normal"
    patients = pd.read_parquet(run.path("external_manifest", name="hospital-b")).query("label == 'Pneumonia'")
    assert replicated["n_class"].iloc[0] == patients["patient_id"].nunique()  # every Pneumonia patient, once
    assert replicated["verdict"].iloc[0] in {"replicated", "not replicated", "not testable"}
    assert found["replication"]["candidates"] == 1 and "of 1 passing candidate(s)" in " ".join(result.output.split())
    page = tmp_path / "r.html"
    shutil.rmtree(trained / "analysis")  # the hand-written candidate table is not a whole analysis for the report
    assert CliRunner().invoke(app, ["report", str(trained), "--html", str(page)]).exit_code == 0
    assert "hospital-b" in page.read_text() and "Candidates re-tested on the external patients" in page.read_text()


@pytest.mark.slow  # needs trained networks (the session's shared trained run)
def test_evaluate_names_labels_the_run_never_saw_and_can_leave_them_out(trained_run, tmp_path):
    from cxrbio.data.phantom import generate_phantom

    trained = copy_run(trained_run.root, tmp_path / "run").root
    external = tmp_path / "other"
    generate_phantom(external, per_class=3, size=64, seed=12)
    (external / "images" / "normal").rename(external / "images" / "tuberculosis")
    manifest = pd.read_csv(external / "manifest.csv")
    manifest["path"] = manifest["path"].str.replace("images/normal/", "images/tuberculosis/")
    manifest.loc[manifest["label"] == "Normal", "label"] = "Tuberculosis"
    manifest.to_csv(external / "manifest.csv", index=False)
    refused = CliRunner().invoke(app, ["evaluate", str(trained), "--data", str(external)])
    assert refused.exit_code == 2 and "Tuberculosis" in refused.output and "--drop-unknown" in refused.output
    kept = CliRunner().invoke(app, ["evaluate", str(trained), "--data", str(external), "--drop-unknown"])
    assert kept.exit_code == 0, kept.output
    assert "classes without external images" in " ".join(kept.output.split()) and "Normal" in kept.output
