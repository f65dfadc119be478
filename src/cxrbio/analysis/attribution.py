"""SHAP attributions: which GAP dims (and which radiomics features) drive each class.

**CNN.** Each fold's classifier head (GAP vector -> Dense+ReLU -> BatchNorm -> Dropout -> Dense
-> softmax) is rebuilt as an exactly equivalent two-layer network on the class *logits*:
at inference BatchNorm is affine and Dropout the identity, so BatchNorm folds into the last
Dense layer. shap's DeepExplainer (DeepLIFT rescale rule) is exact enough on Dense+ReLU for
its additivity check to hold to float precision, which is checked. It explains the fold's
out-of-fold embeddings against a class-stratified background of the fold's training embeddings.

*Centred* logits, z_k - mean_j z_j, not raw logits and not probabilities: a term added to every
logit changes no prediction (softmax is blind to it) but inflates |SHAP| of every class for the
features it depends on; centring removes exactly that term. It is linear, so it folds into the
last Dense layer (exact, additive). The folded head is checked against the model's own layers
(``head_error``: max |softmax(head(x)) - model head(x)|).

**Radiomics.** Per fold, a standardised L2 logistic regression on the radiomics features of the
training folds, evaluated on the held-out fold (the radiomics baseline's accuracy) and explained
with shap's LinearExplainer (exact for a linear model; interventional, background = training rows).

Per (feature, class): mean |SHAP| (importance) and direction: the sign of the Spearman
correlation between the feature's value and its SHAP value (+: higher values push towards the class).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cxrbio.analysis.inputs import stratified_sample
from cxrbio.analysis.stats import standardised_ranks
from cxrbio.models.layers import HEAD_BN, HEAD_DENSE, HEAD_LAYERS, HEAD_OUTPUT


def logits_head(model: Any, *, centred: bool = True) -> Any:
    """The fold model's head from the GAP vector to the class logits, BatchNorm folded in (centred: minus their mean)."""
    import keras

    dense, bn, out = (model.get_layer(n) for n in (HEAD_DENSE, HEAD_BN, HEAD_OUTPUT))
    kernel1, bias1 = (np.asarray(w) for w in dense.get_weights())
    gamma, beta, mean, variance = (np.asarray(w) for w in bn.get_weights())
    kernel2, bias2 = (np.asarray(w) for w in out.get_weights())
    scale = gamma / np.sqrt(variance + bn.epsilon)
    shift = beta - mean * scale
    folded_kernel = scale[:, None] * kernel2
    folded_bias = shift @ kernel2 + bias2
    if centred:  # z_k - mean_j z_j is linear in the hidden layer: centre the kernel's and bias's columns
        folded_kernel = folded_kernel - folded_kernel.mean(axis=1, keepdims=True)
        folded_bias = folded_bias - folded_bias.mean()
    inputs = keras.Input((kernel1.shape[0],), name="gap_vector")
    hidden = keras.layers.Dense(kernel1.shape[1], activation="relu", name="hidden")(inputs)
    logits = keras.layers.Dense(kernel2.shape[1], name="logits")(hidden)
    head = keras.Model(inputs, logits, name="head_logits")
    head.get_layer("hidden").set_weights([kernel1, bias1])
    head.get_layer("logits").set_weights([folded_kernel.astype(np.float32), folded_bias.astype(np.float32)])
    return head


def head_error(model: Any, head: Any, gap_vectors: np.ndarray) -> float:
    """max |softmax(head(x)) - the model's own head layers on x|: the folding checked, not assumed."""
    import keras

    x = keras.ops.convert_to_tensor(gap_vectors.astype(np.float32))
    own = x
    for name in HEAD_LAYERS:  # dropout is the identity at inference
        own = model.get_layer(name)(own, training=False)
    folded = keras.ops.softmax(head(x, training=False), axis=-1)
    return float(np.abs(np.asarray(folded) - np.asarray(own)).max())


def _directions(values: np.ndarray, shap_values: np.ndarray) -> np.ndarray:
    """Sign of the rank correlation of value and SHAP value, per (feature, class)."""
    ranks = standardised_ranks(values)
    out = np.zeros(shap_values.shape[1:])
    for c in range(shap_values.shape[2]):
        out[:, c] = np.sign((ranks * standardised_ranks(shap_values[:, :, c])).mean(axis=0))
    return out


def summarise(shap_values: np.ndarray, values: np.ndarray, names: list[str], classes: list[str]) -> pd.DataFrame:
    """Long table: feature, class, mean_abs_shap, mean_shap, direction."""
    directions = _directions(values, shap_values)
    mean_abs = np.abs(shap_values).mean(axis=0)
    mean = shap_values.mean(axis=0)
    rows = []
    for c, name in enumerate(classes):
        rows.append(pd.DataFrame({"feature": names, "class": name, "mean_abs_shap": mean_abs[:, c],
                                  "mean_shap": mean[:, c], "direction": directions[:, c].astype(int)}))
    return pd.concat(rows, ignore_index=True)


@dataclass
class FoldAttribution:
    table: pd.DataFrame  # feature, class, mean_abs_shap, mean_shap, direction
    additivity_error: float  # max |sum(SHAP) + E[f] - f(x)| over explained images and classes
    explained: int
    head_error: float = float("nan")  # max |softmax(folded head) - model head| (probabilities)


def explain_head(head: Any, background: np.ndarray, explained: np.ndarray, names: list[str],
                 classes: list[str]) -> FoldAttribution:
    """DeepExplainer on the logits head; additivity is measured, not assumed."""
    import shap

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Your TensorFlow version is newer")
        warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match")
        explainer = shap.DeepExplainer(head, background)
        values = np.asarray(explainer.shap_values(explained, check_additivity=False))
    if values.ndim == 2:  # one output
        values = values[:, :, None]
    predicted = np.asarray(head(explained, training=False))
    expected = np.asarray(explainer.expected_value, float).reshape(1, -1)
    error = float(np.abs(values.sum(axis=1) + expected - predicted).max())
    return FoldAttribution(summarise(values, explained, names, classes), error, len(explained))


def cnn_fold_attribution(model: Any, train: np.ndarray, y_train: np.ndarray, test: np.ndarray, y_test: np.ndarray,
                         names: list[str], classes: list[str], background: int, max_images: int,
                         seed: int) -> FoldAttribution:
    head = logits_head(model)
    bg = train[stratified_sample(y_train, background, seed)]
    chosen = test[stratified_sample(y_test, max_images, seed)]
    result = explain_head(head, bg, chosen, names, classes)
    result.head_error = head_error(model, head, chosen)
    return result


@dataclass
class RadiomicsFold:
    fold: int
    table: pd.DataFrame
    test_ids: np.ndarray
    predicted: np.ndarray


def radiomics_fold(train_x: np.ndarray, y_train: np.ndarray, test_x: np.ndarray, test_ids: np.ndarray,
                   names: list[str], classes: list[str], c: float, seed: int, fold: int) -> RadiomicsFold:
    """Fit the standardised logistic regression on training folds; predict and explain the held-out fold."""
    import shap
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    a, b = scaler.transform(train_x), scaler.transform(test_x)
    model = LogisticRegression(C=c, max_iter=3000, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*did not converge.*")
        model.fit(a, y_train)
    predicted = model.classes_[model.predict_proba(b).argmax(axis=1)]
    explainer = shap.LinearExplainer(model, a)
    values = np.asarray(explainer.shap_values(b))
    if values.ndim == 2:  # binary: one set of log-odds SHAP values for the positive class
        values = np.stack([-values, values], axis=2)
    # Classes absent from this fold's training data have no column: pad with zeros.
    full = np.zeros((values.shape[0], values.shape[1], len(classes)))
    for k, cls in enumerate(model.classes_):
        full[:, :, int(cls)] = values[:, :, k]
    return RadiomicsFold(fold, summarise(full, b, names, classes), test_ids, predicted)
