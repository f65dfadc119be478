"""Matched features, selection on other folds, confirmation on held-out patients, gates: on data with a known answer."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cxrbio.analysis import association, confirmation, matching

CLASSES = ["A", "B", "C"]
GATES = SimpleNamespace(gate_q=0.05, gate_min_folds=2, gate_audit=False)


def test_class_partialled_correlation_ignores_a_shared_label_and_keeps_within_class_covariation():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 200)
    label_only = np.column_stack([y * 3.0 + rng.normal(0, 0.1, len(y)), y * 2.0 + rng.normal(0, 0.1, len(y))])
    pooled = np.corrcoef(label_only.T)[0, 1]
    partialled = matching.partialled_correlation(label_only[:, :1], label_only[:, 1:], y)[0, 0]
    assert pooled > 0.95 and abs(partialled) < 0.15  # two label trackers look alike pooled, not within class
    shared = rng.normal(size=len(y))
    within = np.column_stack([shared + y, shared + rng.normal(0, 0.3, len(y))])
    assert matching.partialled_correlation(within[:, :1], within[:, 1:], y)[0, 0] > 0.9


def test_matching_recovers_a_known_permutation_of_units():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], 100)
    units = rng.normal(size=(len(y), 40)) + y[:, None] * rng.normal(size=40)
    permutation = rng.permutation(40)
    other = units[:, permutation] + rng.normal(0, 0.3, units.shape)
    names = [f"e{j:04d}" for j in range(40)]
    matched = matching.match_folds({0: (names, units), 1: (names, other)}, y, min_rho=0.5)
    table = matched.table()
    found = table[table["fold"] == 1].merge(table[table["fold"] == 0], on="feature", suffixes=("", "_ref"))
    truth = {names[permutation[j]]: names[j] for j in range(40)}  # fold-1 column j holds reference unit permutation[j]
    assert len(found) == 40
    assert all(names[permutation[int(d[1:])]] == ref for d, ref in zip(found["dim"], found["dim_ref"]))
    assert truth  # every fold-1 dim went to the unit it copies
    # A fold whose units are unrelated noise matches nothing above the threshold: at most one dim per fold, none here.
    noise = rng.normal(size=units.shape)
    none = matching.match_folds({0: (names, units), 1: (names, noise)}, y, min_rho=0.5).table()
    assert set(none["fold"]) == {0}


def synthetic_study(*, folds=4, patients_per_class=24, noise_dims=60, planted_shift=1.2, seed=0, images=2,
                    shifts=None, leaned=(), control=None):
    """Per fold: patients of 3 classes, each with ``images`` images; dim 'e0000' of every fold model is shifted up in B.

    ``shifts``: {(dim index, class index): shift} planted besides; ``leaned``: (dim index, class index)
    pairs the head leans on as well; ``control``: a class index whose image-level contrasts go into
    the effects (``auc_control``), as the pipeline gives them.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for fold in range(folds):
        for c in range(3):
            for p in range(patients_per_class):
                for _ in range(images):
                    rows.append({"fold": fold, "patient_id": f"f{fold}-c{c}-p{p}", "y": c})
    manifest = pd.DataFrame(rows)
    manifest["image_id"] = [f"img{i:05d}" for i in range(len(manifest))]
    manifest = manifest.set_index("image_id")
    dims = [f"e{j:04d}" for j in range(noise_dims + 1)]
    tables, shap_rows, effect_rows = {}, [], []
    for fold in range(folds):
        ids = manifest.index[manifest["fold"] == fold].to_numpy()
        y = manifest.loc[ids, "y"].to_numpy()
        patient_effect = {p: rng.normal(size=len(dims)) for p in manifest.loc[ids, "patient_id"].unique()}
        values = np.stack([patient_effect[p] for p in manifest.loc[ids, "patient_id"]]) + rng.normal(0, 0.5, (len(ids), len(dims)))
        values[:, 0] += planted_shift * (y == 1)
        for (dim, c), shift in (shifts or {}).items():
            values[:, dim] += shift * (y == c)
        tables[fold] = confirmation.patient_table(fold, ids, values, dims, manifest, {})
        importance = rng.uniform(0, 1, (len(dims), 3))
        importance[0, 1] = 5.0  # the head leans on the planted dim for B
        for dim, c in leaned:
            importance[dim, c] = 5.0
        contrasts = confirmation.control_effects(fold, values, y, dims, CLASSES, control)
        for c, cls in enumerate(CLASSES):
            auc = association.stats.mannwhitneyu(values[y == c], values[y != c], axis=0)[0] / ((y == c).sum() * (y != c).sum())
            shap_rows.append(pd.DataFrame({"fold": fold, "class": cls, "dim": dims, "mean_abs_shap": importance[:, c]}))
            effect = pd.DataFrame({"fold": fold, "class": cls, "dim": dims, "auc": auc})
            if control is not None:
                effect = effect.merge(contrasts, on=["fold", "class", "dim"], how="left")
            effect_rows.append(effect)
    matched = matching.MatchedFeatures(0, list(range(folds)), pd.DataFrame({f: dims for f in range(folds)},
                                                                           index=[f"f{j:04d}" for j in range(len(dims))]),
                                       pd.DataFrame(1.0, index=[f"f{j:04d}" for j in range(len(dims))],
                                                    columns=list(range(folds))), [])
    return matched, tables, pd.concat(shap_rows), pd.concat(effect_rows)


def test_the_planted_dim_passes_and_noise_passes_at_no_more_than_the_nominal_rate():
    matched, tables, shap, effects = synthetic_study()
    result = confirmation.confirm(matched, tables, confirmation.percentile_ranks(shap), effects, CLASSES, top=10,
                                  min_patients=5, resamples=50, level=0.95, seed=0)
    gated = confirmation.gate(result.combined, confirmation.acquisition_tests(result.per_fold, tables, CLASSES), None, GATES)
    planted = gated[(gated["class"] == "B") & (gated["feature"] == "f0000")].iloc[0]
    assert planted["passed"] and planted["auc"] > 0.7 and planted["auc_low"] > 0.5 and planted["folds_agree"] == 4
    noise = gated[gated["feature"] != "f0000"]
    assert len(noise) > 50  # enough noise features were tested for the rate to mean something
    assert noise["passed"].mean() <= 0.05
    # Over many null studies, noise confirms at about the nominal rate before BH (the test is calibrated).
    p_values = []
    for seed in range(1, 6):
        matched, tables, shap, effects = synthetic_study(planted_shift=0.0, seed=seed)
        per_fold = confirmation.confirm(matched, tables, confirmation.percentile_ranks(shap), effects, CLASSES, top=10,
                                        min_patients=5, resamples=10, level=0.95, seed=seed).per_fold
        p_values.append(per_fold["p"].to_numpy())
    assert np.mean(np.concatenate(p_values) < 0.05) <= 0.08


def test_confirmation_uses_one_value_per_patient():
    matched, tables, shap, effects = synthetic_study(images=3, folds=2)
    table = tables[0]
    assert len(table.patients) == 72 and table.values.shape[0] == 72  # 216 images, 72 patients
    result = confirmation.confirm(matched, tables, confirmation.percentile_ranks(shap), effects, CLASSES, top=3,
                                  min_patients=5, resamples=10, level=0.95, seed=0)
    assert set(result.per_fold["n_patients"]) == {72}


def test_too_few_patients_to_confirm_skips_the_class_and_says_so():
    matched, tables, shap, effects = synthetic_study(patients_per_class=3, folds=2)
    result = confirmation.confirm(matched, tables, confirmation.percentile_ranks(shap), effects, CLASSES, top=3,
                                  min_patients=5, resamples=10, level=0.95, seed=0)
    assert result.per_fold.empty and any("A: no held-out fold has 5 patients" in n for n in result.notes)


def with_sites(tables, site_of):
    """Record a site per patient in every fold's table (recorded sources: strata of kind 'recorded')."""
    for table in tables.values():
        table.stratum = np.array([site_of(table, i) for i in range(len(table.y))], dtype=object)
        table.kind = np.full(len(table.y), "recorded", dtype=object)
        table.group = table.stratum.copy()


def test_a_feature_that_reads_the_source_within_class_is_flagged_and_its_disease_effect_estimated_within_sources():
    matched, tables, shap, effects = synthetic_study()
    with_sites(tables, lambda table, i: "site-a" if i % 2 == 0 else "site-b")  # every class at both sites
    for table in tables.values():
        table.values["e0000"] += 3.0 * (table.stratum == "site-b")  # the planted dim now also tracks the site
    designs = {c: confirmation.ClassDesign("recorded", frozenset({"site-a", "site-b"})) for c in CLASSES}
    result = confirmation.confirm(matched, tables, confirmation.percentile_ranks(shap), effects, CLASSES, top=10,
                                  min_patients=5, resamples=20, level=0.95, seed=0, designs=designs)
    equivalence = confirmation.source_equivalence(result.per_fold, tables, CLASSES, margin=0.1, alpha=0.05)
    gated = confirmation.gate(result.combined, confirmation.acquisition_tests(result.per_fold, tables, CLASSES), None, GATES,
                              tiers=confirmation.tiers_of(designs, []), equivalence=equivalence)
    planted = gated[(gated["class"] == "B") & (gated["feature"] == "f0000")].iloc[0]
    # Within each site, B still differs from the rest: the disease effect passes, free of source ...
    assert planted["passed"] and planted["source_tier"] == "free of source" and planted["strata"] == 8
    # ... and the site difference within B is flagged: far from equivalent (AUC near 1), never a gate.
    assert abs(planted["source_auc"] - 0.5) > 0.4 and planted["source_equivalent"] == False  # noqa: E712
    assert planted["source_pair"] == "site-a vs site-b"
    noise = gated[gated["feature"] != "f0000"]
    assert noise["passed"].mean() <= 0.05 and (noise["source_auc"] - 0.5).abs().median() < 0.1  # no site look there


def test_the_audit_gate_fails_flagged_and_unaudited_features_when_it_is_on():
    matched, tables, shap, effects = synthetic_study()
    result = confirmation.confirm(matched, tables, confirmation.percentile_ranks(shap), effects, CLASSES, top=10,
                                  min_patients=5, resamples=20, level=0.95, seed=0)
    audit = pd.DataFrame({"class": ["B"], "feature": ["f0000"], "audited_dims": [4], "flagged_dims": [1]})
    gated = confirmation.gate(result.combined, pd.DataFrame(columns=["class", "feature", "target", "statistic", "df", "p"]),
                              audit, SimpleNamespace(**{**vars(GATES), "gate_audit": True}))
    planted = gated[(gated["class"] == "B") & (gated["feature"] == "f0000")].iloc[0]
    assert not planted["passed"] and "audit" in planted["failed_gates"]
    assert "audit (not audited)" in gated[gated["feature"] != "f0000"]["failed_gates"].iloc[0]


def _gated_with_control(control, **study):
    matched, tables, shap, effects = synthetic_study(control=control, **study)
    result = confirmation.confirm(matched, tables, confirmation.percentile_ranks(shap), effects, CLASSES, top=10,
                                  min_patients=5, resamples=20, level=0.95, seed=0, control=control)
    no_acquisition = pd.DataFrame(columns=["class", "feature", "target", "statistic", "df", "p"])
    return confirmation.gate(result.combined, no_acquisition, None, GATES), result


def test_another_class_detector_is_no_marker_of_a_class_without_a_difference_from_the_controls():
    # e0000 detects B. For A it is lower than the rest only because the rest holds B; A and the
    # controls (C) do not differ. e0001 is lower in A than in both (a normal structure A hides).
    # The head leans on both for A.
    study = dict(shifts={(1, 0): -1.2}, leaned=[(0, 0), (1, 0)], seed=4)
    without, _ = _gated_with_control(None, **study)
    b_for_a = without[(without["class"] == "A") & (without["feature"] == "f0000")].iloc[0]
    assert b_for_a["passed"] and b_for_a["auc"] < 0.4  # one-vs-rest alone lets B's detector pass for A
    gated, result = _gated_with_control(2, **study)
    chosen_for_a = result.per_fold[result.per_fold["class"] == "A"]
    b_detector = gated[(gated["class"] == "A") & (gated["feature"] == "f0000")]
    # The primary contrast is A against the controls: B's detector is not a marker of A there.
    assert b_detector.empty or (not b_detector["passed"].iloc[0] and "confirmation" in b_detector["failed_gates"].iloc[0])
    assert (chosen_for_a["contrast"] == "vs C").all()
    hidden = gated[(gated["class"] == "A") & (gated["feature"] == "f0001")].iloc[0]
    assert hidden["passed"] and hidden["auc"] < 0.3 and hidden["q"] < 0.05 and hidden["contrast"] == "vs C"
    assert hidden["auc_rest"] < 0.4  # the secondary contrast, reported beside it
    planted = gated[(gated["class"] == "B") & (gated["feature"] == "f0000")].iloc[0]
    assert planted["passed"] and planted["auc"] > 0.7
    # The controls themselves are compared with the rest.
    assert (gated.loc[gated["class"] == "C", "contrast"] == "vs rest").all()


def test_untestable_never_passes():
    """A class whose design holds no stratum with both groups is not tested; a tier that cannot pass stops a feature."""
    matched, tables, shap, effects = synthetic_study()
    designs = {"A": confirmation.ClassDesign("none", frozenset()), "B": confirmation.ClassDesign("inferred", frozenset({"all"})),
               "C": confirmation.ClassDesign("inferred", frozenset({"all"}))}
    result = confirmation.confirm(matched, tables, confirmation.percentile_ranks(shap), effects, CLASSES, top=10,
                                  min_patients=5, resamples=20, level=0.95, seed=0, designs=designs)
    assert "A" not in set(result.per_fold["class"]) and any(n.startswith("A: no stratum") for n in result.notes)
    tiers = confirmation.tiers_of(designs, acquisition_flagged=["B"])
    assert tiers == {"A": "not estimable", "B": "acquisition-confounded", "C": "source unverified"}
    no_acquisition = pd.DataFrame(columns=["class", "feature", "target", "statistic", "df", "p"])
    gated = confirmation.gate(result.combined, no_acquisition, None, GATES, tiers=tiers)
    planted = gated[(gated["class"] == "B") & (gated["feature"] == "f0000")].iloc[0]
    assert planted["q"] < 0.05 and not planted["passed"] and planted["failed_gates"] == "source (acquisition-confounded)"
    assert not gated.loc[gated["class"] == "B", "passed"].any()


def test_a_control_class_absent_from_the_data_is_noted_at_its_default_and_refused_when_named():
    from cxrbio.analysis.spaces import control_class
    from cxrbio.config import Config
    from cxrbio.errors import ConfigError

    def inputs(classes, **analysis):
        return SimpleNamespace(classes=classes, config=Config.model_validate({"analysis": analysis}))

    summary = SimpleNamespace(notes=[])
    assert control_class(inputs(["COVID-19", "Normal"]), "scratch", summary) == 1
    assert control_class(inputs(["COVID-19", "Pneumonia"]), "scratch", summary) is None
    assert any("no class 'Normal'" in n and "analysis.control_class" in n for n in summary.notes)
    with pytest.raises(ConfigError, match="analysis.control_class is 'Healthy'"):
        control_class(inputs(["COVID-19", "Pneumonia"], control_class="Healthy"), "scratch", summary)
    assert control_class(inputs(["COVID-19", "Normal"], control_class=None), "scratch", summary) is None
    assert control_class(inputs(["COVID-19", "Normal"], gate_control=False), "scratch", summary) is None


def test_partialled_descriptors_drop_class_mediated_correlation():
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 150)
    source = rng.choice(["a", "b"], len(y))
    dim = y * 2.0 + rng.normal(0, 0.2, len(y))  # tracks the class only
    within = rng.normal(size=len(y))
    radiomics = np.column_stack([y * 2.0 + rng.normal(0, 0.2, len(y)),  # differs by class only
                                 within + rng.normal(0, 0.3, len(y))])
    covariates = association.indicators(y, source)
    table = association.partial_descriptors([(association.residual_ranks(dim[:, None], covariates)[:, 0],
                                              association.residual_ranks(radiomics, covariates))], ["class_only", "other"],
                                            covariates.shape[1])
    assert abs(association.spearman(dim[:, None], radiomics[:, :1])[0][0, 0]) > 0.7  # pooled: strongly "described"
    assert abs(table.set_index("feature").loc["class_only", "rho"]) < 0.2  # partialled: not
    dim2 = within + y
    table = association.partial_descriptors([(association.residual_ranks(dim2[:, None], covariates)[:, 0],
                                              association.residual_ranks(radiomics, covariates))], ["class_only", "other"],
                                            covariates.shape[1])
    assert table.set_index("feature").loc["other", "rho"] > 0.8 and table.set_index("feature").loc["other", "q"] < 1e-6


def test_cca_null_permutes_within_class():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    order = association.within_class_permutation(y, rng)
    assert (y[order] == y).all() and not (order == np.arange(len(y))).all()


def head_model(kernel_shift=None):
    import keras

    from cxrbio.models.layers import HEAD_BN, HEAD_DENSE, HEAD_DROPOUT, HEAD_OUTPUT

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    x = keras.layers.Dense(8, activation="relu", name=HEAD_DENSE)(inputs)
    x = keras.layers.BatchNormalization(name=HEAD_BN)(x)
    x = keras.layers.Dropout(0.5, name=HEAD_DROPOUT)(x)
    out = keras.layers.Dense(3, activation="softmax", name=HEAD_OUTPUT)(x)
    model = keras.Model(inputs, out)
    bn = model.get_layer(HEAD_BN)
    bn.set_weights([np.full(8, 1.5, np.float32), np.full(8, 0.1, np.float32), np.full(8, 0.2, np.float32),
                    np.full(8, 2.0, np.float32)])
    return model


def test_centred_logit_shap_ignores_a_term_common_to_every_logit():
    from cxrbio.analysis import attribution
    from cxrbio.models.layers import HEAD_OUTPUT

    model = head_model()
    rng = np.random.default_rng(0)
    background, explained = rng.normal(size=(32, 6)).astype(np.float32), rng.normal(size=(20, 6)).astype(np.float32)
    shifted = head_model()
    kernel, bias = model.get_layer(HEAD_OUTPUT).get_weights()
    common = rng.normal(size=(kernel.shape[0], 1)).astype(np.float32) * 3  # a feature-dependent term added to all logits
    shifted.get_layer(HEAD_OUTPUT).set_weights([kernel + common, bias + 1.0])
    names = [f"e{j}" for j in range(6)]
    tables = []
    for m in (model, shifted):
        head = attribution.logits_head(m)
        assert attribution.head_error(m, head, explained) < 1e-5  # the folded head is the model's head
        result = attribution.explain_head(head, background, explained, names, CLASSES)
        assert result.additivity_error < 1e-4
        tables.append(result.table.set_index(["feature", "class"])["mean_abs_shap"])
    np.testing.assert_allclose(tables[0].to_numpy(), tables[1].to_numpy(), rtol=1e-4, atol=1e-5)
    raw = [attribution.explain_head(attribution.logits_head(m, centred=False), background, explained, names, CLASSES)
           .table.set_index(["feature", "class"])["mean_abs_shap"].to_numpy() for m in (model, shifted)]
    assert not np.allclose(raw[0], raw[1], rtol=1e-2)  # raw logits: the common term inflates every class


@pytest.mark.parametrize("bad", [{"gate_q": 0.0}, {"gate_q": 1.5}, {"gate_min_folds": 0}, {"match_min_rho": 1.2}])
def test_gate_settings_out_of_range_are_refused(bad):
    from cxrbio.config import AnalysisConfig

    with pytest.raises(ValueError):
        AnalysisConfig(**bad)


def nested_site_study(*, finding: float, isolated: bool = False, seed: int = 5):
    """A (the disease) entirely at site 'n'; C (the controls) half at 'n', half at 'a' (or none at 'n': ``isolated``),
    B at 'a'. e0000 is the site's look (+2 at 'n'), which the head leans on for A; e0001 is A's finding (``finding``)."""
    matched, tables, shap, effects = synthetic_study(shifts={(1, 0): finding}, leaned=[(0, 0), (1, 0)], planted_shift=0.0,
                                                     seed=seed, control=2)

    def site(table, i):
        if table.y[i] == 0:
            return "site-n"
        if table.y[i] == 2 and not isolated:
            return "site-n" if i % 2 == 0 else "site-a"
        return "site-a"

    with_sites(tables, site)
    for table in tables.values():
        table.values["e0000"] += 2.0 * (table.stratum == "site-n")
    # The selection's image-level effects see the site look as a difference between A and the controls.
    effects.loc[(effects["class"] == "A") & (effects["dim"] == "e0000"), ["auc", "auc_control"]] = 0.9
    return matched, tables, shap, effects


def test_a_source_nested_in_a_class_does_not_pass_within_source_and_a_real_finding_there_does():
    from cxrbio.confounding.design import design_table

    for finding, expect_finding in ((0.0, False), (1.5, True)):
        matched, tables, shap, effects = nested_site_study(finding=finding)
        manifest = pd.DataFrame([{"patient_id": f"{fold}-{p}", "label": CLASSES[y], "source": s}
                                 for fold, t in tables.items() for p, y, s in zip(t.patients, t.y, t.stratum)])
        design, _ = design_table(manifest, CLASSES, control="C", alpha=0.05, power=0.8)
        assert design.set_index("class").loc["A", "design"] == "estimable"
        assert design.set_index("class").loc["A", "strata"] == "site-n"
        designs = confirmation.designs_from_table(design)
        result = confirmation.confirm(matched, tables, confirmation.percentile_ranks(shap), effects, CLASSES, top=10,
                                      min_patients=5, resamples=20, level=0.95, seed=0, control=2, designs=designs)
        no_acquisition = pd.DataFrame(columns=["class", "feature", "target", "statistic", "df", "p"])
        gated = confirmation.gate(result.combined, no_acquisition, None, GATES, tiers=confirmation.tiers_of(designs, []))
        a = gated[gated["class"] == "A"].set_index("feature")
        look = a.loc["f0000"]  # tested: the other folds predicted it from the image-level (unstratified) effects
        assert not look["passed"] and "confirmation" in look["failed_gates"] and abs(look["auc"] - 0.5) < 0.2
        assert look["strata"] == 4 and look["source_tier"] == "free of source"  # site-n of each fold only
        if expect_finding:
            assert a.loc["f0001", "passed"] and a.loc["f0001", "auc"] > 0.75
        else:
            assert not a["passed"].any()
        # Unstratified (the previous behaviour), the site's look passes as a marker of A against the controls.
        with_sites(tables, lambda table, i: "all")
        pooled = confirmation.confirm(matched, tables, confirmation.percentile_ranks(shap), effects, CLASSES, top=10,
                                      min_patients=5, resamples=20, level=0.95, seed=0, control=2)
        naive = confirmation.gate(pooled.combined, no_acquisition, None, GATES)
        assert naive[(naive["class"] == "A") & (naive["feature"] == "f0000")]["passed"].iloc[0]


def test_a_class_isolated_at_a_site_without_controls_is_not_estimable_and_not_tested():
    from cxrbio.confounding.design import design_table

    matched, tables, shap, effects = nested_site_study(finding=1.5, isolated=True)
    manifest = pd.DataFrame([{"patient_id": f"{fold}-{p}", "label": CLASSES[y], "source": s}
                             for fold, t in tables.items() for p, y, s in zip(t.patients, t.y, t.stratum)])
    design, _ = design_table(manifest, CLASSES, control="C", alpha=0.05, power=0.8)
    row = design.set_index("class").loc["A"]
    assert row["design"] == "not estimable" and "only in source(s) site-n, which hold no C images" in row["note"]
    designs = confirmation.designs_from_table(design)
    result = confirmation.confirm(matched, tables, confirmation.percentile_ranks(shap), effects, CLASSES, top=10,
                                  min_patients=5, resamples=20, level=0.95, seed=0, control=2, designs=designs)
    assert "A" not in set(result.per_fold["class"])
    assert confirmation.tiers_of(designs, [])["A"] == "not estimable"


def test_a_covariate_that_names_the_source_again_is_left_to_the_strata_and_others_stay_gate_targets():
    from cxrbio.analysis.spaces import patient_targets
    from cxrbio.config import Config

    manifest = pd.DataFrame({"source": ["a", "a", "b", "b", "unknown"], "site": ["s1", "s1", "s2", "s2", "s3"],
                             "sex": ["F", "M", "F", "M", "F"], "label": ["A"] * 5})
    notes: list[str] = []
    targets = patient_targets(SimpleNamespace(manifest=manifest, config=Config()), notes)
    assert "site" not in targets and "sex" in targets and "source" not in targets
    assert any("covariate 'site' takes one value within each recorded source" in n for n in notes)


def _opposed_folds(agreeing_auc: float = 0.58, opposed_auc: float = 0.30, agreeing: int = 2, folds: int = 10):
    """Per-fold rows of one feature predicted 'higher -> class' on every fold, with ``agreeing`` folds on that side."""
    from cxrbio.analysis import stratified

    rng = np.random.default_rng(0)
    rows, boot, blocks = [], {}, []
    for fold in range(folds):
        auc = agreeing_auc if fold < agreeing else opposed_auc
        n = 200  # patients per group in the fold's one stratum
        # values whose AUC is close to the wanted one: a shift of the class's normal values
        shift = np.sqrt(2) * stats.norm.ppf(auc)
        values = np.r_[rng.normal(shift, 1, n), rng.normal(0, 1, n)]
        group = np.r_[np.ones(n, bool), np.zeros(n, bool)]
        found = stratified.blocks(values[:, None], group, ~group, np.zeros(2 * n))
        together = stratified.combine(found, 1)
        blocks += found
        boot[("Pneumonia", "f0001", fold)] = np.zeros(20) + together.t[0]
        rows.append({"class": "Pneumonia", "feature": "f0001", "fold": fold, "dim": "e0001", "contrast": "vs Normal",
                     "n_patients": 2 * n, "n_class": n, "n_reference": n, "strata": 1, "smallest": n,
                     "t": float(together.t[0]), "var": float(together.var[0]), "weight": together.weight,
                     "auc": float(together.auc[0]), "z": float(together.z[0]), "p": float(together.p_normal[0]),
                     "selection_score": 1.0, "selection_folds": folds - 1, "expected_direction": 1,
                     "agrees": bool(together.auc[0] > 0.5), "n_rest": n, "t_rest": float(together.t[0]),
                     "var_rest": float(together.var[0]), "weight_rest": together.weight, "smallest_rest": n,
                     "auc_rest": float(together.auc[0]), "z_rest": float(together.z[0])})
    per_fold = pd.DataFrame(rows, columns=confirmation.PER_FOLD_COLUMNS)
    parts = {("Pneumonia", "f0001"): {"primary": blocks, "rest": blocks, "signs": [1] * folds,
                                      "signs_rest": [1] * folds}}
    combined = confirmation.combine(per_fold, boot, parts, 0.95, permutation_below=5, permutations=999,
                                    rng=np.random.default_rng(1))
    return per_fold, combined


def test_two_agreeing_folds_against_eight_opposed_fail_the_direction_and_confirmation_gates():
    """The review's example: 2 folds at AUC 0.58 on the predicted side, 8 at 0.30 against it.

    A two-sided combined test with 'at least 2 folds agree' passed it (z = -6.1) and reported it on
    the side the data contradict; one-sided in the predicted direction with a majority rule it fails.
    """
    per_fold, combined = _opposed_folds()
    row = combined.iloc[0]
    assert row["folds_agree"] == 2 and row["folds_tested"] == 10 and row["expected_direction"] == 1
    assert row["auc"] < 0.45 and row["z"] < -4  # the directed z: far on the wrong side
    assert row["p"] > 0.99  # one-sided in the predicted direction
    assert row["re_auc"] < 0.5 and row["re_p"] > 0.9 and np.isfinite(row["i2"]) and np.isfinite(row["heterogeneity_q"])
    no_acquisition = pd.DataFrame(columns=["class", "feature", "target", "statistic", "df", "p"])
    gated = confirmation.gate(combined, no_acquisition, None, GATES)
    assert not gated["gate_direction"].iloc[0] and not gated["gate_confirmation"].iloc[0] and not gated["passed"].iloc[0]
    # the same folds all on the predicted side pass both gates (the gates can pass)
    _, agreeing = _opposed_folds(agreeing=10)
    passed = confirmation.gate(agreeing, no_acquisition, None, GATES)
    assert passed["gate_direction"].iloc[0] and passed["gate_confirmation"].iloc[0]
    assert agreeing["re_p"].iloc[0] < 0.001 and 0.55 < agreeing["re_auc"].iloc[0] < 0.62


def test_a_majority_on_the_predicted_side_with_a_heterogeneous_minority_is_judged_by_the_random_effects_rule():
    _, combined = _opposed_folds(agreeing_auc=0.75, opposed_auc=0.45, agreeing=6)
    no_acquisition = pd.DataFrame(columns=["class", "feature", "target", "statistic", "df", "p"])
    majority = confirmation.gate(combined, no_acquisition, None, GATES)
    assert majority["gate_direction"].iloc[0]
    assert combined["i2"].iloc[0] > 0.5  # folds disagree far beyond their sampling error
    strict = SimpleNamespace(**{**vars(GATES), "direction_rule": "random-effects"})
    judged = confirmation.gate(combined, no_acquisition, None, strict)
    assert bool(judged["gate_direction"].iloc[0]) == bool(combined["re_p"].iloc[0] < 0.05)


def test_the_directed_permutation_p_is_one_sided():
    from cxrbio.analysis import stratified

    rng = np.random.default_rng(3)
    values = np.r_[rng.normal(2.0, 1, 8), rng.normal(0, 1, 8)][:, None]
    group = np.r_[np.ones(8, bool), np.zeros(8, bool)]
    found = stratified.blocks(values, group, ~group, np.zeros(16))
    right = stratified.permutation_p(found, resamples=1999, rng=rng, signs=np.array([1]))[0]
    wrong = stratified.permutation_p(found, resamples=1999, rng=rng, signs=np.array([-1]))[0]
    both = stratified.permutation_p(found, resamples=1999, rng=rng)[0]
    assert right < 0.05 < 0.95 < wrong and right < both


def test_matching_noise_at_the_real_samples_size_matches_what_a_shuffle_does_and_planted_units_still_match():
    """1,280 pure-noise dims per model at 74 images: a fixed r >= 0.3 matched nearly all; the null threshold does not."""
    rng = np.random.default_rng(5)
    n, d, shared = 74, 1280, 24
    groups = np.repeat([0, 1, 2], [30, 24, 20])
    names = [f"e{j:04d}" for j in range(d)]
    a, b = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    fixed = matching.match_folds({0: (names, a), 1: (names, b)}, groups, min_rho=0.3, null_quantile=None)
    assert fixed.pairs["matched"].iloc[0] > 0.8 * d  # the review's finding, reproduced
    nulled = matching.match_folds({0: (names, a), 1: (names, b)}, groups, min_rho=0.3, null_quantile=0.99, seed=1)
    pair = nulled.pairs.iloc[0]
    assert pair["matched"] <= 0.02 * d and pair["null_matched"] <= 0.02 * d
    assert pair["threshold"] > 0.3 and pair["images"] == n
    # planted: 24 units the two models share (with noise) stand out of the null and are found
    b[:, :shared] = a[:, :shared] * 0.9 + rng.normal(0, 0.3, (n, shared))
    planted = matching.match_folds({0: (names, a), 1: (names, b)}, groups, min_rho=0.3, null_quantile=0.99, seed=2)
    table = planted.table()
    found = table[table["fold"] == 1]
    recovered = {dim for dim in found["dim"] if int(dim[1:]) < shared}
    assert len(recovered) >= shared - 1
    assert planted.pairs["matched"].iloc[0] <= shared + 0.02 * d


def test_matching_compares_a_pair_only_on_the_images_one_of_them_held_out():
    rng = np.random.default_rng(6)
    held_out = np.repeat([0, 1, 2], 40)
    groups = rng.integers(0, 2, len(held_out))
    names = [f"e{j:04d}" for j in range(8)]
    values = {f: (names, rng.normal(size=(len(held_out), 8))) for f in range(3)}
    matched = matching.match_folds(values, groups, min_rho=0.0, null_quantile=0.9, held_out=held_out)
    assert matched.pairs.set_index("fold")["images"].to_dict() == {1: 80, 2: 80}


def test_one_error_rate_across_56_null_families_holds_the_level_where_a_bh_per_family_does_not():
    """The paper's 8 strategies x 7 classes: a BH per family errs in about 56 x 5% x (share) of runs; the hierarchy at 5%."""
    from cxrbio.evaluation.multiple_testing import benjamini_bogomolov, benjamini_hochberg

    rng = np.random.default_rng(7)
    families = np.repeat(np.arange(56), 10)
    hierarchy = per_family = 0
    for _ in range(200):
        p = rng.uniform(size=560)
        adjusted, counts = benjamini_bogomolov(p, families, level=0.05)
        hierarchy += bool((adjusted < 0.05).any())
        per_family += bool(any((benjamini_hochberg(p[families == f]) < 0.05).any() for f in range(56)))
        assert counts == {"families": 56, "selected": counts["selected"], "tests": 560}
    assert hierarchy / 200 <= 0.1 and per_family / 200 >= 0.6
    # a real family of 10 strong effects among 55 null ones is still found whole
    p = np.r_[rng.uniform(size=550), np.full(10, 1e-6)]
    adjusted, counts = benjamini_bogomolov(p, families, level=0.05)
    assert (adjusted[550:] < 0.05).all() and counts["selected"] >= 1


def test_the_error_rate_settles_passes_again_and_a_primary_strategy_splits_the_hierarchy():
    from cxrbio.analysis import error_rate

    def frame(p, p_rest):
        return pd.DataFrame({"class": ["B"] * len(p), "feature": [f"f{i}" for i in range(len(p))], "p": p, "q": p,
                             "p_rest": p_rest, "gate_confirmation": True, "gate_direction": True, "gate_source": True,
                             "gate_acquisition": True, "gate_audit": np.nan, "gate_audit_required": False,
                             "source_tier": "free of source"})

    strong = frame([1e-8, 0.4], [1e-7, 0.5])
    only_vs_controls = frame([1e-8, 0.3], [0.6, 0.7])  # differs from the controls only: not a marker of the class
    settings = SimpleNamespace(gate_q=0.05, primary_strategy=None, error_rate_contrasts="both")
    out, summary = error_rate.across_families({"scratch": strong, "offshelf": only_vs_controls}, settings)
    assert out["scratch"].set_index("feature").loc["f0", "passed"]
    assert not out["offshelf"]["passed"].any() and "confirmation" in out["offshelf"]["failed_gates"].iloc[0]
    assert summary == [{"scope": "every strategy", "strategies": ["scratch", "offshelf"], "contrasts": "both",
                        "level": 0.05, "families": 2, "selected": 1, "tests": 4}]
    primary = SimpleNamespace(gate_q=0.05, primary_strategy="scratch", error_rate_contrasts="primary")
    out, summary = error_rate.across_families({"scratch": strong, "offshelf": only_vs_controls}, primary)
    assert [row["scope"] for row in summary] == ["confirmatory", "exploratory"]
    assert out["offshelf"].set_index("feature").loc["f0", "passed"]  # the primary contrast alone


def test_a_primary_strategy_that_is_not_trained_is_refused():
    from cxrbio.config import Config

    with pytest.raises(ValueError, match="analysis.primary_strategy is 'scratch'"):
        Config.model_validate({"train": {"strategies": ["offshelf"]}, "analysis": {"primary_strategy": "scratch"}})


def _residual_parts(unit, radiomics, sources, folds=2):
    """Per fold, (unit residual ranks, radiomics residual ranks) with source partialled, as the pipeline builds them."""
    parts = []
    for k in range(folds):
        rows = np.arange(len(unit)) % folds == k
        covariates = association.indicators(sources[rows])
        parts.append((association.residual_ranks(unit[rows, None], covariates)[:, 0],
                      association.residual_ranks(radiomics[rows], covariates)))
    return parts


def test_an_exposure_tracking_unit_is_a_nuisance_and_a_lesion_tracking_unit_is_disease_specific():
    """Within the disease both units follow a radiomics feature; only the lesion unit does so more than within controls."""
    rng = np.random.default_rng(11)
    n = 80
    names = ["lung_mean_intensity", "lesion_glcm_contrast", "noise_feature"]

    def group(has_lesion: bool):
        exposure = rng.normal(size=n)
        lesion = rng.uniform(0.3, 1.0, n) if has_lesion else np.zeros(n)
        radiomics = np.column_stack([exposure + rng.normal(0, 0.3, n), lesion + rng.normal(0, 0.1, n),
                                     rng.normal(size=n)])
        return exposure, lesion, radiomics, rng.choice(["a", "b"], n)

    e_d, l_d, r_d, s_d = group(True)
    e_c, l_c, r_c, s_c = group(False)
    exposure_unit = association.contrasted_descriptors(
        _residual_parts(e_d + rng.normal(0, 0.2, n), r_d, s_d), _residual_parts(e_c + rng.normal(0, 0.2, n), r_c, s_c),
        names, 1).set_index("feature")
    lesion_unit = association.contrasted_descriptors(
        _residual_parts(l_d + rng.normal(0, 0.05, n), r_d, s_d), _residual_parts(rng.normal(size=n), r_c, s_c),
        names, 1).set_index("feature")
    assert exposure_unit.loc["lung_mean_intensity", "descriptor_tier"] == "nuisance"
    assert exposure_unit.loc["lung_mean_intensity", "rho_disease"] > 0.8  # pooled within the disease it looks like physics
    assert association.candidate_tier(exposure_unit.reset_index()) == "nuisance"
    assert lesion_unit.loc["lesion_glcm_contrast", "descriptor_tier"] == "disease-specific"
    assert lesion_unit.loc["lesion_glcm_contrast", "p_difference"] < 0.001
    assert lesion_unit.loc["noise_feature", "descriptor_tier"] == "none"
    assert association.candidate_tier(lesion_unit.reset_index()) == "disease-specific"
    alone = association.contrasted_descriptors(_residual_parts(l_d, r_d, s_d), [], names, 1).set_index("feature")
    assert alone.loc["lesion_glcm_contrast", "descriptor_tier"] == "not compared"


def test_the_specificity_profile_tells_a_marker_of_one_disease_from_one_of_several():
    """Dim 0 is higher in B only; dim 1 higher in B and C alike: against C the second is no marker of B."""
    matched, tables, shap, effects = synthetic_study(shifts={(1, 1): 1.5, (1, 2): 1.5}, leaned=[(1, 1)],
                                                     planted_shift=1.5)
    result = confirmation.confirm(matched, tables, confirmation.percentile_ranks(shap), effects, CLASSES, top=10,
                                  min_patients=5, resamples=20, level=0.95, seed=0)
    profile = confirmation.specificity_profile(result.per_fold, tables, CLASSES)
    b = profile[profile["class"] == "B"].set_index(["feature", "other"])["auc_directed"]
    assert b[("f0000", "A")] > 0.75 and b[("f0000", "C")] > 0.75
    assert b[("f0001", "A")] > 0.75 and 0.35 < b[("f0001", "C")] < 0.65
    columns = confirmation.profile_columns(profile).set_index(["class", "feature"])
    assert columns.loc[("B", "f0001"), "weakest_other"] == "C"
    assert confirmation.marker_kind(-1, "vs Normal") == "negative marker (lower than Normal)"
    assert confirmation.marker_kind(1, "vs rest").startswith("lesion marker")


def test_the_mediation_share_credits_the_lesion_feature_and_not_a_feature_every_image_has():
    """The unit is higher in the disease through its lesion; exposure moves it in both groups alike."""
    rng = np.random.default_rng(5)
    n = 120
    disease = np.arange(2 * n) < n
    lesion = np.where(disease, rng.uniform(0.3, 1.0, 2 * n), 0.0)
    exposure = rng.normal(size=2 * n)
    unit = 2.0 * lesion + 0.5 * exposure + rng.normal(0, 0.2, 2 * n)
    mediators = np.column_stack([lesion + rng.normal(0, 0.05, 2 * n), exposure + rng.normal(0, 0.1, 2 * n)])
    source = association.indicators(rng.choice(["a", "b"], 2 * n))
    table = association.mediation(unit, disease, mediators, source, ["lesion_mean", "lung_exposure"],
                                  resamples=100, level=0.95, seed=0).set_index("feature")
    assert table.loc["lesion_mean", "mediates"]
    assert table.loc["lesion_mean", "mediation_share"] > 0.8 and table.loc["lesion_mean", "mediation_low"] > 0.5
    assert not table.loc["lung_exposure", "mediates"]
    assert abs(table.loc["lung_exposure", "mediation_share"]) < 0.2
    assert table.loc["lung_exposure", "mediation_low"] <= 0 and table.loc["lung_exposure", "mediation_high"] < 0.2
    assert table.loc["lesion_mean", "a_effect"] > 0 and table.loc["lesion_mean", "total_effect"] > 0


def test_on_the_phantom_an_exposure_unit_and_a_lung_brightness_unit_are_nuisance(tmp_path):
    """The phantom writes each image's exposure; units built from it (or from the lungs' mean brightness)
    follow lung brightness as much within Normal as within Pneumonia: nuisance, not disease-specific."""
    from PIL import Image

    from cxrbio.data.phantom import generate_phantom

    manifest = generate_phantom(tmp_path / "p", per_class=30, size=64, seed=8, severity=(0.3, 1.0))
    rng = np.random.default_rng(0)
    groups = {}
    for cls in ("Pneumonia", "Normal"):
        part = manifest[manifest["label"] == cls]
        brightness, spread = [], []
        for row in part.itertuples():
            image = np.asarray(Image.open(tmp_path / "p" / row.path), np.float64)
            lung = np.asarray(Image.open(tmp_path / "p" / row.lung_mask)) > 0
            brightness.append(image[lung].mean())
            spread.append(image[lung].std())
        exposure = (part["acq_gain"] + part["acq_bias"] - 0.5 * (part["acq_gamma"] - 1)).to_numpy()
        groups[cls] = (exposure + rng.normal(0, 0.01, len(part)), np.array(brightness),
                       np.column_stack([brightness, spread]), part["source"].to_numpy())
    names = ["lung_firstorder_Mean", "lung_firstorder_StandardDeviation"]
    for unit in (0, 1):  # 0: the exposure unit, 1: the mean-lung-brightness unit
        disease, control = groups["Pneumonia"], groups["Normal"]
        table = association.contrasted_descriptors(
            _residual_parts(disease[unit], disease[2], disease[3]), _residual_parts(control[unit], control[2], control[3]),
            names, 1).set_index("feature")
        assert table.loc["lung_firstorder_Mean", "q_disease"] < 0.05
        assert table.loc["lung_firstorder_Mean", "descriptor_tier"] == "nuisance"
        assert association.candidate_tier(table.reset_index()) != "disease-specific"
