"""Radiomics: 2-D pyradiomics inside the lung masks, the shared cache, parallel = serial, bad input, Ray."""

import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrbio.cli.app import app
from cxrbio.config import bundled_config, load_config
from cxrbio.errors import ConfigError
from cxrbio.features.radiomic_features import load_params
from cxrbio.run import runconfig
from cxrbio.run.mask_files import read_mask_table
from cxrbio.run.rundir import RunDir
from cxrbio.runtime.executors import RayExecutor, make_executor
from cxrbio.stages import masks, radiomics
from tests.helpers import FAST_CHECKS, scan

FAST_PARAMS = """imageType: {Original: {}}
featureClass: {firstorder: , shape2D: , glcm: [Contrast, Correlation]}
setting: {binWidth: 8, label: 1, additionalInfo: false}
"""


def config_for(tmp_path, params: str | None = None, **extra):
    values = {"data.image_size": 64, "folds.k": 3, **FAST_CHECKS}
    if params is not None:
        path = tmp_path / f"params-{abs(hash(params))}.yaml"
        path.write_text(params)
        values["radiomics.params"] = str(path)
    values.update(extra)
    return load_config(None, values)


def extract(run, monkeypatch, cache="cache", workers=None, executor=None):
    """The radiomics stage with the feature cache in ``cache`` (the run's config names none)."""
    monkeypatch.setenv("CXRBIO_CACHE_DIR", str(run.root.parent / cache))
    return radiomics.run(run.root, executor=executor or make_executor("local", workers=workers), force=True)


@pytest.fixture(scope="module")
def masked_run(phantom_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("radiomics-run")
    params = root / "fast.yaml"
    params.write_text(FAST_PARAMS)
    config = load_config(None, {"data.image_size": 64, "folds.k": 3, "radiomics.params": str(params), **FAST_CHECKS})
    scan(phantom_dir, config, root / "run")
    masks.run(root / "run")
    return root / "run"


def fresh_copy(masked_run, tmp_path) -> RunDir:
    shutil.copytree(masked_run, tmp_path / "run")
    return RunDir(tmp_path / "run")


def edit_mask_table(run, image_ids, **values):
    table = read_mask_table(run)
    for column, value in values.items():
        table.loc[table["image_id"].isin(image_ids), column] = value
    table.to_parquet(run.path("masks"), index=False)


def test_default_parameters_give_2d_texture_shape2d_and_four_wavelet_bands(masked_run, tmp_path, monkeypatch):
    run = fresh_copy(masked_run, tmp_path)
    runconfig.adopt(run, config_for(tmp_path), stage="radiomics", reconfigure=True)  # the study's parameter file
    manifest = run.read_manifest()
    # Two images of the default (study) parameter file: Original, LoG and Wavelet, seven classes.
    keep = manifest["image_id"].isin(manifest["image_id"].iloc[[0, 30]])
    edit_mask_table(run, manifest.loc[~keep, "image_id"], mask_source="none")
    result = extract(run, monkeypatch)
    features = result.features
    assert len(features) == 2 and result.status["status"].value_counts().to_dict() == {"ok": 2, "no mask": len(manifest) - 2}
    columns = set(features.columns)
    assert {"original_shape2D_PixelSurface", "original_shape2D_Perimeter", "original_glcm_Contrast",
            "original_ngtdm_Busyness", "original_gldm_DependenceEntropy", "original_glszm_ZoneEntropy",
            "original_glrlm_RunEntropy"} <= columns
    bands = {c.split("_")[0] for c in columns if c.startswith("wavelet")}
    assert bands == {"wavelet-LL", "wavelet-LH", "wavelet-HL", "wavelet-HH"}  # not the force2D collapse
    assert {c.split("_")[0] for c in columns if c.startswith("log")} == {f"log-sigma-{s}-0-mm-3D" for s in (1, 2, 3)}
    assert not any("shape_" in c for c in columns)  # the 3-D shape class does not apply
    # The lung area is the mask's pixel count.
    from cxrbio.run.mask_files import read_mask

    for row in features.itertuples():
        assert row.original_shape2D_PixelSurface == pytest.approx(read_mask(run, row.image_id).sum())


def test_force2d_is_refused_with_the_reason(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(FAST_PARAMS.replace("additionalInfo: false", "additionalInfo: false, force2D: true"))
    with pytest.raises(ConfigError, match="wavelet"):
        load_params(path)
    assert load_params(bundled_config("radiomics.yaml"))["featureClass"].keys() >= {"shape2D", "glcm"}


def test_cache_hits_when_nothing_changed_and_misses_when_params_or_a_mask_change(masked_run, tmp_path, monkeypatch):
    run = fresh_copy(masked_run, tmp_path)
    first = extract(run, monkeypatch, workers=2)
    assert (first.status["status"] == "ok").all() and (first.status["cache"] == "miss").all()
    kept = radiomics.run(run.root)  # nothing changed: the stamp is fresh, nothing is extracted
    assert kept.up_to_date
    second = extract(run, monkeypatch, workers=2)
    assert (second.status["cache"] == "hit").all()
    pd.testing.assert_frame_equal(first.features, second.features)
    # Another run directory on the same images and masks reuses the cache.
    shutil.copytree(run.root, tmp_path / "other")
    other = extract(RunDir(tmp_path / "other"), monkeypatch, workers=1)
    assert (other.status["cache"] == "hit").all()
    # New parameters (a forced change of the run's config): every image is computed again.
    runconfig.adopt(run, config_for(tmp_path, FAST_PARAMS.replace("binWidth: 8", "binWidth: 16")), stage="radiomics",
                    reconfigure=True)
    assert not run.path("radiomics").exists()  # the old features were moved aside
    changed = extract(run, monkeypatch, workers=1)
    assert (changed.status["cache"] == "miss").all()
    assert not np.allclose(changed.features["original_glcm_Contrast"], first.features["original_glcm_Contrast"])
    # One mask edited: that image alone is recomputed.
    from PIL import Image

    image_id = first.features["image_id"].iloc[5]
    mask_file = run.path("mask_file", image_id=image_id)
    mask = np.asarray(Image.open(mask_file)).copy()
    mask[mask.nonzero()[0][:20], mask.nonzero()[1][:20]] = 0
    Image.fromarray(mask).save(mask_file)
    edited = extract(run, monkeypatch, workers=1).status.set_index("image_id")["cache"]
    assert edited[image_id] == "miss" and (edited.drop(image_id) == "hit").all()
    assert (changed.status["cache"] == "miss").all()


def test_parallel_and_serial_extraction_agree(masked_run, tmp_path, monkeypatch):
    run = fresh_copy(masked_run, tmp_path)
    serial = extract(run, monkeypatch, cache="a", workers=1)
    parallel = extract(run, monkeypatch, cache="b", workers=2)
    pd.testing.assert_frame_equal(serial.features, parallel.features)
    manifest = run.read_manifest()
    assert list(serial.features["image_id"]) == list(manifest.loc[manifest["included"], "image_id"])


def test_bad_images_and_masks_are_listed_and_the_run_continues(masked_run, tmp_path):
    run = fresh_copy(masked_run, tmp_path)
    manifest = run.read_manifest()
    corrupt_id, corrupt_path = manifest[["image_id", "path"]].iloc[2]
    broken_copy = tmp_path / "broken.png"
    broken_copy.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    from cxrbio.features.lung_masks import resolve_column_path

    corrupt = manifest["image_id"] == corrupt_id
    for column in ("lung_mask", "body_mask"):  # its mask files stay the same files (the masks stay fresh)
        manifest.loc[corrupt, column] = resolve_column_path(manifest.loc[corrupt, column].iloc[0], corrupt_path)
    manifest.loc[corrupt, "path"] = str(broken_copy)
    manifest.loc[corrupt, "sha256"] = "changed"
    tiny_id = manifest["image_id"].iloc[3]
    tiny = np.zeros((64, 64), np.uint8)
    tiny[30:32, 30:33] = 255
    from PIL import Image

    Image.fromarray(tiny).save(run.path("mask_file", image_id=tiny_id))
    none_id = manifest["image_id"].iloc[4]
    edit_mask_table(run, [none_id], mask_source="none", mask_note="mask file x.png is empty")
    manifest.to_parquet(run.manifest)
    result = CliRunner().invoke(app, ["radiomics", str(run.root), "--workers", "1", "--force"],
                                env={"CXRBIO_CACHE_DIR": str(tmp_path / "cache")})
    assert result.exit_code == 0, result.output
    status = pd.read_parquet(run.path("radiomics_status")).set_index("image_id")
    assert status.loc[corrupt_id, "status"] == "failed" and "broken.png" in status.loc[corrupt_id, "message"]
    assert status.loc[tiny_id, "status"] == "failed" and "6 pixels" in status.loc[tiny_id, "message"]
    assert status.loc[none_id, "status"] == "no mask" and "empty" in status.loc[none_id, "message"]
    features = pd.read_parquet(run.path("radiomics"))
    assert len(features) == len(status) - 3 and not features["image_id"].isin([corrupt_id, tiny_id, none_id]).any()
    assert "3 image(s) lack features" in result.output and "broken.png" in result.output.replace("\n", "")


def test_radiomics_command_makes_masks_first_and_refuses_a_non_run(phantom_dir, tmp_path):
    config = config_for(tmp_path, FAST_PARAMS)
    scan(phantom_dir, config, tmp_path / "run")
    result = CliRunner().invoke(app, ["radiomics", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "Lung masks: column" in result.output and "Radiomics: 56 of 56 images" in result.output
    assert (tmp_path / "run" / "radiomics" / "features.parquet").is_file()
    outside = CliRunner().invoke(app, ["radiomics", str(tmp_path)])
    assert outside.exit_code == 2 and "not a cxrbio run directory" in outside.output


def test_planted_physics_shows_in_the_features(masked_run, tmp_path, monkeypatch):
    run = fresh_copy(masked_run, tmp_path)
    features = extract(run, monkeypatch).features
    labels = run.read_manifest().set_index("image_id")["label"]
    means = features.assign(label=features["image_id"].map(labels)).groupby("label").mean(numeric_only=True)
    mean_intensity = means["original_firstorder_Mean"]
    # The phantom darkens emphysematous lungs and whitens effusion and consolidation (pneumonia).
    assert mean_intensity["Emphysema"] < mean_intensity["Normal"] < min(mean_intensity["Effusion"], mean_intensity["Pneumonia"])


@pytest.mark.slow  # starts Ray (one instance for the session's tests: conftest's ray_instance)
def test_ray_executor_gives_the_local_features(masked_run, ray_instance, tmp_path, monkeypatch):
    run = fresh_copy(masked_run, tmp_path)
    local = extract(run, monkeypatch, cache="a", workers=1)
    remote = extract(run, monkeypatch, cache="b", executor=RayExecutor())
    pd.testing.assert_frame_equal(local.features, remote.features)
    assert (remote.status["cache"] == "miss").all()


def test_real_sample_gets_features(real_sample, tmp_path, monkeypatch):
    config = config_for(tmp_path, FAST_PARAMS)
    scan(real_sample, config, tmp_path / "run")
    run = RunDir(tmp_path / "run")
    masks.run(run.root)
    result = extract(run, monkeypatch)
    assert (result.status["status"] == "ok").all(), result.problems.to_string()
    assert len(result.features) == 74
    assert np.isfinite(result.features.drop(columns="image_id").to_numpy()).all()
