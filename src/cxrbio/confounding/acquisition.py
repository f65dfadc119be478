"""The acquisition baseline: how well the label is predicted by how an image was acquired and exported.

On a real multi-source mix of public X-rays, a random forest on image width, height and aspect
alone classified about as well as the scratch CNN under the same folds. If acquisition alone
separates a class, the CNN's accuracy on that class is not evidence of a lung finding.

Inputs are properties of the file and the frame, never of the anatomy:

* ``width``, ``height``, ``aspect`` (width / height), ``bits`` (bit depth), ``padding`` (the
  letterbox padding's share of the network's input square);
* ``format`` (png, jpeg, dicom, ...), ``stored_mode`` (L, RGB, I;16; for DICOM the photometric
  interpretation), ``compressed``, ``jpeg_quality`` (estimated from the quantization tables),
  ``pixel_spacing`` (DICOM).

Never file names (they encode labels: Kermany's ``bacteria``/``virus``/``NORMAL2-``) and never
intensity statistics (they carry anatomy and disease). Constant columns are dropped; the
features used are listed in the result. The classifier (scikit-learn RandomForest, balanced
class weights) is trained on the same outer folds as the CNN (:func:`cxrbio.data.folds.outer_folds`)
and judged by its balanced accuracy, overall and per class (one vs the rest), against the
patient-grouped permutation null of :mod:`cxrbio.confounding.permutation`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cxrbio.confounding.permutation import permutation_null

#: Categorical acquisition properties, as manifest columns (older manifests lack some); one-hot encoded.
CATEGORICAL = ("format", "stored_mode")
#: Words for the report and the scan summary.
DESCRIPTIONS = {"width": "image width", "height": "image height", "aspect": "aspect ratio", "bits": "bit depth",
                "padding": "letterbox padding", "jpeg_quality": "JPEG quality", "pixel_spacing": "pixel spacing",
                "compressed": "compression", "format": "file format", "stored_mode": "stored colour mode"}


@dataclass
class AcquisitionBaseline:
    """The baseline's figures; ``status`` 'done', or 'skipped' with ``reason``."""

    status: str
    reason: str = ""
    features: list[str] = field(default_factory=list)
    images: int = 0
    balanced_accuracy: float = float("nan")
    null_mean: float = float("nan")
    null_p95: float = float("nan")
    p: float = float("nan")
    per_class: list[dict[str, Any]] = field(default_factory=list)
    importance: dict[str, float] = field(default_factory=dict)  # by property (one-hot columns summed)
    permutations: int = 0
    classifier: str = ""
    flagged: list[str] = field(default_factory=list)  # classes acquisition alone separates (the verdict)
    thresholds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AcquisitionBaseline:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def acquisition_features(manifest: pd.DataFrame, image_size: int) -> tuple[pd.DataFrame, dict[str, str]]:
    """(one row per image: numeric features and one-hot categories, column -> property it encodes)."""
    frame = pd.DataFrame(index=manifest.index)
    missing = pd.Series(np.nan, index=manifest.index)
    width = pd.to_numeric(manifest.get("width", missing), errors="coerce")
    height = pd.to_numeric(manifest.get("height", missing), errors="coerce")
    values: dict[str, pd.Series] = {"width": width, "height": height, "aspect": width / height}
    if "bits" in manifest:
        values["bits"] = pd.to_numeric(manifest["bits"], errors="coerce")
    if {"lb_width", "lb_height"} <= set(manifest.columns):
        area = pd.to_numeric(manifest["lb_width"], errors="coerce") * pd.to_numeric(manifest["lb_height"], errors="coerce")
        values["padding"] = 1 - area / float(image_size * image_size)
    for name in ("jpeg_quality", "pixel_spacing", "compressed"):
        if name in manifest:
            values[name] = pd.to_numeric(manifest[name].astype(float), errors="coerce")
    origin: dict[str, str] = {}
    for name, series in values.items():
        frame[name] = series.astype(float).fillna(-1.0)  # absent (not a JPEG, no spacing) is a value of its own
        origin[name] = name
    for name in CATEGORICAL:
        if name in manifest:
            dummies = pd.get_dummies(manifest[name].fillna("").astype(str), prefix=name, dtype=float)
            for column in dummies.columns.astype(str):
                frame[column] = dummies[column]
                origin[column] = name
    varying = [c for c in frame.columns if frame[c].nunique() > 1]
    return frame[varying], {c: origin[c] for c in varying}


def acquisition_baseline(manifest: pd.DataFrame, classes: list[str], *, image_size: int, scheme: str,
                         permutations: int, seed: int, min_auroc: float, alpha: float,
                         trees: int = 300) -> AcquisitionBaseline:
    """Train on the CNN's outer folds, predict each held-out fold, judge against the permutation null.

    ``manifest``: included images with labels, folds and fold groups. A class is named in the
    verdict (``flagged``) when the one-vs-rest AUROC of its out-of-fold probability is at least
    ``min_auroc`` and its permutation p-value, Holm-adjusted over the classes, is below ``alpha``.
    """
    from sklearn.ensemble import RandomForestClassifier

    from cxrbio.data.folds import outer_folds
    from cxrbio.errors import DataError
    from cxrbio.evaluation.multiple_testing import holm

    classifier = f"RandomForestClassifier({trees} trees, min_samples_leaf=2, class_weight='balanced')"
    thresholds = {"min_auroc": min_auroc, "alpha": alpha}
    features, origin = acquisition_features(manifest, image_size)
    if features.empty:
        return AcquisitionBaseline("skipped", "every image has the same size, depth, format and padding: acquisition "
                                   "cannot predict the label", images=len(manifest), classifier=classifier,
                                   thresholds=thresholds)
    try:
        folds = outer_folds(manifest, scheme)
    except DataError as error:
        return AcquisitionBaseline("skipped", f"no folds ({error.message})", images=len(manifest), classifier=classifier,
                                   thresholds=thresholds)
    index = {c: i for i, c in enumerate(classes)}
    y = manifest["label"].map(index).to_numpy(int)
    x = features.to_numpy(float)
    predicted = np.full(len(y), -1)
    probabilities = np.zeros((len(y), len(classes)))
    importance = np.zeros(x.shape[1])
    for fold in folds:
        train = ~fold.test
        if len(np.unique(y[train])) < 2:
            continue
        model = RandomForestClassifier(n_estimators=trees, min_samples_leaf=2, class_weight="balanced", random_state=seed,
                                       n_jobs=1).fit(x[train], y[train])
        predicted[fold.test] = model.predict(x[fold.test])
        probabilities[np.ix_(fold.test, model.classes_)] = model.predict_proba(x[fold.test])
        importance += model.feature_importances_ * fold.test.sum()
    scored = predicted >= 0
    if not scored.any():
        return AcquisitionBaseline("skipped", "no fold has two classes to train on", images=len(manifest),
                                   classifier=classifier, thresholds=thresholds)
    null = permutation_null(y[scored], predicted[scored], manifest["fold_group"].to_numpy()[scored], classes,
                            scores=probabilities[scored], permutations=permutations, seed=seed)
    per_class = null.per_class.assign(p_holm=holm(null.per_class["auroc_p"].tolist()))
    per_class["images"] = [int(np.sum(y[scored] == k)) for k in range(len(classes))]
    per_class["flagged"] = (per_class["auroc"] >= min_auroc) & (per_class["p_holm"] < alpha)
    by_property: dict[str, float] = {}
    for column, share in zip(features.columns, importance / max(importance.sum(), 1e-12)):
        by_property[origin[column]] = by_property.get(origin[column], 0.0) + float(share)
    return AcquisitionBaseline(
        "done", features=sorted(set(origin.values()), key=list(DESCRIPTIONS).index), images=int(scored.sum()),
        balanced_accuracy=null.observed, null_mean=null.null_mean, null_p95=null.null_p95, p=null.p,
        per_class=[{str(k): v for k, v in row.items()} for row in per_class.to_dict(orient="records")],
        importance=dict(sorted(by_property.items(), key=lambda kv: -kv[1])), permutations=permutations,
        classifier=classifier, flagged=per_class.loc[per_class["flagged"], "class"].tolist(), thresholds=thresholds)


def describe(result: AcquisitionBaseline, top: int = 3) -> str:
    """One line for the scan summary and the report."""
    if result.status != "done":
        return f"Acquisition baseline: skipped ({result.reason})."
    leading = ", ".join(DESCRIPTIONS.get(k, k) for k in list(result.importance)[:top])
    line = (f"Acquisition baseline ({', '.join(DESCRIPTIONS.get(f, f) for f in result.features)}; no file names, no "
            f"intensities): balanced accuracy {result.balanced_accuracy:.2f} against a permutation null of "
            f"{result.null_mean:.2f} (95th percentile {result.null_p95:.2f}, p = {result.p:.3g}, "
            f"{result.images} images, the CNN's folds).")
    if result.flagged:
        scores = {row["class"]: row["auroc"] for row in result.per_class}
        named = ", ".join(f"{c} (AUROC {scores[c]:.2f})" for c in result.flagged)
        line += (f" Acquisition alone separates {named} from the other classes, mostly by {leading}: "
                 "the CNN's accuracy on these classes is not evidence of a lung finding.")
    return line
