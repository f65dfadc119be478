"""The run directory as a contract: declarations, one freshness mechanism, the config that belongs to the run,
stage order, older layouts, reproducibility by construction."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrbio.cli.app import app
from cxrbio.errors import ConfigError, CxrbioError
from cxrbio.run import freshness
from cxrbio.run.artifacts import ARTIFACTS, STAGES, command_for, downstream, stages_shaped_by
from cxrbio.run.rundir import RunDir, open_run
from tests.helpers import REPO, copy_run, make_config, scan

runner = CliRunner()


def test_every_artifact_is_declared_once_with_one_writing_stage():
    patterns = [a.pattern for a in ARTIFACTS.values()]
    assert len(patterns) == len(set(patterns))
    for artifact in ARTIFACTS.values():
        assert artifact.stage in STAGES, artifact.name
        for source in artifact.inputs:
            assert source in ARTIFACTS, (artifact.name, source)
    run = RunDir("/nowhere")
    assert run.output("train", "train_fold", strategy="scratch", fold=0) == Path("/nowhere/train/scratch/fold-0")
    with pytest.raises(RuntimeError, match="belongs to 'scan'"):
        run.output("masks", "manifest")  # a stage writes only its own artifacts


def test_no_module_builds_run_paths_by_hand():
    """Run paths come from the declarations: no literal run folder joined to a path outside rundir/freshness."""
    folders = {a.pattern.split("/", 1)[0] for a in ARTIFACTS.values()} - {"cache"}
    offenders = []
    for path in sorted((REPO / "src" / "cxrbio").rglob("*.py")):
        if path.name in ("rundir.py", "freshness.py", "artifacts.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant)
                    and node.right.value in folders):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} / {node.right.value!r}")
    assert offenders == []


def test_config_keys_shape_the_stages_they_should():
    # The lungs-removed retraining trains like train/ does: the same keys shape it.
    assert stages_shaped_by(["train.learning_rate"]) == {"train", "lungs_removed"}
    assert downstream({"train"}) == {"train", "embed", "analyze", "lungs_removed", "evaluate"}
    assert stages_shaped_by(["confounding.lungs_removed_box"]) == {"lungs_removed"}
    assert "scan" in stages_shaped_by(["data.image_size"]) and "masks" in stages_shaped_by(["data.image_size"])
    assert stages_shaped_by(["train.checkpoint_seconds", "name", "report.table_rows"]) == set()
    assert stages_shaped_by(["analysis.top_k"]) == {"analyze"}


def test_missing_stage_messages_come_from_the_declarations(scanned_phantom, tmp_path):
    run = str(copy_run(scanned_phantom, tmp_path / "run").root)
    embed = runner.invoke(app, ["embed", run])
    assert embed.exit_code == 2 and f"run '{command_for('train', run)}' first" in " ".join(embed.output.split())
    analyze = runner.invoke(app, ["analyze", run])
    assert analyze.exit_code == 2 and "cxrbio radiomics" in " ".join(analyze.output.split())
    status = runner.invoke(app, ["status", run])
    assert status.exit_code == 0 and "manifest.parquet" in status.output and "fresh" in status.output


def test_a_run_directory_of_an_older_release_is_refused_with_what_to_rerun(tmp_path):
    old = tmp_path / "old-run"
    old.mkdir()
    (old / "config.yaml").write_text("name: paper\n")
    pd.DataFrame({"image_id": ["a"]}).to_parquet(old / "manifest.parquet")
    with pytest.raises(CxrbioError, match="before layout 2") as caught:
        open_run(old)
    assert "cxrbio data scan DATA NEW_RUN" in caught.value.fix
    result = runner.invoke(app, ["embed", str(old)])
    assert result.exit_code == 2 and "before layout 2" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in old.iterdir()) == ["config.yaml", "manifest.parquet"]  # nothing written


def test_unknown_executor_and_bad_workers_are_one_line_errors_that_write_nothing(phantom_dir, tmp_path):
    result = runner.invoke(app, ["data", "scan", str(phantom_dir), str(tmp_path / "run"), "--executor", "dask"])
    assert result.exit_code == 2 and "unknown executor 'dask'" in result.output and "--executor local" in result.output
    assert not (tmp_path / "run").exists()
    result = runner.invoke(app, ["data", "scan", str(phantom_dir), str(tmp_path / "run"), "--workers", "0"])
    assert result.exit_code == 2 and "--workers must be at least 1" in result.output


def test_a_conflicting_config_is_refused_listing_the_keys_and_reconfigure_moves_what_they_shape_aside(
        phantom_dir, scanned_phantom, tmp_path):
    config = make_config(**{"train.learning_rate": 1e-4})
    run = copy_run(scanned_phantom, tmp_path / "run")
    assert open_run(run.root)[1] == config
    tree = config.model_dump(mode="json")
    for artifact, unit in (("train_fold", {"strategy": "scratch", "fold": 0}), ("masks", {}),
                           ("embeddings", {"strategy": "scratch", "fold": 0})):
        path = run.path(artifact, **unit)
        (path if ARTIFACTS[artifact].folder else path.parent).mkdir(parents=True, exist_ok=True)
        freshness.write_stamp(run, freshness.expected(run, artifact, tree, unit))
    before = run.config.read_text()
    other = tmp_path / "other.yaml"
    other.write_text("folds: {k: 3}\ndata: {image_size: 64}\ntrain: {learning_rate: 0.001}\n"
                     "confounding: {permutations: 99, forest_trees: 1}\nradiomics: {workers: 1}\n")  # FAST_CHECKS
    refused = runner.invoke(app, ["data", "scan", str(phantom_dir), str(run.root), "--config", str(other)])
    assert refused.exit_code == 2 and "train.learning_rate: 0.0001 -> 0.001" in " ".join(refused.output.split())
    assert run.config.read_text() == before and not list(run.root.glob("superseded-*"))
    forced = runner.invoke(app, ["data", "scan", str(phantom_dir), str(run.root), "--config", str(other), "--force"])
    assert forced.exit_code == 2 and "--reconfigure" in forced.output  # --force recomputes; it never changes the config
    assert run.config.read_text() == before and not list(run.root.glob("superseded-*"))
    forced = runner.invoke(app, ["data", "scan", str(phantom_dir), str(run.root), "--config", str(other), "--reconfigure"])
    assert forced.exit_code == 0, forced.output
    aside = list(run.root.glob("superseded-*"))
    assert len(aside) == 1
    # The training and what was computed from it moved; the masks (not shaped by training keys) stayed.
    assert (aside[0] / "train" / "scratch" / "fold-0").is_dir() and (aside[0] / "stamps" / "train").is_dir()
    assert (aside[0] / "stamps" / "embeddings").is_dir() and (aside[0] / "config.yaml").read_text() == before
    assert freshness.read_stamp(run.root, "masks", {}) is not None and not (run.root / "train").exists()
    assert open_run(run.root)[1].train.learning_rate == 0.001
    history = json.loads(run.info_file.read_text())["history"]
    assert history[-2]["event"] == "reconfigured" and history[-2]["changed"] == ["train.learning_rate"]


def test_an_evaluation_key_moves_the_metrics_aside_but_never_the_trained_folds(scanned_phantom, tmp_path):
    """Reconfiguration is per artifact: evaluation settings shape metrics (and the radiomics
    baseline's intervals), not models, so forcing one keeps every fold model for 'cxrbio train' to reuse."""
    from cxrbio.run import runconfig

    config = make_config()
    run = copy_run(scanned_phantom, tmp_path / "run")
    artifacts, stages = runconfig.affected_by(["evaluation.bootstrap"])
    assert {"metrics", "comparison", "analysis"} <= artifacts and "train_fold" not in artifacts
    assert "embeddings" not in runconfig.affected_by(["evaluation.temperature_scaling"])[0]
    tree = config.model_dump(mode="json")
    fold = {"strategy": "scratch", "fold": 0}
    run.path("train_fold", **fold).mkdir(parents=True)
    freshness.write_stamp(run, freshness.expected(run, "train_fold", tree, fold))
    run.path("metrics", strategy="scratch").parent.mkdir(parents=True)
    run.path("metrics", strategy="scratch").write_text("{}")
    changed = config.model_copy(update={"evaluation": config.evaluation.model_copy(update={"bootstrap": 200})})
    with pytest.raises(CxrbioError, match="evaluation.bootstrap"):
        runconfig.adopt(run, changed, stage="train")
    runconfig.adopt(run, changed, stage="train", reconfigure=True)
    aside = next(run.root.glob("superseded-*"))
    assert (aside / "metrics" / "scratch.json").is_file() and not run.path("metrics", strategy="scratch").exists()
    assert run.path("train_fold", **fold).is_dir()
    assert freshness.status(run, freshness.expected(run, "train_fold", changed.model_dump(mode="json"), fold)).fresh
    assert open_run(run.root)[1].evaluation.bootstrap == 200


def test_analysis_settings_may_differ_but_training_keys_may_not(scanned_phantom, tmp_path):
    from cxrbio.run import runconfig

    config = make_config()
    run = copy_run(scanned_phantom, tmp_path / "run")
    changed = config.model_copy(update={"analysis": config.analysis.model_copy(update={"top_k": 3})})
    used = runconfig.adopt(run, changed, stage="analyze")
    assert used.analysis.top_k == 3 and open_run(run.root)[1].analysis.top_k == 10  # the run's config is unchanged
    with pytest.raises(ConfigError, match="analysis.top_k"):
        runconfig.adopt(run, changed, stage="train")


def test_config_show_and_diff(phantom_dir, tmp_path):
    scan(phantom_dir, make_config(), tmp_path / "a")
    scan(phantom_dir, make_config(**{"folds.k": 2}), tmp_path / "b")
    shown = runner.invoke(app, ["config", "show", str(tmp_path / "a")])
    assert shown.exit_code == 0 and "image_size: 64" in shown.output and "scanned" in shown.output
    same = runner.invoke(app, ["config", "diff", str(tmp_path / "a"), str(tmp_path / "a" / "config.yaml")])
    assert same.exit_code == 0 and "the same" in same.output
    diff = runner.invoke(app, ["config", "diff", str(tmp_path / "a"), str(tmp_path / "b")])
    assert diff.exit_code == 1 and "folds.k" in diff.output and "1 key(s) differ" in diff.output


def test_fold_groups_and_the_inner_split_do_not_depend_on_the_salt_or_row_order(phantom_dir, tmp_path):
    from cxrbio.data.folds import inner_validation_split

    a = scan(phantom_dir, make_config(), tmp_path / "a").manifest.set_index("image_id")
    b = scan(phantom_dir, make_config(), tmp_path / "b").manifest.set_index("image_id").loc[a.index]
    assert not (a["patient_id"] == b["patient_id"]).any()  # other salts, other pseudonyms ...
    pd.testing.assert_series_equal(a["fold_group"], b["fold_group"])  # ... the same fold groups and folds
    pd.testing.assert_series_equal(a["fold"], b["fold"])
    rows = a[a["fold"] != 0]
    shuffled = rows.sample(frac=1.0, random_state=3)
    fit_a, val_a = inner_validation_split(rows["label"], rows["fold_group"], 0.15, 42)
    fit_b, val_b = inner_validation_split(shuffled["label"], shuffled["fold_group"], 0.15, 42)
    assert set(rows.index[val_a]) == set(shuffled.index[val_b]) and set(rows.index[fit_a]) == set(shuffled.index[fit_b])


@pytest.mark.slow  # trains networks
def test_new_user_sequence_keeps_the_runs_config_and_two_scans_train_identically(deterministic_fold, phantom_dir, tmp_path):
    """The one test of determinism. scan --config my.yaml (k=2, 32 px), then 'cxrbio train RUN --folds 0' with no config
    (the first run: the session's deterministic_fold): the run's own config and folds are used and kept; a second scan
    of the same data (another salt) trains to identical predictions (op determinism on)."""
    second = tmp_path / "second"
    scanned = runner.invoke(app, ["data", "scan", str(phantom_dir), str(second), "--config", str(deterministic_fold.config_file)])
    assert scanned.exit_code == 0, scanned.output
    trained = runner.invoke(app, ["train", str(second), "--folds", "0"])
    assert trained.exit_code == 0, trained.output
    runs = [RunDir(deterministic_fold.root), RunDir(second)]
    for run, before in ((runs[0], deterministic_fold.config_before_train), (runs[1], None)):
        out = run.root
        if before is not None:
            assert (out / "config.yaml").read_text() == before  # never rewritten by train
        assert sorted(p.name for p in (out / "train" / "scratch").iterdir()) == ["fold-0"]
        import keras

        model = keras.models.load_model(out / "train" / "scratch" / "fold-0" / "model.keras", compile=False)
        assert tuple(model.inputs[0].shape[1:3]) == (32, 32)  # the run's 32 px, not the study's 200
        assert sorted(pd.read_parquet(out / "manifest.parquet").query("included")["fold"].unique()) == [0, 1]  # k = 2
    first, second_predictions = (pd.read_parquet(r.path("train_fold", strategy="scratch", fold=0) / "predictions.parquet")
                                 .sort_values("image_id").reset_index(drop=True) for r in runs)
    assert runs[0].salt.read_text() != runs[1].salt.read_text()
    np.testing.assert_array_equal(first.filter(like="p_").to_numpy(), second_predictions.filter(like="p_").to_numpy())
    stamps = [json.loads(freshness.stamp_path(r.root, "train_fold", {"strategy": "scratch", "fold": 0}).read_text())
              for r in runs]
    assert stamps[0]["info"]["val_images"] == stamps[1]["info"]["val_images"]


@pytest.mark.slow  # needs trained networks (the session's shared run: scanned and trained through the library)
def test_every_stage_runs_from_python_and_every_file_is_a_declared_artifact(trained_run, tmp_path):
    from cxrbio import stages

    scanned, trained, events = trained_run.scanned, trained_run.trained, trained_run.events
    assert scanned.fold_error is None and len(scanned.manifest) == 56
    assert set(trained.metrics) == {"scratch"} and trained.trained == [("scratch", 0), ("scratch", 1)]
    run = copy_run(trained_run.root, tmp_path / "run").root
    embedded = stages.embed.run(run)
    assert embedded.dims == {"scratch": 1280}
    masks = stages.masks.run(run)
    assert set(masks.table["mask_source"]) == {"column"}
    features = stages.radiomics.run(run)
    assert (features.status["status"] == "ok").all()
    analysis = stages.analyze.run(run)
    assert set(analysis.candidates) == {"radiomics", "scratch"}
    report = stages.report.run(run, out=tmp_path / "r.html")
    assert report.path.is_file() and report.missing == []
    assert any(e.task == "epochs" for e in events) and any(e.is_line for e in events)
    # Everything written is declared: each file lies under a declared artifact (or the stamps).
    declared = [ARTIFACTS[a].pattern.split("/{")[0].split("{")[0] for a in ARTIFACTS]
    for path in run.rglob("*"):
        if path.is_file():
            relative = path.relative_to(run).as_posix()
            assert relative.startswith("stamps/") or any(relative.startswith(d) for d in declared), relative
    # And every stamp is fresh: a second pass of every stage does nothing.
    assert stages.train.run(run).trained == [] and stages.embed.run(run).written == {}
    assert stages.masks.run(run).up_to_date and stages.radiomics.run(run).up_to_date
    assert set(stages.analyze.run(run).skipped) == {"radiomics", "scratch"}
    shutil.rmtree(run / "stamps" / "embeddings")
    assert stages.embed.run(run).written == {"scratch": [0, 1]}  # no stamp: not current, redone


def test_a_unit_made_from_an_input_that_has_since_changed_is_stale_and_names_its_stage(scanned_phantom, tmp_path):
    config = make_config()
    run = copy_run(scanned_phantom, tmp_path / "run")
    tree = config.model_dump(mode="json")
    fold = {"strategy": "scratch", "fold": 0}
    freshness.write_stamp(run, freshness.expected(run, "train_fold", tree, fold), digest="model-1")
    freshness.write_stamp(run, freshness.expected(run, "embeddings", tree, fold))
    assert freshness.stale_inputs(run, "analysis", tree, {"strategy": "scratch"}) == []
    freshness.write_stamp(run, freshness.expected(run, "train_fold", tree, fold), digest="model-2")  # retrained
    status = freshness.status(run, freshness.expected(run, "embeddings", tree, fold))
    assert status.state == "stale" and "train/scratch/fold-0" in status.reason
    stale = freshness.stale_inputs(run, "analysis", tree, {"strategy": "scratch"})
    assert stale == [("embeddings/scratch/fold-0.parquet", "embed", status.reason)]
