"""Cross-validated training on tiny images: splits, resume, outputs, metrics, executors, CLI.

The tests that train are marked slow; those that read the folds or refuse before training are not.
"""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from cxrbio.errors import DataError
from cxrbio.run import freshness
from cxrbio.run.rundir import RunDir
from tests.helpers import copy_run, scanned, tiny_config

keras = pytest.importorskip("keras")


@pytest.fixture
def scanned_run(scanned_tiny):
    """The session's phantom scanned with tiny_config (read only; tests that write copy it)."""
    return scanned_tiny


def fold_done(run, strategy, fold):
    return freshness.read_stamp(run.root, "train_fold", {"strategy": strategy, "fold": fold}) is not None


def test_splits_keep_test_fold_out_of_training_and_validation(scanned_run):
    from cxrbio.training.data import load_training_data, split_fold

    cfg = tiny_config()
    data = load_training_data(RunDir(scanned_run), cfg)
    seen_test = []
    for fold in data.folds:
        fit, val, test = split_fold(data, fold, cfg)
        assert set(fit).isdisjoint(val) and set(fit).isdisjoint(test) and set(val).isdisjoint(test)
        assert len(fit) + len(val) + len(test) == len(data.manifest)
        groups = data.manifest["fold_group"].to_numpy()
        assert set(groups[test]).isdisjoint(groups[fit]) and set(groups[test]).isdisjoint(groups[val])
        assert set(groups[val]).isdisjoint(groups[fit])  # validation patients are not fitted on either
        seen_test.extend(test)
    assert sorted(seen_test) == list(range(len(data.manifest)))  # every image tested exactly once


def test_leave_one_source_out_folds(scanned_run):
    from cxrbio.data.folds import outer_folds

    manifest = pd.read_parquet(scanned_run / "manifest.parquet")
    included = manifest[manifest["included"]].reset_index(drop=True)
    rank = included.groupby("label")["fold_group"].rank(method="dense").astype(int)
    included["source"] = np.where(rank % 2 == 0, "site-a", "site-b")  # within each class, patients alternate sites
    folds = outer_folds(included, "leave-one-source-out")
    assert [f.name for f in folds] == ["site-a", "site-b"]
    assert folds[0].test.sum() + folds[1].test.sum() == len(included)
    # The degenerate case: a class from one source only is never seen in training when that source is held out.
    included.loc[included["label"] == "Normal", "source"] = "site-a"
    with pytest.raises(DataError, match=r"cannot test Normal \(only from 'site-a'\)"):
        outer_folds(included, "leave-one-source-out")


@pytest.mark.slow  # trains networks
def test_an_interrupted_fold_resumes_to_the_same_result_with_dense_or_sparse_checkpoints(deterministic_fold, tmp_path):
    """The one test of resuming: op determinism on, a fold killed after its first epoch resumes from its checkpoint
    (checkpoint after every epoch) or, with checkpoints only after the last epoch, is recomputed from the start;
    both give the numbers of the uninterrupted fold (the session's deterministic_fold, trained by ``cxrbio train``)."""
    from cxrbio.config import load_config
    from cxrbio.runtime import backend
    from cxrbio.training.data import load_training_data
    from cxrbio.training.fold_trainer import FoldTrainer
    from tests.helpers import scanned_copy

    reference = RunDir(deterministic_fold.root)
    cfg = load_config(reference.config)
    assert cfg.train.deterministic and cfg.train.epochs == 2
    dense = cfg.model_copy(update={"train": cfg.train.model_copy(update={"checkpoint_seconds": 0})})
    backend.configure(cfg)
    expected = pd.read_parquet(reference.path("train_fold", strategy="scratch", fold=0) / "predictions.parquet")
    # Dense checkpoints: resumed from epoch 1.
    broken = scanned_copy(reference.root, tmp_path / "broken")
    data = load_training_data(broken, cfg)
    fold = data.folds[0]
    assert FoldTrainer(broken, dense, data, "scratch", fold, stop_after_epochs=1).train() == "interrupted"
    out = broken.path("train_fold", strategy="scratch", fold=0)
    assert (out / "state.json").is_file() and not fold_done(broken, "scratch", 0)
    assert json.loads((out / "state.json").read_text())["next_epoch"] == 1
    assert FoldTrainer(broken, dense, data, "scratch", fold).train() == "trained"
    b = pd.read_parquet(out / "predictions.parquet")
    np.testing.assert_allclose(expected.filter(like="p_").to_numpy(), b.filter(like="p_").to_numpy(), rtol=1e-5, atol=1e-6)
    assert pd.read_csv(out / "history.csv")["epoch"].tolist() == [0, 1]
    assert not list(out.glob("checkpoint-*")) and (out / "model.keras").is_file()
    assert FoldTrainer(broken, dense, data, "scratch", fold).train() == "done"  # stamped folds are skipped
    # Sparse checkpoints (only after the last epoch): a kill loses the epochs since; they are recomputed identically.
    lost = scanned_copy(reference.root, tmp_path / "lost")
    assert FoldTrainer(lost, cfg, data, "scratch", fold, stop_after_epochs=1).train() == "interrupted"
    assert not (lost.path("train_fold", strategy="scratch", fold=0) / "state.json").exists()  # nothing saved yet
    FoldTrainer(lost, cfg, data, "scratch", fold).train()
    c = pd.read_parquet(lost.path("train_fold", strategy="scratch", fold=0) / "predictions.parquet")
    np.testing.assert_allclose(expected.filter(like="p_").to_numpy(), c.filter(like="p_").to_numpy(), rtol=1e-5, atol=1e-6)


def test_train_on_a_new_run_scans_it_first_and_marks_unreachable_weights_skipped(phantom_dir, tmp_path):
    """No network is trained: offshelf has no weights here, so it is skipped (said in every output) or refused."""
    from typer.testing import CliRunner

    from cxrbio.cli.app import app

    run = RunDir(tmp_path / "run")
    config_path = tmp_path / "tiny.yaml"
    missing = tmp_path / "absent.weights.h5"  # unreachable weights on any machine (ImageNet's can be downloaded)
    config_path.write_text(f"data: {{image_size: 32}}\nfolds: {{k: 3}}\nmodel: {{alpha: 0.35, dense_units: 16, weights: '{missing}'}}\n"
                           "train: {strategies: [offshelf]}\nconfounding: {permutations: 99, forest_trees: 1}\n")
    result = CliRunner().invoke(app, ["train", str(run.root), "--config", str(config_path), "--data",
                                      str(phantom_dir), "--skip-unavailable"])  # a new run: scanned first
    assert result.exit_code == 0, result.output
    assert run.manifest.is_file() and "No strategy has all its folds finished yet" in result.output
    skipped = json.loads(run.path("metrics", strategy="offshelf").read_text())
    assert skipped["status"] == "skipped" and run.path("train_skipped", strategy="offshelf").is_file()
    assert not run.path("train_fold", strategy="offshelf", fold=0).exists()
    # Without --skip-unavailable the missing weights are an error naming the remedies.
    again = CliRunner().invoke(app, ["train", str(run.root)])
    assert again.exit_code == 2 and "offshelf" in again.output and "fix:" in again.output


@pytest.mark.slow  # trains a network
def test_train_command_writes_every_output(trained_run, tmp_path):
    """The shared trained run with fold 1 set aside: ``cxrbio train`` trains it again and writes the metrics."""
    from typer.testing import CliRunner

    from cxrbio.cli.app import app

    run = copy_run(trained_run.root, tmp_path / "run")
    shutil.rmtree(run.path("train_fold", strategy="scratch", fold=1))
    freshness.remove_stamp(run, "train_fold", {"strategy": "scratch", "fold": 1})
    run.path("metrics", strategy="scratch").unlink()
    result = CliRunner().invoke(app, ["train", str(run.root)])
    assert result.exit_code == 0, result.output
    assert "1 fold(s) already finished" in result.output and "scratch fold 1: trained" in result.output
    for fold in range(2):
        out = run.path("train_fold", strategy="scratch", fold=fold)
        assert {"model.keras", "history.csv", "predictions.parquet", "validation.parquet", "summary.json"} <= {
            p.name for p in out.iterdir()}
        assert fold_done(run, "scratch", fold)
        # Temperature scaling fits on the inner validation patients: none of them is in the test fold.
        validation = pd.read_parquet(out / "validation.parquet")
        tested = pd.read_parquet(out / "predictions.parquet")
        assert len(validation) and set(validation["patient_id"]).isdisjoint(tested["patient_id"])
    metrics = json.loads(run.path("metrics", strategy="scratch").read_text())
    predictions = pd.concat(pd.read_parquet(run.path("train_fold", strategy="scratch", fold=f) / "predictions.parquet")
                            for f in range(2))
    assert metrics["pooled"]["n"] == len(predictions) == predictions["image_id"].nunique()
    assert metrics["pooled"]["accuracy"] == pytest.approx((predictions["true"] == predictions["predicted"]).mean())
    lo, hi = metrics["ci95"]["accuracy"]
    assert lo <= metrics["pooled"]["accuracy"] <= hi
    assert metrics["calibration"]["temperature"]["status"] == "fitted" and "scaled" in metrics["calibration"]
    assert metrics["fold_count"]["accuracy"] == 2 and len(metrics["fold_range"]["accuracy"]) == 2
    assert "mean over folds ± SD" in " ".join(result.output.split())


@pytest.mark.slow  # trains a network, starts Ray
def test_ray_executor_matches_in_process(trained_run, ray_instance, tmp_path):
    """Fold 1 trained again as a Ray task; the shared run's fold 1 (trained in this process) is the reference."""
    from cxrbio.runtime.executors import RayExecutor
    from cxrbio.stages import train

    remote = copy_run(trained_run.root, tmp_path / "ray")
    shutil.rmtree(remote.path("train_fold", strategy="scratch", fold=1))
    freshness.remove_stamp(remote, "train_fold", {"strategy": "scratch", "fold": 1})
    done = train.run(remote.root, folds=[1], executor=RayExecutor())
    assert done.trained == [("scratch", 1)] and fold_done(remote, "scratch", 1)
    local = RunDir(trained_run.root)
    a = pd.read_parquet(local.path("train_fold", strategy="scratch", fold=1) / "predictions.parquet")
    b = pd.read_parquet(remote.path("train_fold", strategy="scratch", fold=1) / "predictions.parquet")
    pd.testing.assert_series_equal(a["image_id"], b["image_id"])
    # Another process is not bitwise identical (oneDNN's summation order varies; seen up to 3.6e-5
    # after 2 epochs), so: same classes, probabilities equal up to float round-off.
    pd.testing.assert_series_equal(a["predicted"], b["predicted"])
    np.testing.assert_allclose(a.filter(like="p_").to_numpy(), b.filter(like="p_").to_numpy(), atol=1e-3)


def frozen_cache_setup(scanned_run, tmp_path, strategy):
    """A weights file made here, a config with the frozen-feature cache on, and the run's data."""
    from cxrbio.models.weights import load_backbone
    from cxrbio.runtime import backend
    from cxrbio.training.data import load_training_data

    weights = tmp_path / "backbone.weights.h5"
    load_backbone(32, 0.35, None).save_weights(weights)
    cfg = tiny_config(model__weights=str(weights), train__augment_frozen=False, train__strategies=[strategy])
    backend.configure(cfg)
    run = copy_run(scanned_run, tmp_path / "run")
    return weights, cfg, run, load_training_data(run, cfg)


@pytest.mark.slow  # trains networks
def test_frozen_feature_cache_trains_the_head_only_and_saves_a_full_model(scanned_run, tmp_path):
    from cxrbio.models.weights import load_backbone
    from cxrbio.training.fold_trainer import FoldTrainer

    weights, cfg, run, data = frozen_cache_setup(scanned_run, tmp_path, "offshelf")
    broken = FoldTrainer(run, cfg, data, "offshelf", data.folds[0], stop_after_epochs=1)
    assert broken.train() == "interrupted"
    assert FoldTrainer(run, cfg, data, "offshelf", data.folds[0]).train() == "trained"
    assert len(list(run.cache.glob("frozen-gap-*.npy"))) == 1  # computed once, reused on resume
    out = run.path("train_fold", strategy="offshelf", fold=0)
    model = keras.models.load_model(out / "model.keras")
    assert model.get_layer("mobilenetv2") is not None  # the full network, ready for embedding
    reference = load_backbone(32, 0.35, str(weights))
    for a, b in zip(reference.get_weights(), model.get_layer("mobilenetv2").get_weights()):
        np.testing.assert_array_equal(a, b)  # backbone untouched
    # The saved full model predicts exactly what the head predicted on the cached features.
    predictions = pd.read_parquet(out / "predictions.parquet")
    test_rows = np.flatnonzero(data.folds[0].test)
    full = model.predict(data.images[test_rows][..., None].astype("float32"), verbose=0)
    np.testing.assert_allclose(full, predictions.filter(like="p_").to_numpy(), rtol=1e-4, atol=1e-5)
    # And resuming gave the uninterrupted result.
    straight = copy_run(scanned_run, tmp_path / "straight")
    FoldTrainer(straight, cfg, data, "offshelf", data.folds[0]).train()
    again = pd.read_parquet(straight.path("train_fold", strategy="offshelf", fold=0) / "predictions.parquet")
    np.testing.assert_allclose(again.filter(like="p_").to_numpy(), predictions.filter(like="p_").to_numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # trains a network
def test_disk_full_mid_fold_keeps_the_run_resumable(phantom_dir, tmp_path, monkeypatch):
    import errno

    from typer.testing import CliRunner

    import cxrbio.run.fold_files as train_module
    from cxrbio.cli.app import app

    run = scanned(phantom_dir, tmp_path / "run", tiny_config(train__epochs=2, train__checkpoint_seconds=0))
    real_write = train_module.atomic_write
    calls = {"n": 0}

    def full_disk(path, write):
        calls["n"] += 1
        if path.name.startswith("checkpoint-1"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_write(path, write)

    monkeypatch.setattr(train_module, "atomic_write", full_disk)
    result = CliRunner().invoke(app, ["train", str(run.root), "--folds", "0"])
    assert result.exit_code == 2 and "disk full" in result.output and "run the same command again" in result.output
    out = run.path("train_fold", strategy="scratch", fold=0)
    assert json.loads((out / "state.json").read_text())["next_epoch"] == 1  # epoch 0 is safe
    assert not list(out.glob(".tmp-*"))  # no half-written files left behind
    monkeypatch.setattr(train_module, "atomic_write", real_write)
    result = CliRunner().invoke(app, ["train", str(run.root), "--folds", "0"])
    assert result.exit_code == 0, result.output
    assert fold_done(run, "scratch", 0) and pd.read_csv(out / "history.csv")["epoch"].tolist() == [0, 1]


@pytest.mark.slow  # trains a network
def test_frozen_feature_cache_for_finetune_trains_only_the_top_blocks(scanned_run, tmp_path):
    from cxrbio.models.weights import load_backbone
    from cxrbio.training.fold_trainer import FoldTrainer

    weights, cfg, run, data = frozen_cache_setup(scanned_run, tmp_path, "finetune-2")
    assert FoldTrainer(run, cfg, data, "finetune-2", data.folds[0], stop_after_epochs=1).train() == "interrupted"
    assert FoldTrainer(run, cfg, data, "finetune-2", data.folds[0]).train() == "trained"
    assert len(list(run.cache.glob("frozen-block_14_add-*.npy"))) == 1  # cut below blocks 15-16
    out = run.path("train_fold", strategy="finetune-2", fold=0)
    model = keras.models.load_model(out / "model.keras")
    reference = load_backbone(32, 0.35, str(weights))
    changed = {layer.name for layer in reference.layers if layer.weights and any(
        not np.array_equal(a, b) for a, b in zip(layer.get_weights(), model.get_layer("mobilenetv2").get_layer(layer.name).get_weights()))}
    assert changed and all(name.startswith(("block_15_", "block_16_", "Conv_1")) for name in changed)
    predictions = pd.read_parquet(out / "predictions.parquet")
    test_rows = np.flatnonzero(data.folds[0].test)
    full = model.predict(data.images[test_rows][..., None].astype("float32"), verbose=0)
    np.testing.assert_allclose(full, predictions.filter(like="p_").to_numpy(), rtol=1e-4, atol=1e-5)
