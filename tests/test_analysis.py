"""SHAP on the head, the shortcut audit on a model with a known answer, and `cxrbio analyze` end to end."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrbio.cli.app import app
from cxrbio.config import load_config
from cxrbio.run.rundir import RunDir

keras = pytest.importorskip("keras")


def head_model(seed=0):
    from cxrbio.models.mobilenet import build_model
    from cxrbio.models.strategies import Strategy

    config = load_config(None, {"model.alpha": 0.35, "model.dense_units": 8, "model.batchnorm_momentum": 0.01})
    model = build_model(7, 32, config.model, Strategy.parse("scratch"), seed=seed)
    model(np.random.default_rng(seed).uniform(0, 255, (16, 32, 32, 1)).astype(np.float32), training=True)
    return model


def test_logits_head_is_the_model_head_with_batchnorm_folded_in():
    from cxrbio.analysis.attribution import logits_head

    model = head_model()
    gap = keras.Model(model.inputs[0], model.get_layer("gap").output)
    images = np.random.default_rng(1).uniform(0, 255, (12, 32, 32, 1)).astype(np.float32)
    vectors = np.asarray(gap(images, training=False))
    logits = np.asarray(logits_head(model)(vectors, training=False))
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probabilities, np.asarray(model(images, training=False)), rtol=1e-4, atol=1e-6)


def test_shap_puts_a_planted_dim_first_with_its_direction_and_additivity():
    from cxrbio.analysis.attribution import cnn_fold_attribution

    model = head_model()
    dims = model.get_layer("head_dense").get_weights()[0].shape[0]
    kernel1 = np.zeros((dims, 8), np.float32)
    kernel1[5, 0] = 1.0  # hidden unit 0 = relu(e0005)
    kernel1[9, 1] = 1.0  # hidden unit 1 = relu(e0009)
    model.get_layer("head_dense").set_weights([kernel1, np.zeros(8, np.float32)])
    model.get_layer("head_bn").set_weights([np.ones(8), np.zeros(8), np.zeros(8), np.ones(8)])
    kernel2 = np.zeros((8, 7), np.float32)
    kernel2[0, 2] = 3.0  # class 2 rises with e0005
    kernel2[1, 4] = -2.0  # class 4 falls with e0009
    model.get_layer("head_softmax").set_weights([kernel2, np.zeros(7, np.float32)])
    rng = np.random.default_rng(0)
    vectors = rng.uniform(0, 1, (80, dims)).astype(np.float32)  # GAP vectors are non-negative
    y = rng.integers(0, 7, 80)
    names = [f"e{i:04d}" for i in range(dims)]
    classes = [f"c{i}" for i in range(7)]
    result = cnn_fold_attribution(model, vectors[:40], y[:40], vectors[40:], y[40:], names, classes,
                                  background=16, max_images=40, seed=0)
    assert result.additivity_error < 1e-4 and result.explained == 40
    table = result.table.set_index(["class", "feature"])
    best = result.table.sort_values("mean_abs_shap", ascending=False).groupby("class").head(1).set_index("class")
    assert best.loc["c2", "feature"] == "e0005" and table.loc[("c2", "e0005"), "direction"] == 1
    assert best.loc["c4", "feature"] == "e0009" and table.loc[("c4", "e0009"), "direction"] == -1
    others = result.table[~result.table["feature"].isin(["e0005", "e0009"])]
    assert others["mean_abs_shap"].max() < 1e-6


class CornerOrLungModel:
    """A 'network' whose answer is known: GAP unit 0 = lung texture (mean of x^2 over the lungs),
    unit 1 = brightness of a top-left marker; class A if the lungs are textured, B if the marker
    is lit, C otherwise. Blanking the lungs (to their mean) removes A's evidence, not B's."""

    size = 32

    @classmethod
    def build(cls, lung: np.ndarray) -> keras.Model:
        corner = np.zeros((cls.size, cls.size), np.float32)
        corner[:3, :3] = 1.0
        lung_w = lung.astype(np.float32)

        def units(x):
            x = x[..., 0] / 255.0
            u0 = keras.ops.sum(lung_w * x * x, axis=(1, 2)) / lung_w.sum()
            u1 = keras.ops.sum(corner * x, axis=(1, 2)) / corner.sum()
            return keras.ops.stack([u0, u1], axis=1)

        inputs = keras.Input((cls.size, cls.size, 1))
        gap = keras.layers.Lambda(units, name="gap")(inputs)
        logits = keras.layers.Lambda(lambda u: keras.ops.stack(
            [10 * (u[:, 0] - 0.35), 10 * (u[:, 1] - 0.5), keras.ops.zeros_like(u[:, 0])], axis=1))(gap)
        return keras.Model(inputs, keras.layers.Softmax()(logits))


def audit_fixture():
    from cxrbio.analysis.audit import AuditImages

    size = CornerOrLungModel.size
    lung = np.zeros((size, size), bool)
    lung[8:26, 5:14] = lung[8:26, 18:27] = True
    body = np.ones((size, size), bool)
    body[:6, :6] = False  # the top-left corner (where the marker is) is air: outside the body
    rng = np.random.default_rng(0)
    images, ids, y = [], [], []
    for i in range(12):
        image = np.full((size, size), 60, np.uint8)
        image[:6, :6] = 5  # air
        if i < 6:  # class A: textured lungs
            image[lung] = rng.choice([0, 255], int(lung.sum()))
        else:  # class B: a lit marker, flat lungs
            image[:3, :3] = 255
            image[lung] = 80
        images.append(image)
        ids.append(f"img-{i}")
        y.append(0 if i < 6 else 1)
    content = np.ones((size, size), bool)
    audit_images = AuditImages(np.stack(images), {i: k for k, i in enumerate(ids)}, {i: lung for i in ids},
                               {i: content for i in ids}, {i: body for i in ids},
                               {i: ("column", "segmented") for i in ids})
    return CornerOrLungModel.build(lung), audit_images, np.array(ids), np.array(y)


def test_audit_flags_the_marker_dim_and_region_blanking_hits_only_the_class_that_uses_the_region():
    from cxrbio.analysis.audit import audit_fold, flagged_by_source, shortcut_scores

    model, images, ids, y = audit_fixture()
    gap = keras.Model(model.inputs[0], model.get_layer("gap").output)
    test = np.asarray(gap(images.stack(list(ids))[..., None]))
    candidates = pd.DataFrame({"class": ["A", "B"], "dim": ["e0000", "e0001"], "mean_abs_shap": [1.0, 1.0]})
    settings = load_config().analysis.model_copy(update={"audit_dims": 1, "audit_images": 4})
    result = audit_fold(model, 0, ids, test, y, ["e0000", "e0001"], candidates, images, ["A", "B", "C"], settings)
    dims = result.dims.set_index("dim")
    # Occlusion: filling the lungs changes the texture unit only, filling the outside the marker unit only.
    assert dims.loc["e0000", "lung_share"] > 0.99 and not dims.loc["e0000", "likely_shortcut"]
    assert dims.loc["e0000", "outside_ratio"] < 0.01
    assert dims.loc["e0001", "outside_share"] > 0.99 and dims.loc["e0001", "likely_shortcut"]
    # The marker is 9 of the outside's 36 pixels; equal-area random blobs rarely cover it.
    assert dims.loc["e0001", "outside_ratio"] > settings.shortcut_margin
    assert dims.loc["e0001", "outside_area"] == pytest.approx(36 / 1024)
    assert dims.loc["e0001", "outside_density"] > 20  # share ~1 on 3.5 % of the area
    # The most activating images were chosen: the textured ones for the lung unit.
    assert set(dims.loc["e0000", "images"].split("|")) <= {f"img-{i}" for i in range(6)}
    assert dims.loc["e0000", "mask_sources"] == "column" and dims.loc["e0000", "body_sources"] == "segmented"
    blanked = result.model.set_index("class")
    assert blanked.loc["A", "accuracy"] == 1.0 and blanked.loc["A", "lungs_blanked_accuracy"] == 0.0
    assert blanked.loc["B", "accuracy"] == 1.0 and blanked.loc["B", "lungs_blanked_accuracy"] == 1.0
    assert blanked.loc["A", "outside_blanked_accuracy"] == 1.0 and blanked.loc["B", "outside_blanked_accuracy"] == 0.0
    scores = shortcut_scores(result.dims).set_index("class")
    assert scores.loc["B", "shortcut_score"] == 1.0 and scores.loc["A", "shortcut_score"] == 0.0
    assert set(result.maps) == {"fold-0/e0000", "fold-0/e0001"}
    by_source = flagged_by_source(result.dims)
    assert by_source[["audited", "flagged"]].to_numpy().tolist() == [[2, 1]]
    # Outside swap: the donors are of the other class (one source). B's logit falls when its outside
    # (the marker) is swapped for an A image's; A's rises when a B image's marker is swapped in: the
    # class decision reads the outside for both, which is what the swap (a class-level figure) says.
    assert dims.loc["e0001", "swap_flagged"] and dims.loc["e0001", "swap_ratio"] > 5
    assert dims.loc["e0000", "swap_flagged"]
    assert blanked.loc["B", "outside_swapped_accuracy"] == 0.0 and blanked.loc["A", "outside_swapped_accuracy"] == 0.0


def test_the_outside_swap_stays_silent_for_a_model_that_reads_only_the_lungs():
    """Every image's air differs (noise, another level per 'source'); nothing outside the body is read."""
    from cxrbio.analysis.audit import AuditImages, audit_fold

    model, images, ids, y = audit_fixture()
    rng = np.random.default_rng(3)
    stack = np.asarray(images.images).copy()
    lung = images.lung[ids[0]]
    outside = ~images.body[ids[0]]
    for k in range(len(ids)):
        stack[k][outside] = rng.integers(0, 60, int(outside.sum())) if k % 2 else rng.integers(0, 20, int(outside.sum()))
        if k >= 6:  # no marker anywhere: class C (flat lungs) instead of B
            stack[k][lung] = 80
    y = np.where(np.arange(len(ids)) < 6, 0, 2)
    quiet = AuditImages(stack, images.row, images.lung, images.content, images.body, images.sources,
                        {i: "even" if k % 2 else "odd" for k, i in enumerate(ids)})
    gap = keras.Model(model.inputs[0], model.get_layer("gap").output)
    test = np.asarray(gap(quiet.stack(list(ids))[..., None]))
    candidates = pd.DataFrame({"class": ["A", "C"], "dim": ["e0000", "e0000"], "mean_abs_shap": [1.0, 1.0]})
    settings = load_config().analysis.model_copy(update={"audit_dims": 1, "audit_images": 4})
    result = audit_fold(model, 0, ids, test, y, ["e0000", "e0001"], candidates, quiet, ["A", "B", "C"], settings)
    dims = result.dims.set_index("class")
    assert not dims["swap_flagged"].any()
    assert (dims["swap_ratio"] < 0.2).all() and (dims["swap_control_change"] > 0).all()
    blanked = result.model.set_index("class")
    assert (blanked["outside_swapped_accuracy"] == blanked["accuracy"]).all()


def test_audit_without_any_real_lung_or_body_mask_gives_empty_but_well_formed_tables():
    from cxrbio.analysis.audit import DIM_COLUMNS, MODEL_COLUMNS, audit_fold, shortcut_scores

    model, images, ids, y = audit_fixture()
    images.body.clear()  # no body mask passed QC: nothing to audit
    candidates = pd.DataFrame({"class": ["A"], "dim": ["e0000"], "mean_abs_shap": [1.0]})
    result = audit_fold(model, 0, ids, np.ones((len(ids), 2)), y, ["e0000", "e0001"], candidates, images,
                        ["A", "B", "C"], load_config().analysis)
    assert result.dims.empty and list(result.dims.columns) == DIM_COLUMNS
    assert result.model.empty and list(result.model.columns) == MODEL_COLUMNS
    assert shortcut_scores(result.dims).empty


def frame_regions(size=48):
    """Letterbox padding left and right, an elliptical body, two rectangular lungs."""
    content = np.zeros((size, size), bool)
    content[:, 4:-4] = True
    yy, xx = np.mgrid[0:size, 0:size]
    body = (((xx - size / 2) / (size * 0.38)) ** 2 + ((yy - size * 0.6) / (size * 0.6)) ** 2 < 1) & content
    lung = np.zeros((size, size), bool)
    lung[12:34, 10:21] = lung[12:34, 27:38] = True
    return lung, body, content


def test_regions_split_the_content_into_lung_body_and_outside_and_never_touch_the_padding():
    from cxrbio.analysis.audit import regions

    lung, body, content = frame_regions()
    parts = regions(lung, body, content)
    stacked = sum(mask.astype(int) for mask in parts.values())
    assert (stacked[content] == 1).all() and (stacked[~content] == 0).all()
    assert parts["outside"][0, 5] and parts["body"][40, 24] and parts["lung"][20, 12]


def test_a_model_equally_sensitive_everywhere_gets_equal_area_normalised_shares_and_a_ratio_near_one():
    """Unit = mean of squared local contrast (Laplacian) over the frame; images = uniform noise: every
    pixel carries the same evidence, so each region's share is its area and random regions match the outside."""
    from cxrbio.analysis.audit import AuditImages, dim_figures, occlude

    lung, body, content = frame_regions()
    size = lung.shape[0]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, size, size)).astype(np.uint8)
    images[:, ~content] = 0
    ids = [f"n{i}" for i in range(6)]
    audit_images = AuditImages(images, {i: k for k, i in enumerate(ids)}, {i: lung for i in ids},
                               {i: content for i in ids}, {i: body for i in ids})
    inputs = keras.Input((size, size, 1))
    laplacian = keras.layers.Conv2D(1, 3, padding="valid", use_bias=False, name="laplacian")
    contrast = laplacian(inputs)
    gap = keras.layers.GlobalAveragePooling2D(name="gap")(keras.layers.Multiply()([contrast, contrast]))
    model = keras.Model(inputs, gap)
    kernel = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], np.float32)[..., None, None]
    laplacian.set_weights([kernel])
    occlusion = occlude(model, ids, audit_images, controls=8, seed=0)
    figures = dim_figures(occlusion, ids, 0)
    for region in ("lung", "body", "outside"):
        assert figures[f"{region}_density"] == pytest.approx(1.0, abs=0.2), (region, figures)
    assert figures["outside_ratio"] == pytest.approx(1.0, abs=0.25)
    raw = [figures[f"{r}_share"] for r in ("lung", "body", "outside")]
    assert max(raw) / min(raw) > 1.5  # the raw shares are not equal: they follow the areas


def test_random_regions_have_the_asked_area_inside_the_content():
    from cxrbio.analysis.audit import random_regions

    _, _, content = frame_regions()
    blobs = random_regions(content, 300, 5, np.random.default_rng(1))
    assert len(blobs) == 5 and all(b.sum() == 300 and not (b & ~content).any() for b in blobs)
    assert len({b.tobytes() for b in blobs}) == 5


def test_saliency_sanity_check_flags_a_map_that_ignores_the_weights():
    """Unit j = mean(w_j * x^2): its gradient map is 2 w_j |x|, the input's own picture whatever w_j is, so it
    survives weight randomisation (rho 1). A ReLU convolution's map moves with its kernel and does not."""
    from cxrbio.analysis.audit import map_similarity, randomised_copy, unit_saliency

    size = 24
    rng = np.random.default_rng(0)
    images = ndimage_smooth(rng.uniform(0, 255, (4, size, size)))
    content = np.ones((size, size), bool)

    def twins(build):
        keras.utils.set_random_seed(3)
        model = build()
        gap = keras.Model(model.inputs[0], model.get_layer("gap").output)
        random_gap = randomised_copy(gap, seed=11)
        real = unit_saliency(gap, images, 0).mean(axis=0)
        twin = unit_saliency(random_gap, images, 0).mean(axis=0)
        return map_similarity(real, twin, content)

    def input_only():
        inputs = keras.Input((size, size, 1))
        squared = keras.layers.Multiply()([inputs, inputs])
        units = keras.layers.Conv2D(2, 1, use_bias=False)(squared)
        return keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="gap")(units))

    def learnt():  # one full-frame filter that reads the upper half: its map is the filter's picture
        inputs = keras.Input((size, size, 1))
        layer = keras.layers.Conv2D(2, size, use_bias=False)
        model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="gap")(layer(inputs)))
        kernel = np.zeros((size, size, 1, 2), np.float32)
        kernel[: size // 2] = 1.0
        layer.set_weights([kernel + 0.01 * rng.standard_normal(kernel.shape).astype(np.float32)])
        return model

    settings = load_config().analysis
    assert twins(input_only) >= settings.sanity_max_rho
    assert twins(learnt) < settings.sanity_max_rho


def ndimage_smooth(stack):
    from scipy import ndimage

    return np.stack([ndimage.gaussian_filter(image, 2) for image in stack]).astype(np.float32)


@pytest.fixture(scope="module")
def analysed_run(embedded_run, tmp_path_factory):
    """A copy of the embedded run, analysed once (``cxrbio analyze --top 3``): (run directory, what analyze printed)."""
    root = tmp_path_factory.mktemp("analysed") / "run"
    shutil.copytree(embedded_run, root)
    result = CliRunner().invoke(app, ["analyze", str(root), "--top", "3"])
    assert result.exit_code == 0, result.output
    return root, result.output


def test_analyze_writes_every_table_prints_candidates_and_skips_when_unchanged(analysed_run):
    root, output = analysed_run
    run = RunDir(root)
    assert "Candidate features, scratch" in output and "Radiomics features" in output
    for strategy in ("scratch", "finetune-2"):
        folder = run.root / "analysis" / strategy
        for name in ("attribution", "tests", "dropped", "cca", "stability", "umap", "matching", "confirmation", "power",
                     "acquisition", "descriptors", "separation", "audit_dims", "audit_model", "shortcut_scores", "candidates",
                     "design", "source_equivalence"):
            assert (folder / f"{name}.parquet").is_file(), name
        assert (folder / "saliency.npz").is_file()
        candidates = pd.read_parquet(folder / "candidates.parquet")
        assert {"class", "rank", "feature", "passed", "failed_gates", "gate_confirmation", "gate_direction", "gate_audit",
                "gate_acquisition", "auc", "auc_low", "auc_high", "q", "folds_agree", "folds_tested", "direction",
                "descriptors", "described", "descriptor_tier", "nuisance_descriptors",
                "dims", "lung_density", "outside_ratio", "likely_shortcut", "contrast",
                "source_tier", "gate_source", "strata", "auc_rest", "q_rest", "source_equivalent", "p_joint", "q_hier",
                "error_rate_scope", "re_auc", "re_p", "i2"} <= set(candidates.columns)
        # one error rate: the gate reads the hierarchy's q, never the per-family one
        assert (candidates["gate_confirmation"] == (candidates["q_hier"] < 0.05)).all()
        assert (candidates["q_hier"].dropna() >= candidates["q"].dropna() - 1e-12).all()
        assert (candidates["p_joint"] >= candidates["p"] - 1e-12).all()
        descriptors = pd.read_parquet(folder / "descriptors.parquet")
        assert {"rho_disease", "q_disease", "n_disease", "rho_control", "z_difference", "p_difference", "descriptor_tier",
                "rho_pooled", "q_pooled"} <= set(descriptors.columns)
        # 1-3 patients per class in a held-out fold here: too few for a correlation within the disease (said)
        notes = json.loads((run.root / "analysis" / "summary.json").read_text())["notes"]
        assert descriptors.empty and any(f"{strategy}: no tested feature" in n and "no descriptors" in n for n in notes)
        assert set(descriptors["descriptor_tier"]) <= {"disease-specific", "nuisance", "not compared", "none"}
        # one value per patient: no more rows within the disease than the class has patients
        patients = run.read_manifest().groupby("label")["patient_id"].nunique()
        assert (descriptors.groupby("class")["n_disease"].max() <= patients.reindex(descriptors["class"].unique()) * 3).all()
        null = pd.read_parquet(folder / "matching_null.parquet")
        assert len(null) == 2 and (null["threshold"] >= 0.3).all() and null["null_matched"].notna().all()
        # The phantom's one recorded source holds every class: each is compared with Normal within it, free of source.
        assert set(candidates["source_tier"]) <= {"free of source"}
        assert set(candidates.loc[candidates["class"] != "Normal", "contrast"]) <= {"vs Normal"}
        confirmation = pd.read_parquet(folder / "confirmation.parquet")
        assert (confirmation.groupby(["class", "fold"]).size() <= 3).all()  # --top 3 selected per held-out fold
        # Every tested feature is kept with its gates; untrained models: nothing should pass.
        assert len(candidates) == len(confirmation.groupby(["class", "feature"])) and not candidates["passed"].any()
        attribution = pd.read_parquet(folder / "attribution.parquet")
        assert attribution["additivity_error"].max() < 1e-3
        umap = pd.read_parquet(folder / "umap.parquet")
        assert len(umap) == len(run.read_manifest())  # one out-of-fold point per image
    baseline = json.loads((run.root / "analysis" / "radiomics" / "baseline.json").read_text())
    assert 0 <= baseline["accuracy"] <= 1 and len(baseline["ci95"]["accuracy"]) == 2
    summary = json.loads((run.root / "analysis" / "summary.json").read_text())
    assert {"stats", "attribution", "association", "stability", "projection", "audit", "matching",
            "confirmation"} <= set(summary["timings_s"])
    assert "error rate (every strategy):" in output and "families" in output
    log = [json.loads(line) for line in (run.root / "analysis" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and log[0]["gates"]["gate_q"] == 0.05 and log[0]["settings"]["top_k"] == 3
    assert set(log[0]["counts"]) == {"radiomics", "scratch", "finetune-2"} and log[0]["error_rate"][0]["tests"] > 0
    again = CliRunner().invoke(app, ["analyze", str(run.root), "--strategies", "scratch", "--top", "3"])
    assert again.exit_code == 0 and "scratch: inputs unchanged" in again.output
    log = (run.root / "analysis" / "log.jsonl").read_text().splitlines()
    assert len(log) == 2 and json.loads(log[1])["reused"]  # appended, the first line kept


def test_analyze_names_the_command_for_missing_inputs(embedded_run, tmp_path):
    shutil.copytree(embedded_run, tmp_path / "run")
    run = RunDir(tmp_path / "run")
    from cxrbio.run import freshness

    run.path("radiomics").unlink()
    freshness.remove_stamp(run, "radiomics", {})
    no_features = CliRunner().invoke(app, ["analyze", str(run.root)])
    assert no_features.exit_code == 2 and "cxrbio radiomics" in no_features.output
    shutil.rmtree(run.root / "embeddings")
    shutil.rmtree(run.root / "stamps" / "embeddings")
    no_embeddings = CliRunner().invoke(app, ["analyze", str(run.root), "--no-audit"])
    assert no_embeddings.exit_code == 2 and ("cxrbio embed" in no_embeddings.output or "cxrbio radiomics" in no_embeddings.output)
    unknown = CliRunner().invoke(app, ["analyze", str(embedded_run), "--strategies", "offshelf"])
    assert unknown.exit_code == 2 and "no embeddings for offshelf" in unknown.output


def test_analysis_settings_may_come_from_another_config_and_the_report_shows_them(embedded_run, tmp_path):
    from cxrbio.config import config_to_yaml
    from cxrbio.run import freshness

    shutil.copytree(embedded_run, tmp_path / "run")
    run = RunDir(tmp_path / "run")
    own = load_config(run.config)
    other = tmp_path / "other.yaml"
    other.write_text(config_to_yaml(own.model_copy(update={"analysis": own.analysis.model_copy(update={"top_k": 2})})))
    result = CliRunner().invoke(app, ["analyze", str(run.root), "--no-audit", "--config", str(other)])
    assert result.exit_code == 0, result.output
    assert load_config(run.config).analysis.top_k == own.analysis.top_k  # the run's config is unchanged
    stamp = freshness.read_stamp(run.root, "analysis", {"strategy": "scratch"})
    assert stamp.settings["analysis.top_k"] == 2
    report = tmp_path / "r.html"
    assert CliRunner().invoke(app, ["report", str(run.root), "--html", str(report)]).exit_code == 0
    page = report.read_text()
    assert "Analyses made with settings other than the run" in page and "analysis.top_k" in page
    # the gate header reads what the analysis used; the config's differing gate is named, not silently shown
    assert "as the last analysis used them" in page and "gates changed after this analysis" in page
    assert f"top_k 2 (used) → {own.analysis.top_k} (configured now)" in page and "Analysis log: 1 analysis run(s)" in page
    # the methods paragraph says what the analysis used, not what the config says now
    methods = page[page.index('<section id="methods">'):]
    assert "the 2 best per class were selected" in methods and f"{own.folds.k}-fold cross-validation" in methods
    training = other.read_text().replace("learning_rate: 0.0001", "learning_rate: 0.5")
    other.write_text(training)
    refused = CliRunner().invoke(app, ["analyze", str(run.root), "--config", str(other)])
    assert refused.exit_code == 2 and "train.learning_rate" in refused.output


def test_a_report_without_thumbnails_holds_no_patient_pixels_and_still_draws_every_figure(analysed_run, tmp_path):
    import re

    run, _output = analysed_run
    pages = {}
    for name, switch in (("with", []), ("without", ["--no-thumbnails"])):
        result = CliRunner().invoke(app, ["report", str(run), "--html", str(tmp_path / f"{name}.html"), *switch])
        assert result.exit_code == 0, result.output
        pages[name] = (tmp_path / f"{name}.html").read_text()
        assert ("embeds X-ray thumbnails" in " ".join(result.output.split())) == (name == "with")
    def own(page: str) -> str:  # the page without the plotly.js bundle (which carries icons of its own)
        return "".join(part for part in re.split(r"(<script[^>]*>.*?</script>)", page, flags=re.S)
                       if "plotly.js v" not in part)

    with_pixels, without = own(pages["with"]), own(pages["without"])
    assert "data:image/png;base64," in with_pixels and "burned into an X-ray" in with_pixels
    assert "data:image" not in without and "base64" not in without and "<img" not in without
    assert "This report holds no X-ray pixels" in without
    figures = set(re.findall(r'<div id="([a-z0-9-]+)" class="plotly-graph-div"', with_pixels))
    drawn = set(re.findall(r'<div id="([a-z0-9-]+)" class="plotly-graph-div"', without))
    assert figures and figures <= drawn  # every figure of the report with thumbnails is drawn without them
    tiles = with_pixels.count('<img src="data:image/png')
    assert tiles and len([f for f in drawn - figures if f.startswith("saliency-")]) == tiles  # each tile, as a map


def test_occlusion_verdicts_say_in_words_which_classes_need_their_lungs():
    from cxrbio.analysis.audit import FROM_LUNGS, OUTSIDE_LUNGS, UNDETERMINED, occlusion_verdicts

    rng = np.random.default_rng(0)
    rows = []
    for cls, lungs_kept in (("Effusion", 1.0), ("Pneumonia", 0.1), ("Rare", 1.0)):
        for k in range(40):
            right = bool(rng.random() < (0.9 if cls != "Rare" else 0.1))
            rows.append({"fold": 0, "image_id": f"{cls}-{k}", "class": cls, "correct": right,
                         "lungs_blanked_correct": right and rng.random() < lungs_kept,
                         "outside_blanked_correct": right, "outside_swapped_correct": right})
    predictions = pd.DataFrame(rows)
    patients = pd.Series({i: i for i in predictions["image_id"]})
    table = occlusion_verdicts(predictions, patients, margin=0.1, resamples=400, level=0.95, seed=0).set_index("class")
    assert table.loc["Effusion", "reading"] == OUTSIDE_LUNGS and table.loc["Effusion", "lungs_drop_high"] < 0.1
    assert table.loc["Pneumonia", "reading"] == FROM_LUNGS and table.loc["Pneumonia", "lungs_drop_low"] > 0
    assert table.loc["Rare", "reading"] == UNDETERMINED  # not recognised above chance: nothing to locate
    assert "read from outside the lungs" in table.loc["Effusion", "sentence"]
