"""The analysis building blocks on data whose answer is known: tests, SHAP, association, stability, audit."""

import numpy as np
import pandas as pd
import pytest

from cxrbio.analysis import association, stability
from cxrbio.analysis.inputs import clean_columns, stratified_sample
from cxrbio.analysis.stats import class_tests, rank_auc
from cxrbio.evaluation.multiple_testing import benjamini_hochberg

CLASSES = ["A", "B", "C"]


def separable(n=90, seed=0):
    """Feature f0 is shifted up 3 SD in class B (expected one-vs-rest AUC 0.98); f1 is noise; f2 down in C."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1, 2], n // 3)
    x = rng.normal(size=(n, 3))
    x[y == 1, 0] += 3.0
    x[y == 2, 2] -= 3.0
    return x, y


def test_class_tests_find_the_shifted_features_with_fdr_and_auc():
    x, y = separable()
    table, notes = class_tests(x, y, ["f0", "f1", "f2"], CLASSES)
    assert not notes
    kw = table[table["test"] == "kruskal"].set_index("feature")
    assert kw.loc["f0", "q"] < 1e-6 and kw.loc["f2", "q"] < 1e-6 and kw.loc["f1", "q"] > 0.05
    mw = table[table["test"] == "mannwhitney"].set_index(["class", "feature"])
    assert mw.loc[("B", "f0"), "auc"] > 0.9 and mw.loc[("C", "f2"), "auc"] < 0.1
    assert mw.loc[("B", "f0"), "auc"] == pytest.approx(rank_auc(x[:, [0]], y == 1)[0])
    # q-values are BH within each family: never below the p-value, same order.
    for _, family in table.groupby(["test", "class"]):
        assert (family["q"] >= family["p"] - 1e-15).all()
        assert family.sort_values("p")["q"].is_monotonic_increasing


def test_too_small_classes_are_skipped_and_said():
    x, y = separable()
    y = y.copy()
    y[y == 2] = 0
    y[:2] = 2  # class C: 2 images
    table, notes = class_tests(x, y, ["f0", "f1", "f2"], CLASSES, min_group=3)
    assert any("C: 2 image(s)" in n for n in notes)
    assert "C" not in set(table["class"])


def test_constant_and_non_finite_columns_are_dropped_with_reasons():
    x, _ = separable()
    x = np.column_stack([x, np.full(len(x), 7.0), x[:, 0]])
    x[3, 4] = np.nan
    kept, names, dropped = clean_columns(x, ["f0", "f1", "f2", "flat", "holes"])
    assert names == ["f0", "f1", "f2"] and kept.shape[1] == 3
    reasons = {d["feature"]: d["reason"] for d in dropped}
    assert "constant" in reasons["flat"] and "non-finite in 1" in reasons["holes"]


def test_fdr_ignores_missing_p_values():
    q = benjamini_hochberg(np.array([0.01, np.nan, 0.04]))
    assert np.isnan(q[1]) and q[0] == pytest.approx(0.02) and q[2] == pytest.approx(0.04)


def test_stratified_sample_keeps_every_class():
    y = np.repeat([0, 1, 2], [50, 30, 20])
    chosen = stratified_sample(y, 20, seed=0)
    assert len(chosen) == 20 and set(y[chosen]) == {0, 1, 2}
    assert len(stratified_sample(y, 500, seed=0)) == 100


def test_spearman_matches_scipy_and_descriptors_pick_the_strongest():
    from scipy import stats

    rng = np.random.default_rng(1)
    a = rng.normal(size=(60, 2))
    b = np.column_stack([a[:, 0] ** 3, rng.normal(size=60), -a[:, 1] + 0.1 * rng.normal(size=60)])
    rho, p = association.spearman(a, b)
    for i in range(2):
        for j in range(3):
            expected = stats.spearmanr(a[:, i], b[:, j])
            assert rho[i, j] == pytest.approx(expected.statistic, abs=1e-9)
            assert p[i, j] == pytest.approx(expected.pvalue, rel=1e-6)
    table = pd.DataFrame([{"dim": d, "feature": f, "rho": rho[i, j], "p": p[i, j], "q": p[i, j] * 6}
                          for i, d in enumerate(["e0000", "e0001"]) for j, f in enumerate(["cube", "noise", "minus"])])
    named = association.descriptors(table, top=1)
    assert named["e0000"][0][0] == "cube" and named["e0001"][0] == ("minus", pytest.approx(rho[1, 2]))
    assert association.describe(named["e0000"]).startswith("cube (rho +1.00)")


def test_cca_permutation_baseline_separates_shared_signal_from_noise():
    rng = np.random.default_rng(2)
    latent = rng.normal(size=(150, 2))
    a = np.column_stack([latent, rng.normal(size=(150, 8))]) @ rng.normal(size=(10, 30))
    b = np.column_stack([latent + 0.3 * rng.normal(size=(150, 2)), rng.normal(size=(150, 6))]) @ rng.normal(size=(8, 20))
    shared = association.cca_with_baseline(a, b, components=5, permutations=30, seed=0)
    noise = association.cca_with_baseline(a, rng.normal(size=(150, 20)), components=5, permutations=30, seed=0)
    assert shared.loc[0, "r"] > shared.loc[0, "null_p95"] and shared.loc[0, "p"] <= 1 / 31 + 1e-9
    assert noise.loc[0, "p"] > 0.05


def test_bootstrap_ranking_keeps_a_strong_feature_on_top():
    x, y = separable(n=120)
    patients = np.arange(len(y)) // 2
    summary, frequency = stability.bootstrap_ranking(x, y, patients, ["f0", "f1", "f2"], CLASSES, top=1,
                                                     resamples=20, seed=0)
    freq = frequency.set_index(["class", "feature"])["top_frequency"]
    assert freq[("B", "f0")] == 1.0 and freq[("C", "f2")] == 1.0
    assert summary.set_index("class").loc["B", "top_jaccard"] == 1.0


def test_projection_scores_separation_in_both_spaces():
    from cxrbio.analysis.projection import project

    x, y = separable(n=90)
    coords, rows = project(np.column_stack([x, x * 2]), y, neighbors=10, min_dist=0.1, seed=0,
                           groups=np.arange(len(y)))
    assert coords.shape == (90, 2)
    scores = {r["space"]: r for r in rows}
    assert scores["original"]["knn_accuracy"] > 0.6 and -1 <= scores["umap"]["silhouette"] <= 1


def test_knn_separation_folds_keep_a_patients_images_together():
    """Labels random per patient, each patient's 6 images nearly identical: only same-patient
    neighbours 'separate' the classes. Ungrouped folds score that near 100%; grouped, it is chance."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    from cxrbio.analysis.projection import separation

    rng = np.random.default_rng(3)
    patients = np.repeat(np.arange(60), 6)
    y = np.repeat(rng.permutation(np.arange(60) % 2), 6)  # half the patients per class, at random
    centres = rng.normal(size=(60, 8))
    x = centres[patients] + 0.01 * rng.normal(size=(len(patients), 8))
    leaky = cross_val_score(KNeighborsClassifier(5), x, y, cv=StratifiedKFold(5, shuffle=True, random_state=0)).mean()
    grouped = separation(x, y, 0, groups=patients)["knn_accuracy"]
    assert leaky > 0.9  # what the ungrouped score used to say
    assert 0.3 < grouped < 0.7  # chance: the patients carry no class signal


def test_the_radiomics_baseline_under_leave_one_source_out_uses_the_cnns_folds(tmp_path):
    """It used the manifest's stratified ``fold`` column, so under leave-one-source-out its folds
    were not the CNN's (one per source) and the two were not comparable."""

    from cxrbio.analysis.inputs import AnalysisInputs
    from cxrbio.analysis.spaces import AnalysisSummary, analyze_radiomics
    from cxrbio.config import load_config
    from cxrbio.data.folds import outer_folds
    from cxrbio.run.rundir import RunDir

    config = load_config(None, {"data.classes": ["A", "B"], "data.positive_class": None,
                                "folds.scheme": "leave-one-source-out", "analysis.bootstrap": 2,
                                "evaluation.bootstrap": 20, "analysis.umap_neighbors": 5})
    n = 60
    rng = np.random.default_rng(0)
    manifest = pd.DataFrame({
        "image_id": [f"i{k:02d}" for k in range(n)], "patient_id": [f"p{k:02d}" for k in range(n)],
        "fold_group": [f"g{k:02d}" for k in range(n)], "label": np.where(np.arange(n) % 2, "B", "A"),
        "source": np.repeat(["h1", "h2", "h3"], n // 3), "fold": np.arange(n) % 5,  # stratified folds: not the sources
    }).set_index("image_id")
    manifest["y"] = (manifest["label"] == "B").astype(int)
    features = rng.normal(size=(n, 4))
    features[:, 0] += 2 * manifest["y"].to_numpy()
    radiomics = pd.DataFrame(features, index=manifest.index, columns=[f"original_firstorder_f{k}" for k in range(4)])
    inputs = AnalysisInputs(RunDir(tmp_path), config, manifest, ["A", "B"], radiomics)
    predicted = analyze_radiomics(inputs, AnalysisSummary([]), lambda message: None).tables["predictions"].set_index("image_id")
    cnn = {image: fold.fold for fold in outer_folds(manifest, "leave-one-source-out") for image in manifest.index[fold.test]}
    assert predicted["fold"].to_dict() == cnn  # the folds training uses: one per source
    assert predicted["fold"].nunique() == 3
