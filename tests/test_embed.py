"""Embedding export: equal to a direct model call, one out-of-fold row per image, resumable, clear errors."""

import logging
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrbio.cli.app import app
from cxrbio.config import load_config
from cxrbio.errors import DataError
from cxrbio.run import freshness
from cxrbio.run.embedding_files import read_out_of_fold
from cxrbio.run.fold_files import register_fold_model
from cxrbio.run.rundir import RunDir
from cxrbio.stages import embed
from tests.helpers import EMBED_TINY as TINY
from tests.helpers import copy_run, fold_model, scan, untrained_fold_models

keras = pytest.importorskip("keras")


def test_embeddings_equal_a_direct_model_call_and_every_image_has_one_out_of_fold_row(embedded_run):
    """On the shared run that ``cxrbio embed`` exported (conftest: embedded_run; read only)."""
    from cxrbio.data.input_pipeline import load_letterboxed
    from cxrbio.features.embedding import embedding_columns

    run = RunDir(embedded_run)
    manifest = run.read_manifest()
    included = manifest[manifest["included"]]
    for strategy in ("scratch", "finetune-2"):
        oof = read_out_of_fold(run, strategy, expected=included["image_id"])
        assert len(oof) == len(included) and oof["image_id"].is_unique
        # Each image's out-of-fold row comes from the fold that held it out in training.
        assert (oof.set_index("image_id")["fold"] == included.set_index("image_id")["fold"].loc[oof["image_id"]].to_numpy()).all()
    fold0 = pd.read_parquet(run.path("embeddings", strategy="scratch", fold=0))
    assert list(fold0.columns[:2]) == ["image_id", "split"] and fold0.shape[1] == 2 + 1280
    assert len(fold0) == len(included)
    assert set(fold0.loc[fold0["split"] == "test", "image_id"]) == set(included.loc[included["fold"] == 0, "image_id"])
    # Independently: letterbox the files, call the saved model cut at its GAP layer.
    model = keras.models.load_model(run.path("train_fold", strategy="scratch", fold=0) / "model.keras", compile=False)
    gap = keras.Model(model.inputs[0], model.get_layer("gap").output)
    rows = fold0.set_index("image_id").loc[included["image_id"].iloc[:10]]
    images = np.stack([load_letterboxed((p, 32)) for p in included["path"].iloc[:10]]).astype(np.float32)[..., None]
    direct = np.asarray(gap(images, training=False))
    assert direct.std() > 1e-3  # a test that could fail: the vectors vary
    np.testing.assert_allclose(rows[embedding_columns(1280)].to_numpy(), direct, rtol=1e-4, atol=1e-5)


def test_current_embeddings_are_kept_and_a_changed_model_is_re_exported(fake_trained_run, tmp_path):
    run = copy_run(fake_trained_run, tmp_path / "run")
    config = load_config(run.config)
    first = embed.run(run.root, strategies=["scratch"])
    assert first.written == {"scratch": [0, 1, 2]} and first.dims == {"scratch": 1280}
    again = embed.run(run.root, strategies=["scratch"])
    assert again.written == {} and again.up_to_date == {"scratch": [0, 1, 2]}
    before = pd.read_parquet(run.path("embeddings", strategy="scratch", fold=1))
    register_fold_model(run, config, "scratch", 1, fold_model(config, seed=99))  # a retrained fold
    third = embed.run(run.root, strategies=["scratch"])
    assert third.written == {"scratch": [1]}
    after = pd.read_parquet(run.path("embeddings", strategy="scratch", fold=1))
    assert not np.allclose(before.filter(like="e0").to_numpy(), after.filter(like="e0").to_numpy())


def test_missing_folds_are_reported_and_duplicate_out_of_fold_rows_refused(fake_trained_run, tmp_path, caplog):
    run = copy_run(fake_trained_run, tmp_path / "run")
    freshness.remove_stamp(run, "train_fold", {"strategy": "finetune-2", "fold": 2})  # never finished
    with caplog.at_level(logging.INFO, logger="cxrbio"):
        summary = embed.run(run.root)  # no progress callback: a library caller hears it through logging
    assert summary.missing_folds == {"finetune-2": [2]} and "finetune-2" not in summary.dims
    assert ("cxrbio.stages.embed", logging.WARNING, "finetune-2 fold 2: not trained") in [
        (r.name, r.levelno, r.getMessage()) for r in caplog.records]
    with pytest.raises(DataError, match="miss"):
        read_out_of_fold(run, "finetune-2", expected=run.read_manifest().query("included")["image_id"])
    # A second export of fold 0 under another fold number: two out-of-fold rows per image.
    source = run.path("embeddings", strategy="scratch", fold=0)
    shutil.copyfile(source, run.path("embeddings", strategy="scratch", fold=7))
    stamp = freshness.read_stamp(run.root, "embeddings", {"strategy": "scratch", "fold": 0})
    shutil.copyfile(freshness.stamp_path(run.root, "embeddings", stamp.unit),
                    freshness.stamp_path(run.root, "embeddings", {"strategy": "scratch", "fold": 7}))
    (freshness.stamp_path(run.root, "embeddings", {"strategy": "scratch", "fold": 7})).write_text(
        freshness.stamp_path(run.root, "embeddings", stamp.unit).read_text().replace('"fold": 0', '"fold": 7'))
    with pytest.raises(DataError, match="more than one out-of-fold"):
        read_out_of_fold(run, "scratch")


def test_a_run_without_trained_models_names_the_command_to_run(phantom_dir, tmp_path):
    config = load_config(None, TINY)
    scan(phantom_dir, config, tmp_path / "run")
    result = CliRunner().invoke(app, ["embed", str(tmp_path / "run")])
    assert result.exit_code == 2 and "has no trained fold models" in result.output
    assert f"cxrbio train {tmp_path / 'run'}" in " ".join(result.output.split())
    not_a_run = CliRunner().invoke(app, ["embed", str(tmp_path)])
    assert not_a_run.exit_code == 2 and "not a cxrbio run directory" in not_a_run.output
    untrained_fold_models(RunDir(tmp_path / "run"), config, strategies=("scratch",))
    unknown = CliRunner().invoke(app, ["embed", str(tmp_path / "run"), "--strategies", "offshelf"])
    assert unknown.exit_code == 2 and "no trained folds for offshelf" in unknown.output
