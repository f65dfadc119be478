"""The study's metrics from hand-made predictions, against hand-computed and published numbers."""

import numpy as np
import pytest

from cxrbio.config import PAPER_CLASSES
from cxrbio.metrics import paper_metrics

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


def synthetic_predictions(n_folds=3, per_fold=60, accuracy=0.8, seed=0, classes=CLASSES):
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for fold in range(n_folds):
        for i in range(per_fold):
            true = int(rng.integers(0, len(classes)))
            predicted = true if rng.random() < accuracy else int(rng.integers(0, len(classes)))
            p = np.full(len(classes), 0.1 / (len(classes) - 1))
            p[predicted] = 0.9
            rows.append({"image_id": f"i{fold}-{i}", "patient_id": f"pt{fold}-{i // 2}", "fold": fold, "true": true,
                         "predicted": predicted, **{f"p_{c}": p[k] for k, c in enumerate(classes)}})
    return pd.DataFrame(rows)


def test_strategy_metrics_pool_folds_and_bootstrap_patients():
    from cxrbio.metrics import strategy_metrics

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

    from cxrbio.metrics import nadeau_bengio_ttest

    a = [0.80, 0.82, 0.79, 0.85, 0.81, 0.83, 0.80, 0.84, 0.82, 0.81]
    b = [0.78, 0.80, 0.79, 0.82, 0.80, 0.80, 0.79, 0.81, 0.80, 0.80]
    corrected = nadeau_bengio_ttest(a, b, n_train=900, n_test=100)
    naive = stats.ttest_rel(a, b)
    assert corrected["p"] > naive.pvalue
    d = np.subtract(a, b)  # by hand: t = mean / sqrt((1/k + n_test/n_train) * var)
    t = d.mean() / np.sqrt((1 / 10 + 100 / 900) * d.var(ddof=1))
    assert corrected["t"] == pytest.approx(t)


def test_mcnemar_counts_discordant_pairs():
    from cxrbio.metrics import mcnemar_test

    a = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], bool)
    b = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 1], bool)
    result = mcnemar_test(a, b)
    assert (result["only_a_correct"], result["only_b_correct"]) == (6, 1) and result["exact"]
    assert result["p"] == pytest.approx(0.125, abs=1e-3)  # exact binomial, 7 discordant pairs, 1 vs 6


def test_balanced_class_weights_cover_every_class():
    from cxrbio.training import class_weights

    y = np.array([0] * 30 + [1] * 10 + [2] * 20)
    weights = class_weights(y, n_classes=4)
    assert weights[1] == pytest.approx(60 / (3 * 10)) and weights[0] == pytest.approx(60 / (3 * 30))
    assert weights[3] == 1.0  # a class absent from this fold's training rows gets a neutral weight
