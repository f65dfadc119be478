"""Freshness on content: a weights file, a mask file, the radiomics parameter file or an external image replaced in
place makes the units made from it stale (``cxrbio status`` names it, the next command redoes them); a ``touch``
alone does not; ``cxrbio evaluate`` refuses stale fold models."""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxrbio.cli.app import app
from cxrbio.config import load_config
from cxrbio.run import freshness
from cxrbio.run.digests import file_digest
from cxrbio.run.rundir import RunDir
from tests.helpers import FAST_PARAMS, scanned, tiny_config, untrained_fold_models

keras = pytest.importorskip("keras")


def touch_later(path) -> None:
    """A new modification time, the content untouched (what ``touch`` does)."""
    later = time.time() + 5
    os.utime(path, (later, later))


def unit_states(run: RunDir) -> dict[str, tuple[str, str]]:
    from cxrbio.report.contents import unit_states as states

    return {u.label: (u.state, u.reason) for u in states(run, load_config(run.config))}


def save_backbone(path, seed: int) -> None:
    from cxrbio.models.weights import load_backbone

    keras.utils.set_random_seed(seed)
    load_backbone(32, 0.35, None).save_weights(path)


@pytest.fixture
def weights_run(phantom_dir, tmp_path):
    """A scanned run whose offshelf and scratch folds are registered (untrained), with a weights file made here."""
    weights = tmp_path / "backbone.weights.h5"
    save_backbone(weights, seed=1)
    config = tiny_config(model__weights=str(weights), train__strategies=["scratch", "offshelf"], folds__k=2)
    run = scanned(phantom_dir, tmp_path / "run", config)
    untrained_fold_models(run, config, strategies=("scratch", "offshelf"))
    return run, weights


def test_digests_follow_content_not_modification_time(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"first")
    first = file_digest(path)
    touch_later(path)
    assert file_digest(path) == first
    path.write_bytes(b"other")
    assert file_digest(path) != first
    assert file_digest(tmp_path / "absent") == "missing"


def test_a_replaced_weights_file_makes_the_pretrained_folds_stale_and_a_touch_does_not(weights_run):
    run, weights = weights_run
    fold_units = [f"train/{s}/fold-{k}" for s in ("scratch", "offshelf") for k in (0, 1)]
    assert all(unit_states(run)[u][0] == "fresh" for u in fold_units)
    touch_later(weights)
    assert all(unit_states(run)[u][0] == "fresh" for u in fold_units)
    save_backbone(weights, seed=2)  # the same path, other weights
    states = unit_states(run)
    for fold in (0, 1):
        state, reason = states[f"train/offshelf/fold-{fold}"]
        assert state == "stale" and f"model.weights changed: {weights}" in reason
        assert states[f"train/scratch/fold-{fold}"][0] == "fresh"  # scratch reads no weights
    shown = CliRunner().invoke(app, ["status", str(run.root)])
    assert shown.exit_code == 0 and "model.weights changed" in " ".join(shown.output.split())


def test_evaluate_refuses_stale_fold_models_naming_cxrbio_train(weights_run, phantom_dir):
    run, weights = weights_run
    save_backbone(weights, seed=3)
    result = CliRunner().invoke(app, ["evaluate", str(run.root), "--data", str(phantom_dir), "--strategies", "offshelf"])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "offshelf fold 0 is stale" in text and "model.weights changed" in text
    assert f"cxrbio train {run.root}" in text and "Traceback" not in result.output
    assert not run.path("external_manifest", name=phantom_dir.name).exists()  # refused before any work


@pytest.fixture
def masked_phantom_run(phantom_dir, tmp_path):
    """A run of a copy of the phantom (whose ground-truth mask files we then edit), masked, with radiomics."""
    from cxrbio.stages import masks, radiomics

    data = tmp_path / "phantom"
    shutil.copytree(phantom_dir, data)
    params = tmp_path / "params.yaml"
    params.write_text(FAST_PARAMS)
    config = tiny_config(**{"radiomics.params": str(params), "radiomics.workers": 1})
    run = scanned(data, tmp_path / "run", config)
    masks.run(run.root)
    radiomics.run(run.root)
    return run, data, params


def redraw_mask(path) -> None:
    """The same file name, other lungs: the mask shifted by a few pixels."""
    mask = np.asarray(Image.open(path))
    Image.fromarray(np.roll(mask, 5, axis=1)).save(path)


def test_a_replaced_mask_file_makes_the_masks_and_radiomics_stale_and_they_are_redone(masked_phantom_run):
    from cxrbio.stages import masks, radiomics

    run, data, _params = masked_phantom_run
    mask_file = data / pd.read_csv(data / "manifest.csv")["lung_mask"].iloc[3]
    touch_later(mask_file)
    assert unit_states(run)["masks/masks.parquet"][0] == "fresh"
    assert masks.run(run.root).up_to_date and radiomics.run(run.root).up_to_date
    redraw_mask(mask_file)
    state, reason = unit_states(run)["masks/masks.parquet"]
    assert state == "stale" and f"lung mask files changed: {mask_file}" in reason
    shown = CliRunner().invoke(app, ["status", str(run.root)])
    assert "lung mask files changed" in " ".join(shown.output.split())
    redone = radiomics.run(run.root)  # the next command: masks first, then the features made from them
    assert not redone.masks.up_to_date and not redone.up_to_date
    assert all(state == "fresh" for state, _ in unit_states(run).values())


def test_a_replaced_mask_in_a_masks_folder_is_noticed(masked_phantom_run, tmp_path):
    from cxrbio.stages import masks

    run, data, _params = masked_phantom_run
    manifest = pd.read_csv(data / "manifest.csv")
    folder = tmp_path / "my-masks"
    folder.mkdir()
    for image, mask in zip(manifest["path"], manifest["lung_mask"]):
        shutil.copy(data / mask, folder / f"{os.path.splitext(os.path.basename(image))[0]}.png")
    assert not masks.run(run.root, folder=folder).up_to_date
    assert masks.run(run.root, folder=folder).up_to_date
    target = sorted(folder.iterdir())[0]
    touch_later(target)
    assert masks.run(run.root, folder=folder).up_to_date
    redraw_mask(target)
    assert "lung mask files changed" in unit_states(run)["masks/masks.parquet"][1]
    assert not masks.run(run.root, folder=folder).up_to_date


def test_a_replaced_radiomics_parameter_file_makes_the_features_stale(masked_phantom_run):
    from cxrbio.stages import radiomics

    run, _data, params = masked_phantom_run
    touch_later(params)
    assert radiomics.run(run.root).up_to_date
    params.write_text(FAST_PARAMS.replace("binWidth: 8", "binWidth: 16"))
    state, reason = unit_states(run)["radiomics/features.parquet"]
    assert state == "stale" and f"radiomics parameter file changed: {params}" in reason
    again = radiomics.run(run.root)
    assert not again.up_to_date and (again.status["status"] == "ok").all()
    assert radiomics.run(run.root).up_to_date


def test_an_external_image_replaced_in_place_makes_the_external_set_stale(phantom_dir, tmp_path):
    """The external set's manifest records its images' content (cxrbio evaluate writes it and its stamp)."""
    from cxrbio.run.atomic import atomic_write_parquet

    run = scanned(phantom_dir, tmp_path / "run", tiny_config())
    external = tmp_path / "external"
    shutil.copytree(phantom_dir, external)
    images = sorted(str(p) for p in (external / "images").rglob("*.png"))[:3]
    atomic_write_parquet(run.path("external_manifest", name="ext"), pd.DataFrame({"path": images, "included": True}))
    tree = load_config(run.config).model_dump(mode="json")
    want = freshness.expected(run, "external_manifest", tree, {"name": "ext"}, options={"data": str(external)})
    freshness.write_stamp(run, want)
    assert unit_states(run)["external/ext/manifest.parquet"][0] == "fresh"
    touch_later(images[1])
    assert unit_states(run)["external/ext/manifest.parquet"][0] == "fresh"
    Image.fromarray(255 - np.asarray(Image.open(images[1]))).save(images[1])
    state, reason = unit_states(run)["external/ext/manifest.parquet"]
    assert state == "stale" and f"external images changed: {images[1]}" in reason


@pytest.mark.slow  # trains a network
def test_the_next_train_retrains_the_folds_a_replaced_weights_file_made_stale(phantom_dir, tmp_path):
    """After the weights file is replaced in place, ``cxrbio train`` moves the stale offshelf fold aside and trains it
    again (the frozen-feature cache keys on the weights' content, so the new weights' features are computed)."""
    weights = tmp_path / "backbone.weights.h5"
    save_backbone(weights, seed=1)
    config = tiny_config(model__weights=str(weights), train__strategies=["offshelf"], train__augment_frozen=False,
                         train__epochs=1, folds__k=2)
    run = scanned(phantom_dir, tmp_path / "run", config)
    first = CliRunner().invoke(app, ["train", str(run.root), "--folds", "0"])
    assert first.exit_code == 0, first.output
    touch_later(weights)
    kept = CliRunner().invoke(app, ["train", str(run.root), "--folds", "0"])
    assert kept.exit_code == 0 and "already finished" in kept.output and not list(run.root.glob("superseded-*"))
    save_backbone(weights, seed=2)
    again = CliRunner().invoke(app, ["train", str(run.root), "--folds", "0"])
    text = " ".join(again.output.split())
    assert again.exit_code == 0 and "offshelf fold 0 was made from other inputs (model.weights changed" in text
    assert len(list(run.root.glob("superseded-*/train/offshelf/fold-0"))) == 1
    assert len(list(run.cache.glob("frozen-gap-*.npy"))) == 2  # one feature cache per weights content
    assert unit_states(run)["train/offshelf/fold-0"][0] == "fresh"
