"""Typed configuration: the study's protocol as defaults, every deviation a named key.

A run's config is loaded from YAML, validated strictly (unknown keys and bad values are
errors that name the key and what is allowed) and written back in full into the run
directory, so a run records every value it used, defaults included.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cxrbio.errors import ConfigError
from cxrbio.evaluation.paper import PAPER_CLASSES

__all__ = ["AnalysisConfig", "AugmentConfig", "Config", "ConfoundingConfig", "DataConfig", "EvaluationConfig", "FoldsConfig",
           "MasksConfig", "ModelConfig", "RadiomicsConfig", "ReportConfig", "TrainConfig", "config_from_dict", "config_to_yaml",
           "load_config"]

#: Common spellings of the study's classes in public data sets and folder names.
DEFAULT_LABEL_ALIASES: dict[str, str] = {
    "covid": "COVID-19",
    "covid19": "COVID-19",
    "sarscov2": "COVID-19",
    "pulmonaryedema": "Edema",
    "pleuraleffusion": "Effusion",
    "copd": "Emphysema",
    "chronicobstructivepulmonarydisease": "Emphysema",
    "pulmonaryfibrosis": "Fibrosis",
    "bacterialpneumonia": "Pneumonia",
    "viralpneumonia": "Pneumonia",
    "nofinding": "Normal",
    "healthy": "Normal",
}

def bundled_config(name: str) -> Path:
    """A config shipped with cxrbio (paper.yaml, demo.yaml): the repository's, else the installed copy."""
    repository = Path(__file__).resolve().parents[2] / "configs" / name
    return repository if repository.is_file() else Path(__file__).resolve().parent / "configs" / name


def normalise_label_key(text: str) -> str:
    """Key for matching labels: case, spaces and punctuation do not matter."""
    return re.sub(r"[^0-9a-z]", "", text.lower())


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class QCConfig(StrictModel):
    """Low-contrast quality control (see docs/data.md for the metric and how it was set)."""

    min_contrast: float = Field(
        0.20,
        ge=0.0,
        le=1.0,
        description="Least spread between the 1st and 99th intensity percentile of the "
        "image content (intensities scaled to 0..1) for the image to pass.",
    )
    exclude_low_contrast: bool = Field(
        True, description="Leave low-contrast images out of folds, as the study did."
    )
    max_pixels: int = Field(
        50_000_000, ge=1, description="Images with more pixels (width x height, read from the file's header) are QC "
        "exclusions ('too_large'), never decoded: a decompression bomb of a few kB costs nothing. 50 MP is twice a "
        "5,000 x 5,000 px detector and well under PIL's own bomb limit (about 179 MP), which this replaces.")


class DuplicateConfig(StrictModel):
    """Exact (sha256) and near (perceptual hash) duplicate detection."""

    near_duplicate_max_distance: int = Field(
        12, ge=0, le=256, description="Largest Hamming distance of 256-bit pHashes called a near-duplicate."
    )
    label_conflicts: Literal["exclude", "keep"] = Field(
        "exclude", description="Exact or near duplicates filed under different classes: named by the scan either way; "
        "exclude keeps every copy out of training (QC status 'label_conflict'), keep trains on them as filed.")


class PrivacyConfig(StrictModel):
    pseudonymize_patients: bool = Field(
        True, description="Replace patient ids in every output by a salted hash."
    )


class NihConfig(StrictModel):
    """ChestX-ray14 (Data_Entry_2017.csv): which single-label findings become which class."""

    findings: dict[str, str] = Field(
        default_factory=lambda: {
            "Edema": "Edema",
            "Effusion": "Effusion",
            "Emphysema": "Emphysema",
            "Fibrosis": "Fibrosis",
        }
    )


class CovidDatasetConfig(StrictModel):
    """ieee8023 covid-chestxray-dataset (metadata.csv): findings kept and frontal views."""

    findings: dict[str, str] = Field(
        default_factory=lambda: {"COVID-19": "COVID-19", "No Finding": "Normal"}
    )
    views: list[str] = Field(default_factory=lambda: ["PA", "AP", "AP Supine", "AP semi erect", "AP erect"])
    modality: str = "X-ray"


class DataConfig(StrictModel):
    classes: list[str] = Field(default_factory=lambda: list(PAPER_CLASSES), min_length=2)
    label_aliases: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_LABEL_ALIASES))
    positive_class: str | None = Field(
        "COVID-19", description="The class of the study's 2-class metrics (null: none)."
    )
    drop_unknown_labels: bool = Field(
        False, description="Skip images whose label is not a class (listed) instead of failing."
    )
    image_size: int = Field(200, ge=32, le=1024, description="Side of the square letterbox, px.")
    source_from: Literal["auto", "column", "subfolder", "filename", "none"] = Field(
        "auto", description="Where each image's source (hospital, collection) comes from: a CSV 'source' column, "
        "the folder below the class folder, recognised public data-set file names, or none ('unknown'). "
        "auto: a column if present, else recognised names, else 'unknown' (docs/data.md).")
    cache: Literal["memory", "disk"] = Field(
        "memory", description="Where the decoded, letterboxed uint8 images are kept for training."
    )
    qc: QCConfig = Field(default_factory=QCConfig)
    duplicates: DuplicateConfig = Field(default_factory=DuplicateConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    nih: NihConfig = Field(default_factory=NihConfig)
    covid_dataset: CovidDatasetConfig = Field(default_factory=CovidDatasetConfig)

    @field_validator("classes")
    @classmethod
    def _classes_unique(cls, classes: list[str]) -> list[str]:
        keys = [normalise_label_key(c) for c in classes]
        if len(set(keys)) != len(keys):
            raise ValueError(f"class names must be unique (ignoring case and punctuation), got {classes}")
        return classes

    @model_validator(mode="after")
    def _targets_are_classes(self) -> DataConfig:
        if self.positive_class is not None and self.positive_class not in self.classes:
            raise ValueError(
                f"positive_class {self.positive_class!r} is not one of classes {self.classes}; "
                "name one of them, or null for no 2-class metrics"
            )
        return self

    def canonical_label(self, raw: str) -> str | None:
        """The class a raw label names, or None: exact, then case/punctuation-free, then alias."""
        if raw in self.classes:
            return raw
        key = normalise_label_key(str(raw))
        for cls in self.classes:
            if normalise_label_key(cls) == key:
                return cls
        aliases = {normalise_label_key(k): v for k, v in self.label_aliases.items()}
        target = aliases.get(key)
        return target if target in self.classes else None


class FoldsConfig(StrictModel):
    k: int = Field(10, ge=2, le=100, description="Number of cross-validation folds (the study: 10).")
    seed: int = 42
    scheme: Literal["stratified-group", "leave-one-source-out"] = Field(
        "stratified-group",
        description="Label-stratified, patient-grouped k-fold; or one test fold per source (DeGrave et al. 2021).",
    )


class AugmentConfig(StrictModel):
    enabled: bool = True
    rotation_degrees: float = Field(10.0, ge=0, le=45)
    shift_pixels: float = Field(20.0, ge=0, description="Largest shift at reference_size; scaled with image_size.")
    reference_size: int = Field(200, ge=1)


class ModelConfig(StrictModel):
    alpha: float = Field(1.0, description="MobileNetV2 width multiplier.")
    dense_units: int = Field(2500, ge=1)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    weights: str = Field("imagenet", description="'imagenet', a weights file, or run:RUN_DIR/STRATEGY.")
    batchnorm_momentum: float | None = Field(
        None, gt=0.0, lt=1.0,
        description="Momentum of every BatchNorm moving average (backbone and head); null keeps Keras's "
        "defaults (0.999 backbone, 0.99 head), whose statistics need ~100-1,000 steps to settle -- too slow "
        "for small data sets, where inference-mode predictions then collapse to one class.",
    )
    finetune_batchnorm: Literal["frozen", "train"] = Field(
        "frozen", description="BatchNorm inside fine-tuned blocks: inference mode (Keras guide) or trained."
    )

    @field_validator("alpha")
    @classmethod
    def _alpha_supported(cls, alpha: float) -> float:
        allowed = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
        if alpha not in allowed:
            raise ValueError(f"alpha must be one of {allowed} (the widths MobileNetV2 defines), got {alpha}")
        return alpha


class TrainConfig(StrictModel):
    strategies: list[str] = Field(
        default_factory=lambda: ["offshelf"] + [f"finetune-{n}" for n in (1, 3, 5, 7, 9, 11)] + ["scratch"]
    )
    optimizer: Literal["adam", "sgd", "rmsprop"] = "adam"
    learning_rate: float = Field(1e-4, gt=0)
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="cosine: decay the rate to zero over all epochs' steps (steadier late epochs)."
    )
    batch_size: int = Field(32, ge=1)
    epochs: int = Field(50, ge=1)
    early_stopping_patience: int = Field(10, ge=0, description="0 disables early stopping.")
    validation_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    class_weights: bool = False
    seed: int = 42
    checkpoint_seconds: float = Field(
        60.0, ge=0, description="Write a resumable checkpoint at most this often (0: after every epoch); a resume "
        "repeats the epochs since, with the same result.",
    )
    deterministic: bool = Field(True, description="TensorFlow op determinism: same seed, same numbers (a little slower).")
    mixed_precision: Literal["auto", "on", "off"] = Field("auto", description="auto: float16 compute on a GPU only.")
    augment_frozen: bool = Field(
        True,
        description="false: compute the frozen part's output once per image (no augmentation) and train only "
        "the rest (offshelf: the head; finetune-N: the top N blocks and the head); see benchmarks/frozen_cache.py.",
    )

    @field_validator("strategies")
    @classmethod
    def _known_strategies(cls, strategies: list[str]) -> list[str]:
        from cxrbio.models.strategies import ALLOWED, Strategy

        for name in strategies:
            try:
                Strategy.parse(name)
            except ConfigError:
                raise ValueError(f"unknown strategy {name!r}; allowed: {ALLOWED}") from None
        if len(set(strategies)) != len(strategies):
            raise ValueError(f"strategies are listed twice: {strategies}")
        return strategies


class MasksConfig(StrictModel):
    """Where each image's lung-field mask comes from (docs/radiomics.md)."""

    source: Literal["auto", "folder", "column", "segment", "content"] = Field(
        "auto",
        description="auto: the folder if set, else the manifest column where it has a path, else the built-in "
        "segmentation; content: the whole non-padding area (no lung mask).",
    )
    folder: str | None = Field(None, description="Folder of mask files named like the images (file stem).")
    column: str = Field("lung_mask", description="Manifest column holding a mask path per image (the phantom's ground truth).")
    body_column: str = Field(
        "body_mask", description="Manifest column holding a body (thorax outline) mask path per image; where it has "
        "none, the body is segmented (the phantom has ground truth).")
    body_min_qc: float = Field(
        0.5, ge=0.0, le=1.0,
        description="Body segmentations scoring below this leave the image out of the shortcut audit, said.")
    min_qc: float = Field(
        0.6, ge=0.0, le=1.0,
        description="Segmentations scoring below this fall back to the whole non-padding area, flagged.",
    )


class RadiomicsConfig(StrictModel):
    """pyradiomics extraction; its own parameters live in a pyradiomics parameter file."""

    params: str = Field(
        "radiomics.yaml", description="pyradiomics parameter file: a path, or the name of a file in cxrbio's configs/."
    )
    cache_dir: str | None = Field(
        None, description="Feature cache shared by runs (default: $CXRBIO_CACHE_DIR or ~/.cache/cxrbio)."
    )
    workers: int | None = Field(None, ge=1, description="Worker processes (default: every available core).")


class EvaluationConfig(StrictModel):
    """How the classification results are judged (docs/training.md, "Metrics"); fixed before training.

    Shapes ``metrics/*.json`` and ``metrics/comparison.json`` only: changing it recomputes them
    from the trained folds (``cxrbio train`` again), it never retrains.
    """

    bootstrap: int = Field(1000, ge=10, description="Patient-cluster bootstrap resamples for every interval and paired difference.")
    level: float = Field(0.95, gt=0.5, lt=1.0, description="Confidence level of the intervals.")
    alpha: float = Field(0.05, gt=0.0, lt=1.0, description="Family-wise level of the Holm-adjusted strategy comparisons.")
    calibration_bins: int = Field(15, ge=2, le=100, description="Equal-width confidence bins of ECE and the reliability diagram.")
    temperature_scaling: bool = Field(
        True, description="Fit one temperature per fold model on its inner validation patients and report the "
        "calibrated figures beside the uncalibrated ones (it changes no prediction).")
    seed: int = 0


class ConfoundingConfig(StrictModel):
    """Checks of whether acquisition or source predicts the label (docs/confounding.md); fixed before analysis."""

    permutations: int = Field(1000, ge=99, description="Patient-grouped label permutations of each null.")
    forest_trees: int = Field(300, ge=1, description="Trees of the acquisition baseline's random forest (scikit-learn "
                              "RandomForestClassifier, min_samples_leaf=2, balanced class weights).")
    min_auroc: float = Field(
        0.7, gt=0.5, le=1.0, description="A class is named as separable by acquisition when its one-vs-rest AUROC "
        "reaches this (and its Holm-adjusted permutation p is below alpha). Measured: at most 0.61 over 28 "
        "class values of 4 plain phantoms; 0.75-0.87 for the site-b classes of the site-confounded phantom.")
    alpha: float = Field(0.05, gt=0.0, lt=1.0, description="Family-wise level, Holm over the classes.")
    covariates: list[str] = Field(
        default_factory=list, description="Manifest columns to audit as covariates beside the recognised ones "
        "(age, sex, view, device, site and their usual spellings).")
    design_power: float = Field(
        0.8, gt=0.0, lt=1.0, description="Power at which the design check states each class's smallest detectable "
        "disease-vs-control AUC (at two-sided level analysis.gate_q; confounding/design.parquet).")
    lungs_removed_box: float = Field(
        0.7, gt=0.0, lt=1.0, description="Side of the central box blacked out by 'cxrbio lungs-removed', as a share of "
        "each image's content (width and height). Measured on the phantom at 64 px: 0.7 covers 97% of the lung "
        "fields and every planted finding but the bullae (75%); 0.6 covers 88%.")
    seed: int = 0


class AnalysisConfig(StrictModel):
    """Settings of ``cxrbio analyze`` (docs/analysis.md)."""

    top_k: int = Field(10, ge=1, description="Matched features selected per (class, held-out fold) on the other folds "
                       "(mean percentile rank of |SHAP|) and confirmed on the held-out fold's patients.")
    shap_background: int = Field(
        16, ge=1, description="Training embeddings per fold as the SHAP background (class-stratified). Measured "
        "(benchmarks/shap_background.py, plain phantom, folds 0-1): against a 256-image background the per-class "
        "|SHAP| ranking's Spearman rho is at least 0.995 from 8 images on (0.998 at 16) and its top-10 overlap "
        "0.86-0.94 at 16, 0.94-0.95 at 32, 0.96-1.0 at 64; the cost grows with the size (5.7-6.8 s per fold at 16, "
        "9.1-10.9 s at 64 for 400 images), and 64 would put the 4,000-image, 10-fold analysis over its 10 minutes.")
    match_min_rho: float = Field(
        0.3, ge=0.0, le=1.0, description="Fewest within-class (class-partialled) correlation for a fold model's dim to be "
        "matched to the reference fold's dim (docs/analysis.md).")
    match_null_quantile: float | None = Field(
        0.99, gt=0.5, lt=1.0, description="A fold model's dim is matched to the reference's when their correlation "
        "reaches this quantile of the assigned correlations after one model's rows are shuffled within predicted "
        "class (and match_min_rho); null: match_min_rho alone, no null (docs/analysis.md).")
    confirm_min_patients: int = Field(
        5, ge=2, description="Fewest patients of a class (and of the rest) in a held-out fold for it to confirm there.")
    confirm_bootstrap: int = Field(200, ge=10, description="Patient bootstrap resamples for a confirmed AUC's CI.")
    gate_q: float = Field(0.05, gt=0.0, lt=1.0, description="Gate: confirmation BH q (within strategy and class) below "
                          "this; also the level of the covariate gate (Bonferroni over covariates), of the source "
                          "equivalence flag and of the design check's smallest detectable AUC.")
    gate_min_folds: int = Field(2, ge=1, description="Gate: a feature is tested on at least this many held-out folds "
                                "(at most folds.k); a majority of them on the side the other folds predicted, and the "
                                "combined one-sided effect on that side too.")
    direction_rule: Literal["majority", "random-effects"] = Field(
        "majority", description="Direction gate: 'majority' (most tested folds and the combined effect on the predicted "
        "side), or 'random-effects' (also the Hartung-Knapp pooled effect over folds, one-sided p < gate_q).")
    gate_audit: bool = Field(True, description="Gate: no audited dim of the feature flagged a likely shortcut (a feature "
                             "whose dims were not audited does not pass).")
    control_class: str | None = Field(
        "Normal", min_length=1, description="The control class (healthy controls): a disease's primary contrast is "
        "against its patients, within sources holding both (the design check says where). Absent from the data: the "
        "default is noted (each class is then compared with the rest), any other name refused; null: one-vs-rest.")
    gate_control: bool = Field(True, description="The primary contrast of a disease is against the control class's "
                               "patients (within sources holding both); false: against the rest of the data (one-vs-rest "
                               "is always reported as the secondary contrast).")
    permutation_below: int = Field(
        5, ge=1, description="A stratum (held-out fold x source) with fewer patients of either group than this makes a "
        "contrast's p-value a stratified permutation p (analysis.stratum_permutations shuffles) instead of van Elteren's "
        "normal approximation.")
    stratum_permutations: int = Field(2000, ge=99, description="Label shuffles within strata for a permutation p.")
    source_equivalence_margin: float = Field(
        0.1, gt=0.0, lt=0.5, description="Equivalence margin of the within-class source flag: a feature is shown not to "
        "differ between the class's two largest sources when TOST puts their AUC within 0.5 +- this (at gate_q).")
    shap_max_images: int = Field(400, ge=1, description="Out-of-fold images explained per fold (a stratified sample above it).")
    descriptors: int = Field(3, ge=1, description="Radiomics descriptors named per candidate dim.")
    mediation_features: int = Field(
        10, ge=0, description="Per tested feature, its strongest within-disease descriptors (q below gate_q) given a "
        "mediation share between the disease and the controls (0: none; docs/analysis.md).")
    mediation_bootstrap: int = Field(200, ge=10, description="Patient bootstrap resamples for a mediation share's CI.")
    stability_top: int = Field(10, ge=1, description="Descriptors per (fold, class) compared across folds.")
    bootstrap: int = Field(50, ge=0, description="Patient bootstrap resamples for the radiomics ranking's stability.")
    permutations: int = Field(50, ge=0, description="Row permutations for the CCA baseline.")
    cca_components: int = Field(10, ge=1, description="PCA components per space before CCA.")
    umap_neighbors: int = Field(15, ge=2)
    umap_min_dist: float = Field(0.1, ge=0.0)
    audit_dims: int = Field(5, ge=0, description="Top dims per (fold, class) given a saliency audit (0: no audit).")
    audit_images: int = Field(
        8, ge=1, description="Most activating out-of-fold images averaged per audited dim (and as many random ones).")
    audit_controls: int = Field(
        8, ge=1, description="Equal-area random regions per audited image: the control the outside region is judged against.")
    shortcut_margin: float = Field(
        2.0, gt=0.0, description="A dim is flagged 'likely shortcut' when occluding the outside of the body changes it "
        "this many times more than an equal-area random region. Measured on five phantoms: at most 0.15 on the plain "
        "one, 1.44 wherever no outside cue was learnt; 2.4-4.7 for the dims of the fold model that learnt a marker "
        "(docs/validation.md).")
    occlusion_margin: float = Field(
        0.1, gt=0.0, lt=1.0, description="A class is 'read from outside the lungs' when filling its lungs lowers its "
        "accuracy by less than this (the patient-bootstrap CI of the drop below it) while it is recognised above "
        "chance; 'needs its lungs' when the drop's CI lies above 0 (docs/analysis.md).")
    sanity_max_rho: float = Field(
        0.3, ge=-1.0, le=1.0, description="A saliency map whose Spearman correlation with the map of a weight-randomised "
        "model reaches this is marked unreliable (Adebayo et al. 2018): the 5th percentile of two randomised models' "
        "maps' correlation, measured on the graded phantom (0.31; trained maps 0.32 / 0.50 / 0.64 at the 5th / 50th / "
        "95th percentiles: gradient maps show the input's edges; docs/validation.md).")

    def active_control(self, classes: list[str] | tuple[str, ...]) -> str | None:
        """The control class the control gate compares with, or None (gate off, unset, or not a class of the run)."""
        if self.gate_control and self.control_class is not None and self.control_class in classes:
            return self.control_class
        return None

    @model_validator(mode="before")
    @classmethod
    def _retired(cls, values: Any) -> Any:
        retired = [k for k in ("border_fraction", "shortcut_border_share", "shortcut_lung_share")
                   if isinstance(values, dict) and k in values]
        if retired:
            raise ValueError(f"analysis.{retired[0]} is retired: the shortcut audit now judges the outside of the body "
                             "against equal-area random regions; delete it from the config (the margin is "
                             "analysis.shortcut_margin, docs/analysis.md)")
        return values

    primary_strategy: str | None = Field(
        None, description="The strategy whose candidates are the confirmatory claims: its (class) families form one "
        "hierarchical FDR and the other strategies a second, exploratory one; null: every analysed strategy is one "
        "hierarchy (docs/analysis.md, 'One error rate').")
    error_rate_contrasts: Literal["both", "primary"] = Field(
        "both", description="What p-value a feature enters the error rate with: 'both' the larger of the primary "
        "(against the controls) and the secondary (against the rest) contrasts' p, 'primary' the primary's alone.")
    min_group: int = Field(3, ge=2, description="Fewest images of a class (and of the rest) for a test to run.")
    radiomics_c: float = Field(0.1, gt=0, description="Inverse L2 strength of the radiomics logistic regression.")
    seed: int = 0


class ReportConfig(StrictModel):
    """Settings of ``cxrbio report`` (docs/report.md)."""

    gallery_dims: int = Field(4, ge=0, description="Top candidate dims per disease shown in the saliency gallery.")
    table_rows: int = Field(30, ge=1, description="Candidate dims per disease in its sortable table (best first).")
    radiomics_features: int = Field(10, ge=1, description="Top radiomics features per disease in the baseline section.")
    thumbnail_px: int = Field(112, ge=32, le=512, description="Side of each embedded thumbnail, in pixels.")
    thumbnails: bool = Field(
        True, description="Embed X-ray thumbnails (the run's own images, under each saliency map) in the gallery. "
        "Clinical X-rays often carry burned-in names and dates; false: the file holds no patient pixels at all (the "
        "gallery draws each saliency map alone), every figure still drawn. Switch per report: cxrbio report "
        "--no-thumbnails.")
    show_file_names: bool = Field(
        True, description="List QC exclusions and duplicates by their file name or CSV row; false: by image id only "
        "(set it before sharing a report whose file names carry identifiers).")


class Config(StrictModel):
    """The whole run configuration; the defaults are the study as published."""

    name: str = "paper"
    data: DataConfig = Field(default_factory=DataConfig)
    folds: FoldsConfig = Field(default_factory=FoldsConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    confounding: ConfoundingConfig = Field(default_factory=ConfoundingConfig)
    masks: MasksConfig = Field(default_factory=MasksConfig)
    radiomics: RadiomicsConfig = Field(default_factory=RadiomicsConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    @model_validator(mode="after")
    def _primary_strategy_is_trained(self) -> Config:
        primary = self.analysis.primary_strategy
        if primary is not None and primary not in self.train.strategies:
            raise ValueError(f"analysis.primary_strategy is {primary!r}, which is not among train.strategies "
                             f"({', '.join(self.train.strategies)}); name one of them or delete the key")
        return self


def _describe_validation_error(error: ValidationError, source: str, model: type[BaseModel]) -> str:
    lines = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"])
        if item["type"] == "extra_forbidden":
            parent = _section_model(model, item["loc"][:-1])
            allowed = ", ".join(parent.model_fields) if parent else "see configs/paper.yaml"
            lines.append(f"unknown key '{loc}' (allowed here: {allowed})")
        else:
            got = item.get("input")
            got_text = "" if isinstance(got, dict) else f" (got {got!r})"
            where = f"'{loc}': " if loc else ""
            lines.append(f"{where}{item['msg']}{got_text}")
    return f"{source}: " + "; ".join(lines)


def _section_model(model: type[BaseModel], path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class reached by following field names along ``path``."""
    current: type[BaseModel] = model
    for part in path:
        field = current.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        current = annotation
    return current


def config_from_dict(raw: dict[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(
            _describe_validation_error(error, source, Config),
            fix="correct the key or value; configs/paper.yaml lists every key with its default.",
        ) from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load and validate a YAML config; ``None`` gives the study's defaults."""
    raw: dict[str, Any] = {}
    source = "default config"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist.", fix="pass an existing YAML file, e.g. configs/paper.yaml.")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"{path}:{where} is not valid YAML ({getattr(error, 'problem', error)}).") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(loaded).__name__}.")
        raw = loaded
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
    return config_from_dict(raw, source)


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def config_to_yaml(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)

