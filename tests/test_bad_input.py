"""Inputs that used to crash the scan or slip through it: decompression bombs and huge images, one radiograph
filed under two classes, CSV paths that leave the CSV's folder. Each is named, never a traceback."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrbio.cli.app import app
from cxrbio.data.imageio import read_image
from cxrbio.errors import ImageTooLarge
from tests.helpers import make_config, scan, write_huge_png, write_png

CLASSES = ["COVID-19", "Normal"]


def two_classes(root, per_class: int = 4):
    for c, name in enumerate(("covid-19", "normal")):
        for i in range(per_class):
            write_png(root / name / f"{name}_{i}.png", seed=10 * c + i)
    return root


def config(**overrides):
    return make_config(CLASSES, **{"folds.k": 2, "data.image_size": 32, "confounding.permutations": 99,
                                   "confounding.forest_trees": 1, **overrides})


def test_a_decompression_bomb_and_a_huge_image_are_qc_exclusions_read_from_their_header(tmp_path):
    data = two_classes(tmp_path / "data")
    bomb = write_huge_png(data / "covid-19" / "bomb.png", 30_000, 30_000)
    huge = write_huge_png(data / "normal" / "huge.png", 10_000, 10_000)
    assert bomb.stat().st_size < 1_000_000
    config_file = tmp_path / "c.yaml"
    config_file.write_text("data: {classes: [COVID-19, Normal], positive_class: COVID-19, image_size: 32}\n"
                           "folds: {k: 2}\nconfounding: {permutations: 99, forest_trees: 1}\n")
    result = CliRunner().invoke(app, ["data", "scan", str(data), str(tmp_path / "run"), "--config", str(config_file)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "DecompressionBomb" not in result.output
    manifest = pd.read_parquet(tmp_path / "run" / "manifest.parquet").set_index("path")
    for path, size in ((bomb, "30000 x 30000 px (900.0 MP)"), (huge, "10000 x 10000 px (100.0 MP)")):
        row = manifest.loc[str(path)]
        assert row["qc_status"] == "too_large" and not row["included"] and row["fold"] == -1
        assert size in row["qc_reason"] and "data.qc.max_pixels (50.0 MP)" in row["qc_reason"]
    assert manifest["included"].sum() == 8  # the rest of the scan went on
    assert "too_large" in " ".join(result.output.split())  # listed among the QC exclusions


def test_the_pixel_limit_is_a_config_key_and_is_judged_before_decoding(tmp_path):
    huge = write_huge_png(tmp_path / "huge.png", 10_000, 10_000)
    with pytest.raises(ImageTooLarge, match="not decoded"):
        read_image(huge, max_pixels=50_000_000)
    assert read_image(huge, max_pixels=200_000_000).pixels.shape == (10_000, 10_000)  # raised: read (1-bit, black)
    data = two_classes(tmp_path / "data")
    shutil.copy(huge, data / "normal" / "huge.png")
    allowed = scan(data, config(**{"data.qc.max_pixels": 200_000_000}), tmp_path / "run").manifest.set_index("path")
    assert allowed.loc[str(data / "normal" / "huge.png"), "qc_status"] == "low_contrast"  # decoded, judged on its pixels


def test_one_radiograph_filed_under_two_classes_is_named_and_every_copy_kept_out_of_training(tmp_path):
    data = two_classes(tmp_path / "data")
    write_png(data / "covid-19" / "twin.png", seed=99)
    write_png(data / "normal" / "twin.png", seed=99)
    result = CliRunner().invoke(app, ["data", "scan", str(data), str(tmp_path / "run"), "--k", "2", "--size", "32"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "2 images in 1 duplicate groups carry different labels" in text
    assert "covid-19/twin.png (COVID-19) ~ normal/twin.png (Normal)" in text and "kept out of training" in text
    manifest = pd.read_parquet(tmp_path / "run" / "manifest.parquet").set_index("row")
    for row, other in (("covid-19/twin.png", "Normal"), ("normal/twin.png", "COVID-19")):
        assert manifest.loc[row, "qc_status"] == "label_conflict" and not manifest.loc[row, "included"]
        assert manifest.loc[row, "fold"] == -1 and other in manifest.loc[row, "qc_reason"]
    assert manifest["included"].sum() == 8


def test_label_conflicts_can_be_kept_as_filed_and_are_still_named(tmp_path):
    data = two_classes(tmp_path / "data")
    write_png(data / "covid-19" / "twin.png", seed=99)
    write_png(data / "normal" / "twin.png", seed=99)
    result = scan(data, config(**{"data.duplicates.label_conflicts": "keep"}), tmp_path / "run")
    assert any("carry different labels" in note and "kept in training as filed" in note for note in result.notes)
    manifest = result.manifest.set_index("row")
    assert manifest.loc["covid-19/twin.png", "included"] and manifest.loc["normal/twin.png", "included"]
    assert manifest.loc["covid-19/twin.png", "fold"] == manifest.loc["normal/twin.png", "fold"]  # one fold group


def test_csv_paths_outside_the_csv_folder_are_named(tmp_path):
    data = two_classes(tmp_path / "data")
    write_png(tmp_path / "elsewhere" / "far.png", seed=50)
    elsewhere = write_png(tmp_path / "elsewhere" / "absolute.png", seed=51)
    rows = [{"path": f"{name}/{name}_{i}.png", "label": label} for name, label in (("covid-19", "COVID-19"),
                                                                                     ("normal", "Normal")) for i in range(4)]
    rows += [{"path": "../../../../etc/passwd", "label": "Normal"}, {"path": "../elsewhere/far.png", "label": "COVID-19"},
             {"path": str(elsewhere), "label": "Normal"}]
    pd.DataFrame(rows).to_csv(data / "labels.csv", index=False)
    result = CliRunner().invoke(app, ["data", "scan", str(data / "labels.csv"), str(tmp_path / "run"), "--k", "2",
                                      "--size", "32"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "2 CSV path(s) lead outside the CSV's folder" in text and "labels.csv row 10: ../../../../etc/passwd" in text
    assert "1 CSV path(s) are absolute" in text and f"labels.csv row 12: {elsewhere}" in text
    manifest = pd.read_parquet(tmp_path / "run" / "manifest.parquet").set_index("row")
    assert manifest.loc["labels.csv row 10", "qc_status"] in ("unreadable", "missing")  # read as given: no image there
    assert manifest.loc["labels.csv row 11", "included"] and manifest.loc["labels.csv row 12", "included"]


def test_a_csv_inside_its_folder_gets_no_path_note(tmp_path):
    data = two_classes(tmp_path / "data")
    rows = [{"path": f"./{name}/../{name}/{name}_{i}.png", "label": label}
            for name, label in (("covid-19", "COVID-19"), ("normal", "Normal")) for i in range(4)]
    pd.DataFrame(rows).to_csv(data / "labels.csv", index=False)
    result = scan(data / "labels.csv", config(), tmp_path / "run")
    assert not any("CSV path" in note for note in result.notes)
