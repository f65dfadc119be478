"""Embedding export: equal to a direct model call, one out-of-fold row per image, resumable, clear errors."""

import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrbio.cli import app
from cxrbio.config import load_config, save_config
from cxrbio.data.scan import scan
from cxrbio.embed import embed_run, read_out_of_fold
from cxrbio.errors import DataError
from cxrbio.rundir import RunDir
from cxrbio.atomic import atomic_write_text

keras = pytest.importorskip("keras")

TINY = {"data.image_size": 32, "folds.k": 3, "model.alpha": 0.35, "model.dense_units": 8, "model.batchnorm_momentum": 0.01,
        "train.strategies": ["scratch"], "train.batch_size": 16}


def fold_model(config, seed: int):
    """A network as training leaves it, minus the training: random weights, and BatchNorm statistics
    taken from one batch (with the initial statistics every GAP value is ~1e-13, too flat to test)."""
    from cxrbio.models.mobilenet import build_model
    from cxrbio.models.strategies import Strategy

    model = build_model(len(config.data.classes), config.data.image_size, config.model, Strategy.parse("scratch"), seed=seed)
    batch = np.random.default_rng(seed).uniform(0, 255, (16, config.data.image_size, config.data.image_size, 1))
    model(batch.astype(np.float32), training=True)
    return model


def untrained_fold_models(run: RunDir, config, strategies=("scratch", "finetune-2")) -> None:
    """What 'cxrbio train' leaves per fold (model.keras + DONE), without training: embedding export
    does not care how the weights were reached, and this takes seconds."""
    for fold in range(config.folds.k):
        model = fold_model(config, seed=fold)
        for strategy in strategies:
            out = run.train_fold(strategy, fold)
            out.mkdir(parents=True, exist_ok=True)
            model.save(out / "model.keras")
            atomic_write_text(out / "DONE", "{}\n")


@pytest.fixture(scope="module")
def fake_trained_run(phantom_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("embed-run")
    config = load_config(None, TINY)
    scan(phantom_dir, config, root)
    untrained_fold_models(RunDir(root), config)
    return root


def copy_run(src, dst):
    shutil.copytree(src, dst)
    return RunDir(dst)


def test_embeddings_equal_a_direct_model_call_and_every_image_has_one_out_of_fold_row(fake_trained_run, tmp_path):
    from cxrbio.data.pipeline import load_letterboxed
    from cxrbio.embed import embedding_columns

    run = copy_run(fake_trained_run, tmp_path / "run")
    result = CliRunner().invoke(app, ["embed", str(run.root)])
    assert result.exit_code == 0, result.output
    manifest = run.read_manifest()
    included = manifest[manifest["included"]]
    for strategy in ("scratch", "finetune-2"):
        oof = read_out_of_fold(run, strategy, expected=included["image_id"])
        assert len(oof) == len(included) and oof["image_id"].is_unique
        # Each image's out-of-fold row comes from the fold that held it out in training.
        assert (oof.set_index("image_id")["fold"] == included.set_index("image_id")["fold"].loc[oof["image_id"]].to_numpy()).all()
    fold0 = pd.read_parquet(run.embeddings("scratch", 0))
    assert list(fold0.columns[:2]) == ["image_id", "split"] and fold0.shape[1] == 2 + 1280
    assert len(fold0) == len(included)
    assert set(fold0.loc[fold0["split"] == "test", "image_id"]) == set(included.loc[included["fold"] == 0, "image_id"])
    # Independently: letterbox the files, call the saved model cut at its GAP layer.
    model = keras.models.load_model(run.train_fold("scratch", 0) / "model.keras", compile=False)
    gap = keras.Model(model.inputs[0], model.get_layer("gap").output)
    rows = fold0.set_index("image_id").loc[included["image_id"].iloc[:10]]
    images = np.stack([load_letterboxed((p, 32)) for p in included["path"].iloc[:10]]).astype(np.float32)[..., None]
    direct = np.asarray(gap(images, training=False))
    assert direct.std() > 1e-3  # a test that could fail: the vectors vary
    np.testing.assert_allclose(rows[embedding_columns(1280)].to_numpy(), direct, rtol=1e-4, atol=1e-5)


def test_current_embeddings_are_kept_and_a_changed_model_is_re_exported(fake_trained_run, tmp_path):
    run = copy_run(fake_trained_run, tmp_path / "run")
    config = load_config(None, TINY)
    first = embed_run(run, config, strategies=["scratch"])
    assert first.written == {"scratch": [0, 1, 2]} and first.dims == {"scratch": 1280}
    again = embed_run(run, config, strategies=["scratch"])
    assert again.written == {} and again.up_to_date == {"scratch": [0, 1, 2]}
    before = pd.read_parquet(run.embeddings("scratch", 1))
    other = fold_model(config, seed=99)
    other.save(run.train_fold("scratch", 1) / "model.keras")  # a retrained fold
    third = embed_run(run, config, strategies=["scratch"])
    assert third.written == {"scratch": [1]}
    after = pd.read_parquet(run.embeddings("scratch", 1))
    assert not np.allclose(before.filter(like="e0").to_numpy(), after.filter(like="e0").to_numpy())


def test_missing_folds_are_reported_and_duplicate_out_of_fold_rows_refused(fake_trained_run, tmp_path):
    run = copy_run(fake_trained_run, tmp_path / "run")
    (run.train_fold("finetune-2", 2) / "DONE").unlink()
    config = load_config(None, TINY)
    summary = embed_run(run, config)
    assert summary.missing_folds == {"finetune-2": [2]} and "finetune-2" not in summary.dims
    with pytest.raises(DataError, match="miss"):
        read_out_of_fold(run, "finetune-2", expected=run.read_manifest().query("included")["image_id"])
    shutil.copyfile(run.embeddings("scratch", 0), run.embeddings("scratch", 0).with_name("fold-7.parquet"))
    with pytest.raises(DataError, match="more than one out-of-fold"):
        read_out_of_fold(run, "scratch")


def test_a_run_without_trained_models_names_the_command_to_run(phantom_dir, tmp_path):
    config = load_config(None, TINY)
    scan(phantom_dir, config, tmp_path / "run")
    result = CliRunner().invoke(app, ["embed", str(tmp_path / "run")])
    assert result.exit_code == 2 and "no trained models" in result.output and "cxrbio train --out" in result.output
    not_a_run = CliRunner().invoke(app, ["embed", str(tmp_path)])
    assert not_a_run.exit_code == 2 and "not a cxrbio run directory" in not_a_run.output
    save_config(config, tmp_path / "run" / "config.yaml")
    unknown = CliRunner().invoke(app, ["embed", str(tmp_path / "run"), "--strategies", "offshelf"])
    assert unknown.exit_code == 2
