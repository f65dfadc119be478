"""The study's metrics from hand-made predictions, against hand-computed and published numbers."""

import numpy as np
import pytest

from cxrbio.evaluation.metrics import paper_metrics
from cxrbio.evaluation.paper import PAPER_CLASSES
from tests.helpers import synthetic_predictions

CLASSES = list(PAPER_CLASSES)


def predictions_from_binary_table(tp, fp, fn, tn):
    """7-class predictions that reproduce a COVID-vs-rest table (COVID-19 = 0; others spread over 1..6)."""
    others = np.arange(fp + tn) % 6 + 1
    y_true = np.concatenate([np.zeros(tp + fn, int), others])
    y_pred = np.concatenate([np.zeros(tp, int), np.full(fn, 6), np.zeros(fp, int), others[fp:]])
    return y_true, y_pred


def test_table_7_of_the_study():
    """TP 443, FP 20, FN 12, TN 3430: 99.18 % accuracy, 97.36 % sensitivity, 99.42 % specificity."""
    y_true, y_pred = predictions_from_binary_table(443, 20, 12, 3430)
    binary = paper_metrics(y_true, y_pred, CLASSES, "COVID-19")["binary"]
    assert (binary["tp"], binary["fp"], binary["fn"], binary["tn"]) == (443, 20, 12, 3430)
    assert round(100 * binary["accuracy"], 2) == 99.18
    assert round(100 * binary["sensitivity"], 2) == 97.36
    assert round(100 * binary["specificity"], 2) == 99.42


def test_table_3_of_the_study_offshelf():
    """Table 3: TP 21, FP 3, FN 434, TN 3447 -> Table 1's 88.81 % (2-class) and 4.62 % sensitivity."""
    y_true, y_pred = predictions_from_binary_table(21, 3, 434, 3447)
    binary = paper_metrics(y_true, y_pred, CLASSES, "COVID-19")["binary"]
    assert round(100 * binary["accuracy"], 2) == 88.81
    assert round(100 * binary["sensitivity"], 2) == 4.62


def test_multiclass_metrics_by_hand():
    classes = ["A", "B", "C"]
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    m = paper_metrics(y_true, y_pred, classes, "A")
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]  # rows true, columns predicted
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    b = m["per_class"]["B"]
    assert (b["tp"], b["fp"], b["fn"], b["tn"]) == (1, 1, 1, 3)
    assert b["sensitivity"] == pytest.approx(0.5) and b["specificity"] == pytest.approx(0.75)
    assert m["binary"]["sensitivity"] == pytest.approx(2 / 3) and m["binary"]["specificity"] == 1.0
    assert m["confusion_binary"] == [[2, 1], [0, 3]]


def test_without_positive_class_and_absent_class():
    m = paper_metrics(np.array([0, 1]), np.array([0, 1]), ["A", "B", "C"], None)
    assert "binary" not in m and m["accuracy"] == 1.0
    assert np.isnan(m["per_class"]["C"]["sensitivity"])  # no C images: undefined, not 0


def test_strategy_metrics_pool_folds_and_bootstrap_patients():
    from cxrbio.evaluation.metrics import strategy_metrics

    predictions = synthetic_predictions()
    m = strategy_metrics(predictions, CLASSES, "COVID-19", {0: "fold 0", 1: "fold 1", 2: "fold 2"}, n_boot=200)
    pooled = (predictions["true"] == predictions["predicted"]).mean()
    assert m["pooled"]["accuracy"] == pytest.approx(pooled)
    folds = [m["folds"][str(k)]["accuracy"] for k in range(3)]
    assert m["fold_mean"]["accuracy"] == pytest.approx(np.mean(folds))
    assert m["fold_sd"]["accuracy"] == pytest.approx(np.std(folds, ddof=1))
    lo, hi = m["ci95"]["accuracy"]
    assert lo < pooled < hi and hi - lo < 0.25
    assert 0.5 < m["pooled"]["auroc"]["COVID-19"] <= 1.0
    assert sum(map(sum, m["pooled"]["confusion"])) == len(predictions)


def test_nadeau_bengio_is_more_conservative_than_the_naive_t_test():
    from scipy import stats

    from cxrbio.evaluation.metrics import nadeau_bengio_ttest

    a = [0.80, 0.82, 0.79, 0.85, 0.81, 0.83, 0.80, 0.84, 0.82, 0.81]
    b = [0.78, 0.80, 0.79, 0.82, 0.80, 0.80, 0.79, 0.81, 0.80, 0.80]
    corrected = nadeau_bengio_ttest(a, b, n_train=900, n_test=100)
    naive = stats.ttest_rel(a, b)
    assert corrected["p"] > naive.pvalue
    d = np.subtract(a, b)  # by hand: t = mean / sqrt((1/k + n_test/n_train) * var)
    t = d.mean() / np.sqrt((1 / 10 + 100 / 900) * d.var(ddof=1))
    assert corrected["t"] == pytest.approx(t)


def test_mcnemar_counts_discordant_pairs():
    from cxrbio.evaluation.metrics import mcnemar_test

    a = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], bool)
    b = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 1], bool)
    result = mcnemar_test(a, b)
    assert (result["only_a_correct"], result["only_b_correct"]) == (6, 1) and result["exact"]
    assert result["p"] == pytest.approx(0.125, abs=1e-3)  # exact binomial, 7 discordant pairs, 1 vs 6


def test_balanced_class_weights_cover_every_class():
    from cxrbio.training.data import class_weights

    y = np.array([0] * 30 + [1] * 10 + [2] * 20)
    weights = class_weights(y, n_classes=4)
    assert weights[1] == pytest.approx(60 / (3 * 10)) and weights[0] == pytest.approx(60 / (3 * 30))
    assert weights[3] == 1.0  # a class absent from this fold's training rows gets a neutral weight


def hand_made_three_folds():
    """10 images in 3 folds, two classes, one image per patient except p0 (two images in fold 0).

    fold 0: 3 of 4 correct, fold 1: 2 of 2, fold 2: 1 of 4 -> fold mean (0.75 + 1 + 0.25) / 3,
    pooled 6 / 10.
    """
    import pandas as pd

    rows = [  # fold, true, predicted, p(A)
        (0, 0, 0, 0.9), (0, 0, 0, 0.8), (0, 1, 1, 0.3), (0, 1, 0, 0.6),
        (1, 0, 0, 0.7), (1, 1, 1, 0.2),
        (2, 0, 1, 0.4), (2, 1, 0, 0.9), (2, 1, 0, 0.55), (2, 1, 1, 0.1),
    ]
    frame = pd.DataFrame(rows, columns=["fold", "true", "predicted", "p_A"])
    frame["p_B"] = 1 - frame["p_A"]
    frame["image_id"] = [f"i{k}" for k in range(len(frame))]
    frame["patient_id"] = ["p0", "p0"] + [f"p{k}" for k in range(2, len(frame))]
    return frame


def test_fold_mean_sd_and_range_by_hand_on_three_folds():
    from cxrbio.evaluation.metrics import strategy_metrics

    m = strategy_metrics(hand_made_three_folds(), ["A", "B"], "A", {}, n_boot=50)
    per_fold = [0.75, 1.0, 0.25]
    assert m["fold_mean"]["accuracy"] == pytest.approx(np.mean(per_fold))  # the paper's kind of figure
    assert m["pooled"]["accuracy"] == pytest.approx(0.6)  # not the same number
    assert m["fold_sd"]["accuracy"] == pytest.approx(np.std(per_fold, ddof=1))
    assert m["fold_range"]["accuracy"] == [0.25, 1.0] and m["fold_count"]["accuracy"] == 3
    # Sensitivity of A per fold: 2/2, 1/1, 0/1 -> mean 2/3; specificity: 1/2, 1/1, 1/3.
    assert m["fold_mean"]["sensitivity"] == pytest.approx(2 / 3)
    assert m["fold_mean"]["specificity"] == pytest.approx((1 / 2 + 1 + 1 / 3) / 3)


def test_expected_calibration_error_and_brier_score_by_hand():
    from cxrbio.evaluation.calibration import brier_score, classwise_ece, expected_calibration_error

    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    y = np.array([0, 1, 1, 0])
    # 5 bins of 0.2: confidences 0.9 and 0.8 in the top bin (mean 0.85, 1 of 2 right), 0.7 and 0.6
    # in the next (mean 0.65, both right): ECE = 1/2 * 0.35 + 1/2 * 0.35.
    assert expected_calibration_error(y, p, bins=5) == pytest.approx(0.35)
    # Brier: (0.01 + 0.01) + (0.64 + 0.64) + (0.09 + 0.09) + (0.16 + 0.16), over 4 images.
    assert brier_score(y, p) == pytest.approx(1.8 / 4)
    # Class-wise, class A: p(A) 0.9, 0.8 (bin 4: mean 0.85, 1 of 2 is A), 0.6 (bin 3: 1 of 1), 0.3 (bin 1: 0 of 1).
    assert classwise_ece(y, p, bins=5)[0] == pytest.approx((2 * 0.35 + 0.4 + 0.3) / 4)


def test_calibration_of_hand_made_predictions_in_the_strategy_metrics():
    from cxrbio.evaluation.metrics import strategy_metrics

    frame = hand_made_three_folds()
    m = strategy_metrics(frame, ["A", "B"], "A", {}, n_boot=50, bins=5)
    p = frame[["p_A", "p_B"]].to_numpy()
    onehot = np.eye(2)[frame["true"]]
    assert m["calibration"]["uncalibrated"]["brier"] == pytest.approx(((p - onehot) ** 2).sum(axis=1).mean())
    # Top label by hand, bins of 0.2: [0.8, 1]: confidences .9 .8 .8 .9 .9, 4 of 5 right -> |0.8 - 0.86| x 5/10;
    # [0.6, 0.8): .7 .6 .7 .6, 2 of 4 right -> |0.5 - 0.65| x 4/10; [0.4, 0.6): .55, wrong -> 0.55 x 1/10.
    assert m["calibration"]["uncalibrated"]["ece"] == pytest.approx(0.06 * 0.5 + 0.15 * 0.4 + 0.55 * 0.1)
    assert m["calibration"]["temperature"]["status"] == "not fitted"  # no validation predictions given


def test_patient_bootstrap_moves_a_patients_images_as_one():
    from cxrbio.evaluation.bootstrap import PatientBootstrap, classification_statistics

    # Patient 0 has 91 images, all wrong; 9 other patients one image each, all right.
    patients = np.array([0] * 91 + list(range(1, 10)))
    bootstrap = PatientBootstrap(patients, resamples=400, seed=1)
    weights = np.concatenate(list(bootstrap.weights()))
    assert weights.shape == (400, 100)
    assert (weights[:, :91] == weights[:, :1]).all()  # the 91 images always share one weight
    assert (weights[:, [0, *range(91, 100)]].sum(axis=1) == 10).all()  # 10 patients drawn per resample
    y = np.zeros(100, int)
    predicted = np.r_[np.ones(91, int), np.zeros(9, int)]
    accuracy = classification_statistics(y, predicted, 2, None, weights)["accuracy"]
    # Leaving patient 0 out (chance 0.9^10, about 35%) gives 100% accuracy: an image bootstrap
    # would (almost) never draw none of the 91 images.
    assert 0.25 < np.mean(accuracy == 1.0) < 0.45


def test_weighted_statistics_equal_the_metrics_of_replicated_rows():
    from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

    from cxrbio.evaluation.bootstrap import PatientBootstrap, auroc_statistics, class_aurocs, classification_statistics

    rng = np.random.default_rng(1)
    n, k = 300, 4
    y = rng.integers(0, k, n)
    predicted = np.where(rng.random(n) < 0.6, y, rng.integers(0, k, n))
    p = np.round(rng.dirichlet(np.ones(k), n) + 0.3 * np.eye(k)[y], 2)  # rounded: ties
    weights = np.concatenate(list(PatientBootstrap(rng.integers(0, 80, n), resamples=6, seed=0).weights(chunk=4)))
    stats = classification_statistics(y, predicted, k, 0, weights)
    aurocs = auroc_statistics(class_aurocs(y, p), weights)["class_auroc"]
    for b in range(len(weights)):
        rows = np.repeat(np.arange(n), weights[b])
        assert stats["accuracy"][b] == pytest.approx(np.mean(y[rows] == predicted[rows]))
        assert stats["balanced_accuracy"][b] == pytest.approx(balanced_accuracy_score(y[rows], predicted[rows]))
        assert stats["macro_f1"][b] == pytest.approx(f1_score(y[rows], predicted[rows], labels=range(k), average="macro",
                                                              zero_division=0))
        assert stats["sensitivity"][b] == pytest.approx(np.mean(predicted[rows][y[rows] == 0] == 0))
        for c in range(k):
            assert aurocs[b, c] == pytest.approx(roc_auc_score(y[rows] == c, p[rows, c]))


def test_temperature_scaling_recovers_a_known_temperature_and_changes_no_prediction():
    from cxrbio.evaluation.calibration import fit_temperature, log_loss, scale

    rng = np.random.default_rng(0)
    logits = 3 * rng.normal(size=(4000, 5))
    truth_p = np.exp(logits / 2.5) / np.exp(logits / 2.5).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(5, p=row) for row in truth_p])
    overconfident = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    t = fit_temperature(y, overconfident)
    assert t == pytest.approx(2.5, rel=0.1)
    scaled = scale(overconfident, t)
    assert (scaled.argmax(axis=1) == overconfident.argmax(axis=1)).all()
    assert log_loss(y, scaled) < log_loss(y, overconfident)


def test_temperature_is_fitted_on_validation_folds_only_and_calibration_is_split_by_source():
    import pandas as pd

    from cxrbio.evaluation.metrics import strategy_metrics

    predictions = synthetic_predictions(accuracy=0.5, seed=1)  # p = 0.9 on the prediction at ~57% accuracy
    validation = synthetic_predictions(accuracy=0.5, seed=2)
    sources = pd.Series(np.where(np.arange(len(predictions)) % 3 == 0, "h1", "h2"), index=predictions["image_id"])
    m = strategy_metrics(predictions, CLASSES, "COVID-19", {}, n_boot=50, validation=validation, sources=sources)
    calibration = m["calibration"]
    assert calibration["temperature"]["status"] == "fitted" and set(calibration["temperature"]["per_fold"]) == {"0", "1", "2"}
    assert all(t > 1 for t in calibration["temperature"]["per_fold"].values())  # overconfident -> T > 1
    assert calibration["scaled"]["ece"] < calibration["uncalibrated"]["ece"]
    assert calibration["scaled"]["accuracy"] == pytest.approx(calibration["uncalibrated"]["accuracy"])
    assert set(calibration["by_source"]) == {"h1", "h2"}
    assert calibration["by_source"]["h1"]["n"] == int(np.sum(np.arange(len(predictions)) % 3 == 0))
    lo, hi = calibration["uncalibrated"]["ci95"]["ece"]
    assert 0 <= lo < hi  # an interval from the patient bootstrap
    # A fold without validation predictions: not fitted, and said.
    partial = strategy_metrics(predictions, CLASSES, "COVID-19", {}, n_boot=20, validation=validation[validation["fold"] != 2])
    assert partial["calibration"]["temperature"]["status"] == "not fitted" and "[2]" in partial["calibration"]["temperature"]["reason"]


def test_per_class_intervals_come_from_the_patient_bootstrap():
    from cxrbio.evaluation.metrics import strategy_metrics

    m = strategy_metrics(synthetic_predictions(), CLASSES, "COVID-19", {}, n_boot=200)
    for name in CLASSES:
        entry = m["pooled"]["per_class"][name]
        lo, hi = m["ci95_per_class"][name]["sensitivity"]
        assert lo <= entry["sensitivity"] <= hi
        lo, hi = m["ci95_per_class"][name]["auroc"]
        assert lo <= m["pooled"]["auroc"][name] <= hi
    assert m["bootstrap"] == {"unit": "patient", "resamples": 200, "seed": 0, "level": 0.95}


def test_holm_adjusts_known_p_values():
    from cxrbio.evaluation.multiple_testing import holm

    # Sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = holm([0.01, float("nan"), 0.04])  # NaN stays NaN and is not counted in the family
    assert adjusted[0] == pytest.approx(0.02) and np.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)


def test_strategy_comparisons_pair_on_patients_and_adjust_across_pairs():
    from cxrbio.evaluation.comparisons import compare_strategies

    good = synthetic_predictions(accuracy=0.9, seed=3)
    same = good.copy()
    poor = good.copy()
    rng = np.random.default_rng(4)
    flip = rng.random(len(poor)) < 0.5
    poor.loc[flip, "predicted"] = (poor.loc[flip, "true"] + 1) % len(CLASSES)
    result = compare_strategies({"good": good, "same": same, "poor": poor.sample(frac=1, random_state=0)}, CLASSES,
                                n_train=120, n_test=60, resamples=300)
    pairs = {(p["a"], p["b"]): p for p in result["pairs"]}
    assert len(pairs) == 3 and result["pairs_tested"] == 3
    identical = pairs[("good", "same")]["difference"]["accuracy"]
    assert identical["estimate"] == 0 and identical["ci95"] == [0.0, 0.0]  # same patients drawn for both: exactly 0
    gap = pairs[("good", "poor")]
    assert gap["difference"]["accuracy"]["ci95"][0] > 0.2  # poor's row order does not matter: aligned by image
    assert gap["difference"]["balanced_accuracy"]["estimate"] > 0.2
    assert np.isfinite(gap["difference"]["macro_auroc"]["estimate"])
    raw = [p["nadeau_bengio"]["p"] for p in result["pairs"]]
    from cxrbio.evaluation.multiple_testing import holm

    assert [p["nadeau_bengio"]["p_holm"] for p in result["pairs"]] == pytest.approx(holm(raw), nan_ok=True)
    assert "image-level" in result["secondary"] and "p_holm" in gap["mcnemar"]


def test_a_temperature_without_an_optimum_is_not_used_and_said():
    """Every validation image right: the loss falls as T -> 0 and the fit runs to its bound. Using
    it would sharpen the test predictions for no reason (the demo's small folds did exactly that)."""
    from cxrbio.evaluation.metrics import strategy_metrics

    predictions = synthetic_predictions(accuracy=0.7, seed=1)
    validation = synthetic_predictions(accuracy=1.0, seed=2)
    m = strategy_metrics(predictions, CLASSES, "COVID-19", {}, n_boot=20, validation=validation)
    temperature = m["calibration"]["temperature"]
    assert all(t < 0.1 for t in temperature["fitted"].values())  # the fit only sharpens
    assert temperature["per_fold"] == {"0": 1.0, "1": 1.0, "2": 1.0}
    assert len(temperature["notes"]) == 3 and "every validation image already right" in temperature["notes"][0]
    assert m["calibration"]["scaled"]["ece"] == pytest.approx(m["calibration"]["uncalibrated"]["ece"])
