"""Disease or hospital: the acquisition baseline, its permutation null, and the site-confounded phantom.

Thresholds are those of the config (``confounding.min_auroc`` 0.7, Holm-adjusted p < 0.05),
measured on phantoms: at most 0.61 over 28 class values of 4 plain phantoms (100 images per
class, 64 px), 0.75-0.87 for the site-b classes of two site-confounded ones.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxrbio.cli.app import app
from cxrbio.confounding.acquisition import acquisition_baseline, acquisition_features
from cxrbio.confounding.permutation import permutation_null, rank_auroc
from tests.helpers import JUDGED_CHECKS, make_config, scan, xray_like

CLASSES2 = ["Pneumonia", "Normal"]


def pooled_classes(root, *, confounded: bool, per_class: int = 24, seed: int = 0):
    """Two class folders drawn from one pool of images; with ``confounded`` they differ only in how they
    were exported (Pneumonia: large JPEGs, Normal: small PNGs), else each class gets both at random."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(("pneumonia", "normal")):
        for i in range(per_class):
            pixels = xray_like(96, 80, seed=1000 + 2 * i + c)  # the same kind of picture in both classes
            large = (c == 0) if confounded else bool(rng.random() < 0.5)
            image = Image.fromarray(pixels).resize((120, 150) if large else (64, 80))
            target = root / name / f"{name}_{i}.{'jpg' if large else 'png'}"
            target.parent.mkdir(parents=True, exist_ok=True)
            image.save(target, quality=70) if large else image.save(target)
    return root


def baseline_of(manifest: pd.DataFrame, config):
    included = manifest[manifest["included"]].reset_index(drop=True)
    c = config.confounding
    return acquisition_baseline(included, list(config.data.classes), image_size=config.data.image_size,
                                scheme=config.folds.scheme, permutations=c.permutations, seed=c.seed,
                                min_auroc=c.min_auroc, alpha=c.alpha, trees=c.forest_trees)


def scan_warning(data, tmp_path, size: int) -> str:
    """`cxrbio data scan` of two class folders; asserts the confounding warning and returns the properties it names."""
    config = tmp_path / "two.yaml"
    config.write_text(f"data: {{classes: [Pneumonia, Normal], positive_class: null, image_size: {size}}}\nfolds: {{k: 3}}\n")
    result = CliRunner().invoke(app, ["data", "scan", str(data), str(tmp_path / "run"), "--config", str(config)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "confounding warning:" in text and "Acquisition alone separates Pneumonia" in text
    return text.split("mostly by")[1].split(":")[0]


EXPORT_WORDS = ("image width", "image height", "aspect ratio", "file format", "JPEG quality")


def test_a_scan_of_classes_that_differ_only_in_export_warns_naming_the_metadata(tmp_path):
    named = scan_warning(pooled_classes(tmp_path / "data", confounded=True), tmp_path, 32)
    assert any(word in named for word in EXPORT_WORDS)
    saved = json.loads((tmp_path / "run" / "confounding" / "acquisition.json").read_text())
    assert saved["status"] == "done" and set(saved["flagged"]) == {"Pneumonia", "Normal"}


def test_the_same_pool_exported_at_random_stays_at_its_null(tmp_path):
    config = make_config(CLASSES2, **{"data.image_size": 32, **JUDGED_CHECKS})
    manifest = scan(pooled_classes(tmp_path / "data", confounded=False), config, tmp_path / "run").manifest
    result = baseline_of(manifest, config)
    assert result.status == "done" and result.flagged == []
    assert result.p > 0.05 and all(row["auroc"] < 0.7 for row in result.per_class)


def test_the_baseline_never_sees_file_names(tmp_path):
    """File names encode labels (Kermany's 'bacteria', 'NORMAL2-'): renaming the files to label words moves nothing."""
    config = make_config(CLASSES2, **{"data.image_size": 32})
    plain = pooled_classes(tmp_path / "plain", confounded=False, seed=4)
    renamed = tmp_path / "renamed"
    for path in sorted(plain.rglob("*.*")):
        word = "bacteria-pneumonia" if path.parent.name == "pneumonia" else "NORMAL2-normal"
        target = renamed / path.parent.name / f"{word}-{path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    a = baseline_of(scan(plain, config, tmp_path / "a").manifest, config)
    b = baseline_of(scan(renamed, config, tmp_path / "b").manifest, config)
    assert a.balanced_accuracy == b.balanced_accuracy and a.per_class == b.per_class


def test_features_are_acquisition_only_and_constant_ones_are_dropped():
    manifest = pd.DataFrame({"width": [100, 120, 100], "height": [100, 100, 100], "bits": [8, 8, 8],
                             "format": ["png", "jpeg", "png"], "lb_width": [32, 32, 32], "lb_height": [32, 27, 32],
                             "qc_contrast": [0.5, 0.6, 0.7], "path": ["a/bacteria_1.png", "b.png", "c.png"]})
    features, origin = acquisition_features(manifest, 32)
    assert set(origin.values()) == {"width", "aspect", "padding", "format"}  # height, bits constant; no path, no contrast
    assert features.loc[1, "padding"] == pytest.approx(1 - 27 / 32)


def test_the_permutation_null_moves_a_patients_images_together_and_ranks_aurocs():
    rng = np.random.default_rng(0)
    y = np.repeat(rng.integers(0, 2, 40), 3)  # 40 patients, 3 images each, one label per patient
    groups = np.repeat(np.arange(40), 3)
    scores = np.column_stack([1 - y + rng.normal(0, 0.3, len(y)), y + rng.normal(0, 0.3, len(y))])
    result = permutation_null(y, scores.argmax(axis=1), groups, ["A", "B"], scores=scores, permutations=200)
    assert result.observed > 0.9 and result.p == pytest.approx(1 / 201)
    assert 0.4 < result.null_mean < 0.6
    from scipy.stats import rankdata
    from sklearn.metrics import roc_auc_score

    assert rank_auroc(rankdata(scores[:, 1]), y == 1) == pytest.approx(roc_auc_score(y == 1, scores[:, 1]))
    noise = permutation_null(y, rng.integers(0, 2, len(y)), groups, ["A", "B"], permutations=200)
    assert noise.p > 0.05


@pytest.fixture(scope="module")
def site_phantoms(tmp_path_factory):
    from cxrbio.data.phantom import generate_phantom

    root = tmp_path_factory.mktemp("sites")
    generate_phantom(root / "plain", per_class=60, size=64, seed=5)
    generate_phantom(root / "sites", per_class=60, size=64, seed=5, site_confound=True)
    generate_phantom(root / "null", per_class=20, size=64, seed=5, site_confound=True, null=True)
    return root


def test_site_confounded_phantom_names_the_site_classes_and_the_plain_one_names_none(site_phantoms, tmp_path):
    config = make_config(**{"data.image_size": 64, "folds.k": 3, **JUDGED_CHECKS})
    sites = scan(site_phantoms / "sites", config, tmp_path / "sites").manifest
    plain = scan(site_phantoms / "plain", config, tmp_path / "plain").manifest
    assert set(sites["source"]) == {"phantom-site-a", "phantom-site-b"} and set(plain["source"]) == {"phantom"}
    confounded, clean = baseline_of(sites, config), baseline_of(plain, config)
    assert set(confounded.flagged) == {"Pneumonia", "Normal"}  # the classes imaged mostly at site b
    assert confounded.p < 0.01 and confounded.balanced_accuracy > confounded.null_p95
    assert clean.flagged == [] and max(row["auroc"] for row in clean.per_class) < 0.7
    # The report (of the scanned run) shows the baseline beside the strategies and names the classes.
    report = tmp_path / "sites.html"
    result = CliRunner().invoke(app, ["report", str(tmp_path / "sites"), "--html", str(report)])
    assert result.exit_code == 0, result.output
    page = report.read_text()
    assert 'id="acquisition-card"' in page and "Acquisition alone separates" in page.split('id="limitations"')[1]
    confounding = page.split('<section id="confounding">')[1].split("</section>")[0]
    pneumonia = confounding.split("<li>Pneumonia: ")[1].split("</li>")[0]
    assert "acquisition alone reaches AUROC" in pneumonia and "<td>phantom-site-b 60</td>" in confounding
    # The design check: site b holds Pneumonia and Normal, so the effect is estimable within it.
    assert pneumonia.startswith("estimable within phantom-site-b (") and 'id="design"' in confounding
    assert "<td>site</td><td>chi-square</td>" in confounding  # the site column is audited as a covariate


def test_site_phantom_records_the_site_and_the_null_phantom_plants_nothing(site_phantoms):
    sites = pd.read_csv(site_phantoms / "sites" / "manifest.csv")
    share = sites.assign(b=sites["site"] == "phantom-site-b").groupby("label")["b"].mean()
    assert share["Pneumonia"] > 0.8 and share["Normal"] > 0.7 and share["Edema"] < 0.2
    b = sites[sites["site"] == "phantom-site-b"]
    assert b["path"].str.endswith(".jpg").all() and sites.loc[sites["site"] == "phantom-site-a", "path"].str.endswith(".png").all()
    first_b = Image.open(site_phantoms / "sites" / b["path"].iloc[0])
    first_a = Image.open(site_phantoms / "sites" / sites.loc[sites["site"] == "phantom-site-a", "path"].iloc[0])
    assert first_b.mode == "RGB" and first_a.mode in ("I;16", "I") and first_b.size[1] > first_a.size[1]
    null = pd.read_csv(site_phantoms / "null" / "manifest.csv")
    assert null["findings"].isna().all() and set(null["label"]) == set(sites["label"])
    assert json.loads((site_phantoms / "null" / "phantom.json").read_text())["null"] is True


def test_the_source_probe_reads_a_source_within_a_class_and_is_silent_without_one():
    from cxrbio.confounding.source_probe import source_probe

    rng = np.random.default_rng(1)
    n = 160
    labels = np.repeat([0, 1], n // 2)
    groups = np.arange(n) // 2  # two images per patient, one source per patient
    sources = np.where(groups % 2 == 0, "h1", "h2")
    noise = rng.normal(size=(n, 6))
    marked = noise.copy()
    marked[:, 0] += 2.0 * (sources == "h2")  # the source leaves a trace in one feature
    found = source_probe("test", marked, labels, sources, groups, ["A", "B"], permutations=200, seed=0)
    assert list(found["class"]) == ["A", "B"] and (found["balanced_accuracy"] > 0.75).all() and (found["p"] < 0.01).all()
    silent = source_probe("test", noise, labels, sources, groups, ["A", "B"], permutations=200, seed=0)
    assert (silent["p"] > 0.01).all() and (silent["balanced_accuracy"] < 0.65).all()
    # A class from one known source (the rest unknown) is not probed.
    single = np.where(labels == 0, "h1", np.where(groups % 2 == 0, "h1", "unknown"))
    assert source_probe("test", marked, labels, single, groups, ["A", "B"], permutations=50, seed=0).empty


def test_covariates_that_travel_with_the_label_are_named_and_bad_columns_are_said():
    from cxrbio.confounding.covariates import audit_covariates

    rng = np.random.default_rng(2)
    n = 120
    label = np.repeat(["COVID-19", "Pneumonia", "Normal"], n // 3)
    age = np.where(label == "COVID-19", rng.integers(30, 90, n), rng.integers(1, 10, n)).astype(object)
    age[:5] = [f"{int(a):03d}Y" for a in age[:5]]  # NIH-style ages parse too
    manifest = pd.DataFrame({
        "label": label, "Patient Age": age, "sex": rng.choice(["F", "M"], n), "empty": [None] * n,
        "device": np.where(np.arange(n) % 2, "vendor-a", "7").astype(object), "full_labels": ["Effusion|Infiltration"] + ["x"] * (n - 1)})
    audit = audit_covariates(manifest, ["COVID-19", "Pneumonia", "Normal"], alpha=0.05)
    rows = {r["covariate"]: r for r in audit.rows}
    assert rows["Patient Age"]["kind"] == "age" and rows["Patient Age"]["significant"]
    assert rows["Patient Age"]["sentence"].startswith("Patient Age < 18: 100% of ") and "0% of COVID-19" in rows["Patient Age"]["sentence"]
    assert not rows["sex"]["significant"] and rows["sex"]["test"] == "chi-square"
    assert "empty" not in rows  # a column with nothing in it is not a covariate...
    notes = " ".join(audit.notes)
    assert "'empty' is empty for every image" not in notes  # ...and 'empty' is not a recognised name
    assert "1 images carry several findings" in notes
    listed = audit_covariates(manifest, ["COVID-19", "Pneumonia", "Normal"], listed=["empty"])
    assert "covariate 'empty' is empty for every image: left out." in listed.notes


def test_real_images_split_into_classes_by_export_alone_get_a_confounding_warning(real_sample, tmp_path):
    """One pool of real X-rays, two 'classes' that differ only in image size and format."""
    paths = sorted(pd.read_csv(real_sample / "manifest.csv")["path"])
    data = tmp_path / "pool"
    for i, relative in enumerate(paths):
        image = Image.open(real_sample / relative).convert("L")
        if i % 2:
            target = data / "normal" / f"n{i}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            image.resize((200, 240)).save(target)
        else:
            target = data / "pneumonia" / f"p{i}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            image.resize((256, 256)).save(target, quality=75)
    assert any(word in scan_warning(data, tmp_path, 64) for word in EXPORT_WORDS)


def test_covariates_are_probed_within_each_class():
    from cxrbio.confounding.source_probe import covariate_probes, covariate_targets

    rng = np.random.default_rng(3)
    n = 120
    manifest = pd.DataFrame({"label": np.repeat(["A", "B"], n // 2), "age": rng.integers(1, 80, n),
                             "view": rng.choice(["PA", "AP"], n)})
    targets = covariate_targets(manifest, [])
    assert set(targets) == {"age", "view"} and set(targets["age"]) == {"< 18", ">= 18"}
    values = rng.normal(size=(n, 4))
    values[:, 1] += 2.5 * (targets["view"] == "AP").to_numpy()  # the view leaves a trace, the age none
    labels = (manifest["label"] == "B").to_numpy().astype(int)
    found = covariate_probes("test", values, labels, {k: v.to_numpy() for k, v in targets.items()}, np.arange(n),
                             ["A", "B"], permutations=200, seed=0).set_index(["target", "class"])
    assert (found.loc["view", "p"] < 0.01).all() and (found.loc["age", "p"] > 0.01).all()


def test_the_source_probe_reads_the_site_from_radiomics_of_the_site_phantom(site_phantoms, tmp_path):
    """Within a class, radiomics of site-a and site-b images differ (exposure, noise, export): the probe
    reads the site well above its null. On the plain phantom (one source) it stays silent."""
    from cxrbio.analysis.inputs import clean_columns
    from cxrbio.confounding.source_probe import source_probe
    from cxrbio.run.radiomics_files import read_features
    from cxrbio.run.rundir import RunDir
    from cxrbio.stages import masks, radiomics
    from tests.helpers import FAST_PARAMS

    params = tmp_path / "params.yaml"
    params.write_text(FAST_PARAMS)
    config = make_config(**{"data.image_size": 64, "folds.k": 3, "radiomics.params": str(params)})
    found = {}
    for name in ("sites", "plain"):
        run = RunDir(tmp_path / name)
        scan(site_phantoms / name, config, run.root)
        masks.run(run.root)
        radiomics.run(run.root)
        manifest = run.read_manifest().set_index("image_id")
        features = read_features(run).set_index("image_id")
        values, _, _ = clean_columns(features.to_numpy(np.float64), list(features.columns))
        rows = manifest.loc[features.index]
        y = rows["label"].map({c: i for i, c in enumerate(config.data.classes)}).to_numpy()
        found[name] = source_probe("radiomics", values, y, rows["source"].to_numpy(), rows["fold_group"].to_numpy(),
                                   list(config.data.classes), permutations=500, seed=0)
    sites = found["sites"].set_index("class")
    assert "Normal" in sites.index  # the class with most images at both sites
    assert (sites["balanced_accuracy"] > sites["null_p95"] + 0.15).all() and (sites["p"] < 0.01).all()
    assert found["plain"].empty  # one source: nothing to probe, nothing claimed


def test_analyze_probes_sources_in_every_space_and_the_report_shows_them(site_phantoms, tmp_path):
    """End to end on the site-confounded phantom (fold models registered untrained: the plumbing, in seconds)."""
    from cxrbio.run.rundir import RunDir
    from tests.helpers import EMBED_TINY, FAST_PARAMS, untrained_fold_models

    params = tmp_path / "params.yaml"
    params.write_text(FAST_PARAMS)
    config = make_config(**{**EMBED_TINY, "radiomics.params": str(params), "analysis.permutations": 5,
                            "analysis.bootstrap": 5, "confounding.permutations": 200})
    scan(site_phantoms / "sites", config, tmp_path / "run")
    run = RunDir(tmp_path / "run")
    untrained_fold_models(run, config, strategies=("scratch",))
    for command in (["embed", str(run.root)], ["radiomics", str(run.root)], ["analyze", str(run.root), "--no-audit"],
                    ["report", str(run.root), "--html", str(tmp_path / "r.html")]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 0, result.output
    cnn = pd.read_parquet(run.root / "analysis" / "scratch" / "source_probe.parquet")
    rad = pd.read_parquet(run.root / "analysis" / "radiomics" / "source_probe.parquet")
    assert {"space", "target", "class", "balanced_accuracy", "null_p95", "p", "fold"} <= set(cnn.columns)
    assert set(cnn["target"]) <= {"source", "site"} and "Normal" in set(rad["class"])
    assert (rad.loc[rad["target"] == "source", "p"] < 0.05).all()
    page = (tmp_path / "r.html").read_text()
    assert 'id="source-probe"' in page and "tell its sources apart" in page


def test_accuracy_by_source_scores_each_source_and_the_audit_rows_come_by_mask_source():
    from types import SimpleNamespace

    from cxrbio.report.confounding import audit_rows, source_rows
    from tests.helpers import synthetic_predictions

    classes = ["A", "B", "C"]
    frame = synthetic_predictions(accuracy=0.9, seed=4, classes=classes)
    frame["source"] = np.where(frame["fold"] == 0, "hospital-x", "hospital-y")
    frame["label"] = [classes[i] for i in frame["true"]]
    frame.loc[frame["source"] == "hospital-x", "predicted"] = 0  # a source the model gets wrong
    audit = pd.DataFrame({"mask_sources": ["column", "segmented"], "body_sources": ["column", "segmented"],
                          "audited": [10, 4], "flagged": [1, 0], "flagged_share": [0.1, 0.0], "unreliable_maps": [0, 1]})
    result = SimpleNamespace(name="scratch", predictions=frame, analysis={"audit_sources": audit})
    contents = SimpleNamespace(classes=classes, trained=lambda: [result], analysed=lambda: [result])
    rows = {r["source"]: r for r in source_rows(contents)}
    x, y = rows["hospital-x"], rows["hospital-y"]
    assert x["images"] == 60 and y["images"] == 120
    hits_x = frame[frame["source"] == "hospital-x"]
    assert x["accuracy"] == f"{100 * float((hits_x['true'] == 0).mean()):.1f}" and float(y["accuracy"]) > 80
    assert "A 100.0%" in x["per_class"] and "B 0.0%" in x["per_class"]
    by_source = audit_rows(contents)
    assert [(r["lung_masks"], r["flagged"], r["unreliable"]) for r in by_source] == [("column", 1, 0), ("segmented", 0, 1)]
    result.predictions = frame.assign(source="one")
    assert source_rows(contents) == []  # one source: nothing to compare
