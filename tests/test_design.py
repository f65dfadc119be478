"""The design check (which classes can be told from their source) and the stratified tests that estimate within source."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cxrbio.analysis import stratified
from cxrbio.confounding.design import design_table, inferred_groups, min_detectable_auc
from cxrbio.errors import ConfigError
from tests.helpers import make_config, scan, write_png

# --- stratified statistics ---------------------------------------------------------------------------------------


def test_van_elteren_with_one_stratum_is_the_mann_whitney_test():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(40, 3))
    group = np.r_[np.ones(15, bool), np.zeros(25, bool)]
    values[group, 0] += 1.0
    values[:, 2] = np.round(values[:, 2])  # ties
    together = stratified.combine(stratified.blocks(values, group, ~group, np.zeros(40)), 3)
    for j in range(3):
        reference = stats.mannwhitneyu(values[group, j], values[~group, j], method="asymptotic", use_continuity=False)
        assert together.p_normal[j] == pytest.approx(reference.pvalue)
        assert together.auc[j] == pytest.approx(reference.statistic / (15 * 25))


def test_within_strata_the_test_holds_its_level_where_a_pooled_test_does_not():
    """Sources shift the values and hold the groups in different shares: pooled, the test finds the source."""
    rng = np.random.default_rng(1)
    stratified_p, pooled_p = [], []
    for _ in range(300):
        source = rng.integers(0, 3, 90)
        group = rng.random(90) < np.array([0.2, 0.5, 0.8])[source]
        values = (np.array([0.0, 2.0, 4.0])[source] + rng.normal(size=90))[:, None]
        stratified_p.append(stratified.combine(stratified.blocks(values, group, ~group, source), 1).p_normal[0])
        pooled_p.append(stats.mannwhitneyu(values[group, 0], values[~group, 0]).pvalue)
    assert np.mean(np.array(stratified_p) < 0.05) <= 0.08
    assert np.mean(np.array(pooled_p) < 0.05) > 0.8


def test_the_permutation_p_is_valid_in_small_strata_and_finds_a_real_shift():
    rng = np.random.default_rng(2)
    null_p = []
    for _ in range(200):
        source = np.repeat([0, 1, 2], 6)
        group = np.tile([True, True, False, False, False, True], 3)
        values = (source * 3.0 + rng.normal(size=18))[:, None]
        parts = stratified.blocks(values, group, ~group, source)
        null_p.append(stratified.permutation_p(parts, resamples=400, rng=rng)[0])
    assert np.mean(np.array(null_p) < 0.05) <= 0.08 and min(null_p) > 0
    source = np.repeat([0, 1, 2, 3], 6)
    group = np.tile([True, True, True, False, False, False], 4)
    values = (source * 3.0 + 3.0 * group + rng.normal(0, 0.3, 24))[:, None]
    parts = stratified.blocks(values, group, ~group, source)
    assert stratified.permutation_p(parts, resamples=2000, rng=rng)[0] < 0.01


def test_tost_shows_equivalence_of_a_null_auc_and_not_of_a_shifted_one():
    assert stratified.tost(np.array([0.5]), np.array([0.03]), 0.1)[0] < 0.05
    assert stratified.tost(np.array([0.7]), np.array([0.03]), 0.1)[0] > 0.5
    assert stratified.tost(np.array([0.5]), np.array([0.2]), 0.1)[0] > 0.05  # too little data: not shown
    assert np.isnan(stratified.tost(np.array([0.5]), np.array([0.0]), 0.1)[0])


def test_the_smallest_detectable_auc_follows_noethers_formula_and_grows_as_strata_shrink():
    # One stratum of 50 vs 50: 0.5 + (1.96 + 0.84) / sqrt(12 * 2500 / 101).
    assert min_detectable_auc([(50, 50)], alpha=0.05, power=0.8) == pytest.approx(0.5 + 2.8016 / np.sqrt(12 * 2500 / 101), abs=1e-3)
    split = min_detectable_auc([(25, 25), (25, 25)], alpha=0.05, power=0.8)
    assert 0.5 < min_detectable_auc([(50, 50)], alpha=0.05, power=0.8) < split
    assert np.isnan(min_detectable_auc([(10, 0)], alpha=0.05, power=0.8))


# --- the design table --------------------------------------------------------------------------------------------


def manifest(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    """(label, source, patients) -> one image per patient, PNG 8-bit grey, 256 px."""
    out = []
    for label, source, n in rows:
        for i in range(n):
            out.append({"patient_id": f"{label}-{source}-{i}", "label": label, "source": source, "format": "png",
                        "stored_mode": "L", "bits": 8, "width": 256, "height": 256})
    return pd.DataFrame(out)


CLASSES = ["COVID-19", "Edema", "Normal"]


def test_a_class_only_at_a_source_without_controls_is_not_estimable_and_the_table_says_what_to_add():
    frame = manifest([("COVID-19", "hospital-a", 20), ("Normal", "hospital-a", 15), ("Edema", "nih", 12),
                      ("Normal", "kermany", 30)])
    design, notes = design_table(frame, CLASSES, control="Normal", alpha=0.05, power=0.8)
    rows = design.set_index("class")
    assert rows.loc["COVID-19", "design"] == "estimable" and rows.loc["COVID-19", "strata"] == "hospital-a"
    assert (rows.loc["COVID-19", "patients_class"], rows.loc["COVID-19", "patients_control"]) == (20, 15)
    assert 0.5 < rows.loc["COVID-19", "min_detectable_auc"] < 1
    assert rows.loc["Edema", "design"] == "not estimable" and rows.loc["Edema", "sources"] == "nih"
    assert "Edema: only in source(s) nih, which hold no Normal images. Add nih's Normal images" in rows.loc["Edema", "note"]
    assert rows.loc["Normal", "contrast"] == "vs rest" and rows.loc["Normal", "design"] == "estimable"
    assert notes == []


def test_without_recorded_sources_no_class_is_estimable_and_inferred_groups_give_at_most_source_unverified():
    frame = manifest([("COVID-19", "unknown", 20), ("Normal", "unknown", 15), ("Edema", "unknown", 12)])
    frame.loc[frame["label"] == "Edema", "format"] = "jpeg"  # Edema's files look different: its own group
    design, notes = design_table(frame, CLASSES, control="Normal", alpha=0.05, power=0.8)
    rows = design.set_index("class")
    assert rows.loc["COVID-19", "design"] == "source unverified" and rows.loc["COVID-19", "stratum_kind"] == "inferred"
    assert rows.loc["Edema", "design"] == "not estimable"
    assert "estimable" not in set(design["design"]) and any("no image has a recorded source" in n for n in notes)


def test_a_partly_empty_source_column_and_one_source_per_class_are_said():
    partial = manifest([("COVID-19", "hospital-a", 10), ("COVID-19", "unknown", 5), ("Normal", "hospital-a", 10)])
    design, notes = design_table(partial, CLASSES, control="Normal", alpha=0.05, power=0.8)
    assert design.set_index("class").loc["COVID-19", "patients_class"] == 10  # the unknown-source patients left out
    assert any("5 patients have no recorded source (COVID-19 5)" in n for n in notes)
    apart = manifest([("COVID-19", "a", 10), ("Edema", "b", 10), ("Normal", "c", 10)])
    rows = design_table(apart, CLASSES, control="Normal", alpha=0.05, power=0.8)[0].set_index("class")
    assert set(rows["design"]) == {"not estimable"}  # Normal too: no source holds it and another class


def test_without_a_control_class_each_class_is_compared_with_the_rest_and_a_named_absent_one_is_refused(tmp_path):
    frame = manifest([("COVID-19", "a", 10), ("Edema", "a", 10)])
    design, notes = design_table(frame, CLASSES, control="Normal", alpha=0.05, power=0.8)
    assert set(design["contrast"]) == {"vs rest"} and any("no Normal images (the control class)" in n for n in notes)
    data = tmp_path / "data"
    for c, name in enumerate(("covid-19", "normal")):
        for i in range(4):
            write_png(data / name / f"{name}_{i}.png", seed=10 * c + i)
    with pytest.raises(ConfigError, match="analysis.control_class is 'Healthy'"):
        scan(data, make_config(["COVID-19", "Normal"], **{"folds.k": 2, "analysis.control_class": "Healthy"}),
             tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_inferred_groups_follow_what_the_files_say_about_their_acquisition():
    frame = pd.DataFrame({"format": ["png", "png", "jpeg", "dicom", "dicom"], "stored_mode": ["L", "L", "RGB", "MONOCHROME2",
                                                                                              "MONOCHROME2"],
                          "bits": [8, 8, 8, 12, 12], "width": [256, 250, 256, 2048, 2048], "height": [256, 256, 256, 2500, 2500],
                          "dicom_device": ["", "", "", "Dabc", "Dxyz"]})
    groups = inferred_groups(frame)
    assert groups[0] == groups[1] and len(set(groups)) == 4 and all(g.startswith("inferred-") for g in groups)


# --- the bar on real X-rays --------------------------------------------------------------------------------------


def test_real_sample_design_names_the_classes_whose_only_source_holds_no_controls(real_sample, tmp_path):
    result = scan(real_sample, make_config(**{"folds.k": 3, "data.image_size": 64}), tmp_path / "run")
    design = pd.read_parquet(tmp_path / "run" / "confounding" / "design.parquet").set_index("class")
    assert result.design is not None and len(result.design) == 7
    for cls in ("Edema", "Effusion", "Emphysema", "Fibrosis"):
        assert design.loc[cls, "design"] == "not estimable", cls
        assert "hold no Normal images" in design.loc[cls, "note"]
    for cls in ("COVID-19", "Pneumonia"):
        assert design.loc[cls, "design"] == "estimable", cls


def test_real_sample_renamed_to_opaque_names_without_a_source_column_has_no_estimable_class(real_sample, tmp_path):
    original = pd.read_csv(real_sample / "manifest.csv")
    hidden = tmp_path / "hidden"
    rows = []
    for i, row in enumerate(original.itertuples()):
        target = hidden / "images" / f"x{i:04d}{(real_sample / row.path).suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(real_sample / row.path, target)
        rows.append({"path": target.relative_to(hidden).as_posix(), "label": row.label, "patient_id": f"p{i}"})
    pd.DataFrame(rows).to_csv(hidden / "manifest.csv", index=False)
    result = scan(hidden / "manifest.csv", make_config(**{"folds.k": 3, "data.image_size": 64}), tmp_path / "run")
    assert set(result.manifest["source"]) == {"unknown"}
    assert "estimable" not in set(result.design["design"])
    assert any("no image has a recorded source" in n for n in result.design_notes)
