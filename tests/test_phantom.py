import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrbio.data.phantom import FINDINGS, generate_phantom, parse_shortcut
from cxrbio.errors import DataError
from cxrbio.evaluation.paper import PAPER_CLASSES


def load(path):
    return np.asarray(Image.open(path))


def test_layout_and_ground_truth(phantom_dir):
    m = pd.read_csv(phantom_dir / "manifest.csv")
    findings = pd.read_csv(phantom_dir / "findings.csv")
    assert sorted(m["label"].unique()) == sorted(PAPER_CLASSES)
    assert (m.groupby("label").size() == 8).all()
    assert (m.groupby("patient_id").size() > 1).any()  # several images per patient
    assert m.groupby("patient_id")["label"].nunique().max() == 1
    params = json.loads((phantom_dir / "phantom.json").read_text())
    assert params["seed"] == 3 and params["size"] == 64
    for row in m.itertuples():
        image, lungs = load(phantom_dir / row.path), load(phantom_dir / row.lung_mask) > 0
        assert image.shape == lungs.shape and image.shape[0] == 64
        assert 0.1 < lungs.mean() < 0.6
        names = set(findings.loc[findings["path"] == row.path, "finding"])
        assert names == set(FINDINGS[row.label]), row.path
    for row in findings.itertuples():
        mask = load(phantom_dir / row.mask) > 0
        assert mask.sum() == row.area_px


def test_lesions_lie_in_the_lungs(phantom_dir):
    m = pd.read_csv(phantom_dir / "manifest.csv").set_index("path")
    findings = pd.read_csv(phantom_dir / "findings.csv")
    for row in findings[findings["finding"] != "cardiomegaly"].itertuples():
        lesion = load(phantom_dir / row.mask) > 0
        lungs = load(phantom_dir / m.loc[row.path, "lung_mask"]) > 0
        if lesion.sum() >= 5:
            assert (lesion & lungs).sum() / lesion.sum() > 0.85, (row.path, row.finding)


def test_planted_physics(tmp_path):
    """Opacities are brighter than the same patient's lungs elsewhere; emphysema is darker."""
    out = tmp_path / "ph"
    generate_phantom(out, per_class=6, size=128, seed=11)
    m = pd.read_csv(out / "manifest.csv")
    findings = pd.read_csv(out / "findings.csv")
    lung_means = {}
    for row in m.itertuples():
        image = load(out / row.path).astype(float)
        lungs = load(out / row.lung_mask) > 0
        lung_means.setdefault(row.label, []).append(image[lungs].mean())
        for f in findings[findings["path"] == row.path].itertuples():
            if f.finding in {"consolidation", "effusion", "ground_glass"}:
                lesion = load(out / f.mask) > 0
                rest = lungs & ~lesion
                if lesion.sum() > 20 and rest.sum() > 20:
                    assert image[lesion].mean() > image[rest].mean() + 5, (row.path, f.finding)
    means = {k: np.mean(v) for k, v in lung_means.items()}
    assert means["Emphysema"] < means["Normal"] - 5
    assert means["Effusion"] > means["Normal"]


def test_deterministic_per_seed(tmp_path):
    a = generate_phantom(tmp_path / "a", per_class=2, size=64, seed=5)
    b = generate_phantom(tmp_path / "b", per_class=2, size=64, seed=5)
    c = generate_phantom(tmp_path / "c", per_class=2, size=64, seed=6)
    pd.testing.assert_frame_equal(a, b)
    for path in a["path"]:
        assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes()
    assert any((tmp_path / "a" / p).read_bytes() != (tmp_path / "c" / p).read_bytes() for p in c["path"] if (tmp_path / "a" / p).exists())


def test_shortcut_marker_outside_lungs(tmp_path):
    m = generate_phantom(tmp_path / "s", per_class=10, size=96, seed=2, shortcut=("Pneumonia", 0.5))
    marked = m[m["shortcut"]]
    assert set(marked["label"]) == {"Pneumonia"}
    assert 2 <= len(marked) <= 9  # about half, drawn at random
    for row in marked.itertuples():
        image = load(tmp_path / "s" / row.path)
        lungs = load(tmp_path / "s" / row.lung_mask) > 0
        box = (slice(row.shortcut_y0, row.shortcut_y1), slice(row.shortcut_x0, row.shortcut_x1))
        assert not lungs[box].any()
        assert (image[box] >= 240).mean() > 0.3  # the bright marker is there
    assert (m.loc[~m["shortcut"], "shortcut_x0"] == -1).all()


@pytest.mark.parametrize("text", ["Pneumonia", "Nope:0.5", "Pneumonia:1.5", "Pneumonia:x"])
def test_bad_shortcut_argument(text):
    with pytest.raises(DataError, match="CLASS:FRACTION"):
        parse_shortcut(text)


def test_shortcut_argument_is_case_insensitive():
    assert parse_shortcut("covid-19:0.8") == ("COVID-19", 0.8)


def test_distinct_phantom_patients_are_not_near_duplicates(phantom_dir):
    """Regression: with a 64-bit pHash, phantom patients chained into one group and one fold."""
    from tests.helpers import make_config, scan

    m = scan(phantom_dir, make_config(), phantom_dir.parent / "run-dups").manifest
    per_group = m.groupby("dup_group")["patient_id"].nunique()
    assert per_group.max() == 1


def test_graded_severity_rescales_only_the_findings(tmp_path):
    """--severity 0.3,1.0: the same draw rescaled, so Normal images are byte-identical and findings vary more."""
    from cxrbio.data.phantom import parse_severity

    plain = generate_phantom(tmp_path / "p", per_class=6, size=64, seed=1)
    graded = generate_phantom(tmp_path / "g", per_class=6, size=64, seed=1, severity=(0.3, 1.0))
    ill = graded["label"] != "Normal"
    assert graded.loc[ill, "severity"].between(0.3, 1.0).all() and graded.loc[ill, "severity"].min() < 0.7
    expected = 0.3 + (plain.loc[ill, "severity"] - 0.7) / 0.3 * 0.7  # the same uniform draw, rescaled
    np.testing.assert_allclose(graded.loc[ill, "severity"], expected, atol=2e-3)
    for path in plain.loc[plain["label"] == "Normal", "path"]:
        assert (tmp_path / "p" / path).read_bytes() == (tmp_path / "g" / path).read_bytes()
    assert json.loads((tmp_path / "g" / "phantom.json").read_text())["severity"] == [0.3, 1.0]
    assert parse_severity("0.3,1.0") == (0.3, 1.0)
    with pytest.raises(DataError, match="LOW,HIGH"):
        parse_severity("0.3")
    with pytest.raises(DataError, match="0 < LOW <= HIGH"):
        generate_phantom(tmp_path / "bad", per_class=1, size=64, severity=(0.9, 0.2))


def test_site_designs_place_one_class_at_site_b_with_or_without_controls_and_can_hide_the_source(tmp_path):
    from cxrbio.data.phantom import HIDDEN_SOURCE_MANIFEST
    from tests.helpers import make_config, scan

    config = make_config(**{"folds.k": 2, "data.image_size": 48})
    isolated = generate_phantom(tmp_path / "isolated", per_class=12, size=64, seed=1, isolated_site="Emphysema")
    at_b = isolated[isolated["site"] == "phantom-site-b"]
    assert set(at_b["label"]) == {"Emphysema"} and (isolated.loc[isolated["label"] == "Emphysema", "site"] == "phantom-site-b").all()
    nested = generate_phantom(tmp_path / "nested", per_class=12, size=64, seed=1, nested_site="Effusion", null=True)
    at_b = nested[nested["site"] == "phantom-site-b"]
    assert set(at_b["label"]) == {"Effusion", "Normal"} and 0.2 < (nested.loc[nested["label"] == "Normal", "site"]
                                                                  == "phantom-site-b").mean() < 0.8
    assert (nested["findings"].fillna("") == "").all()  # --null: no planted findings
    hidden = pd.read_csv(tmp_path / "nested" / HIDDEN_SOURCE_MANIFEST)
    assert "source" not in hidden and "site" not in hidden and len(hidden) == len(nested)
    designs = {}
    for name, data in (("isolated", tmp_path / "isolated"), ("nested", tmp_path / "nested"),
                       ("hidden", tmp_path / "nested" / HIDDEN_SOURCE_MANIFEST)):
        designs[name] = scan(data, config, tmp_path / f"run-{name}").design.set_index("class")["design"]
    assert designs["isolated"]["Emphysema"] == "not estimable" and designs["isolated"]["Edema"] == "estimable"
    assert designs["nested"]["Effusion"] == "estimable"
    assert "estimable" not in set(designs["hidden"])  # nothing records the site: at most source unverified
    with pytest.raises(DataError, match="different site designs"):
        generate_phantom(tmp_path / "x", per_class=2, size=64, site_confound=True, nested_site="Effusion")
    with pytest.raises(DataError, match="must name a disease class"):
        generate_phantom(tmp_path / "x", per_class=2, size=64, isolated_site="Normal")


def test_partial_null_plants_half_the_diseases_chosen_by_seed_and_draws_the_others_exactly_as_normal(tmp_path):
    from cxrbio.data.phantom import partial_null_classes

    manifest = generate_phantom(tmp_path / "pn", per_class=3, size=64, seed=3, partial_null=True)
    design = json.loads((tmp_path / "pn" / "phantom.json").read_text())["partial_null"]
    diseases = [c for c in PAPER_CLASSES if c != "Normal"]
    assert sorted(design["planted"] + design["null"]) == sorted(diseases) and len(design["planted"]) == 3
    findings = manifest.groupby("label")["findings"].agg(lambda f: (f != "").any())
    assert findings[design["planted"]].all() and not findings[design["null"]].any() and not findings["Normal"]
    # a null class's image is the Normal drawing of its own patient stream: the plain phantom's Normal-drawn
    # image of that patient, pixel for pixel
    null_class = design["null"][0]
    row = manifest[manifest["label"] == null_class].iloc[0]
    everything_null = generate_phantom(tmp_path / "null", per_class=3, size=64, seed=3, null=True)
    same = everything_null[everything_null["label"] == null_class].iloc[0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "pn" / row["path"])),
                          np.asarray(Image.open(tmp_path / "null" / same["path"])))
    assert {tuple(partial_null_classes(PAPER_CLASSES, s)[1]) for s in range(6)} != {tuple(design["null"])}
    with pytest.raises(DataError, match="choose one"):
        generate_phantom(tmp_path / "both", per_class=1, size=64, null=True, partial_null=True)


def test_the_phantom_writes_each_images_acquisition_and_it_explains_its_brightness(tmp_path):
    manifest = generate_phantom(tmp_path / "p", per_class=6, size=64, seed=2)
    columns = ["acq_gain", "acq_bias", "acq_gamma", "acq_blur", "acq_noise"]
    assert set(columns) <= set(manifest.columns) and manifest[columns].notna().all().all()
    assert manifest["acq_gain"].between(0.85, 1.2).all() and manifest["acq_blur"].between(0.3, 0.9).all()
    # within a class the exposure drives the mean brightness: gain up, brighter; gamma up, darker
    normal = manifest[manifest["label"] == "Normal"]
    brightness = [np.asarray(Image.open(tmp_path / "p" / path), np.float64).mean() for path in normal["path"]]
    exposure = normal["acq_gain"] + normal["acq_bias"] - 0.5 * (normal["acq_gamma"] - 1)
    assert np.corrcoef(exposure, brightness)[0, 1] > 0.5
