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
