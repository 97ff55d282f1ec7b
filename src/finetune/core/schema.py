"""The typed config schema: one model per params.yaml section, read by every stage and command.

``conf/`` is the only place defaults live. No field here has a default, so the code holds no
second copy of any value that could drift from ``conf/``, and a key missing from the composed
config is an error (``tests/test_config.py`` checks both). Unknown keys are errors
(``extra="forbid"``); :func:`finetune.core.config.validate` reports them with the key, the
closest known key and the ``conf/`` file they came from.

Values are checked strictly: an integer where a number is expected is fine, but a string, or a
bool for a number, is not. Ranges and choices are part of the types, so a wrong value stops a
stage before it reads any data.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from finetune.core.secrets import mask, refuse_password

SplitName = Literal["train", "validation", "test"]
# The names below are the keys of the registries that implement them (augment.methods,
# analysis.robustness); tests check that each registry and its name list agree.
AugmentMethod = Literal[
    "synonym_replacement",
    "random_insertion",
    "random_swap",
    "random_deletion",
    "aeda",
    "char_noise",
    "contextual",
]
RobustnessTest = Literal["typos", "casing", "punctuation", "contractions", "person_names"]
# resolved from the data (finetune.modeling.tokens, finetune.augment.augment), recorded where it ran
Auto = Literal["auto"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Pooling = Literal["auto", "cls", "mean"]

# A number as written in conf/: 2 stays 2 and 0.5 stays 0.5, so MLflow records the params exactly
# as params.yaml has them.
Number = int | float
Share = Annotated[Number, Field(gt=0, lt=1)]
Fraction = Annotated[Number, Field(ge=0, le=1)]
Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
PositiveNumber = Annotated[Number, Field(gt=0)]


class Section(BaseModel):
    """A params.yaml section: strict types, no unknown keys, immutable once read."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --------------------------------------------------------------------------- data


class HfSource(Section):
    """``data.hf``: a Hugging Face dataset (used when ``data.source`` is ``hf``)."""

    name: str | None
    config: str | None
    revision: str | None
    cache_dir: str | None
    splits: dict[str, str] | None


class SplitShares(Section):
    validation: Share
    test: Share
    method: Literal["hash", "stratified"]

    @model_validator(mode="after")
    def _together_below_one(self) -> SplitShares:
        if self.validation + self.test >= 1:
            raise ValueError(
                f"validation {self.validation} + test {self.test} must be below 1 "
                "(train is the rest)"
            )
        return self


class Cleaning(Section):
    unicode: Literal["NFC", "NFKC", "NFD", "NFKD"] | None
    whitespace: bool
    html: bool
    lowercase: bool
    empty_text: Literal["drop", "error"]
    dedup: Literal["none", "exact", "normalized"]
    conflicts: Literal["keep", "drop", "majority", "union"]


class DataReport(Section):
    token_sample: NonNegative


class DataConfig(Section):
    name: str
    source: Literal["files", "hf"]
    path: str | None
    watch: str | None
    split_files: dict[str, str] | None
    format: Literal["auto", "csv", "tsv", "jsonl", "parquet"]
    encoding: str
    delimiter: Annotated[str, Field(min_length=1, max_length=1)] | None
    hf: HfSource
    text_column: str | Annotated[list[str], Field(min_length=1)]
    text_separator: str
    label_column: str
    task: Literal["auto", "single_label", "multi_label"]
    label_separator: Annotated[str, Field(min_length=1)] | None
    labels: Annotated[list[str | int], Field(min_length=2)] | None
    id_column: str | None
    extra_columns: list[str]
    known_mislabels: str | None
    split: SplitShares
    leakage: Literal["leave_train", "leave_evaluation"]
    unseen_labels: Literal["drop", "error"]
    min_examples_per_class: Positive
    cleaning: Cleaning
    report: DataReport

    @property
    def text_columns(self) -> tuple[str, ...]:
        return (self.text_column,) if isinstance(self.text_column, str) else tuple(self.text_column)

    @property
    def label_set(self) -> tuple[str, ...] | None:
        """``labels`` as strings (YAML may give integers), in id order; None: found in the data."""
        return tuple(str(x) for x in self.labels) if self.labels else None


# --------------------------------------------------------------------------- model


class ModelConfig(Section):
    name: str
    name_or_path: str
    license: str | None
    max_length: Annotated[int, Field(ge=2)] | Auto
    pooling: Pooling
    long_text: Literal["auto", "head", "tail", "head_tail", "chunks"]
    head_share: Annotated[float, Field(gt=0, lt=1)]
    chunk_overlap: Annotated[float, Field(ge=0, lt=1)]
    chunk_pool: Literal["mean", "max"]


# --------------------------------------------------------------------------- train


class LoraConfig(Section):
    enabled: bool
    r: Positive
    alpha: PositiveNumber
    dropout: Annotated[Number, Field(ge=0, lt=1)]
    target_modules: list[str] | None


class DistillConfig(Section):
    """``train.distill``: knowledge distillation from a teacher's soft targets."""

    enabled: bool
    teacher: str | Annotated[list[str], Field(min_length=1)] | None
    temperature: PositiveNumber
    alpha: Fraction
    keep_every_kth_layer: Positive

    @model_validator(mode="after")
    def _teacher_given(self) -> DistillConfig:
        if self.enabled and not self.teacher:
            raise ValueError(
                "enabled is true but teacher is not set: give a trained model directory or a "
                "models:/ URI (a list of them: an ensemble)"
            )
        return self

    @property
    def teachers(self) -> tuple[str, ...]:
        if not self.teacher:
            return ()
        return (self.teacher,) if isinstance(self.teacher, str) else tuple(self.teacher)


class MultiLabelConfig(Section):
    """How a multi-label model learns and decides (data.task resolving to multi_label)."""

    thresholds: Literal["tuned"] | Annotated[float, Field(gt=0, lt=1)]
    min_positives: Positive
    at_least_one: bool | Auto
    pos_weight: Literal["none", "sqrt", "balanced"]


class TrainConfig(Section):
    epochs: PositiveNumber | Auto
    max_epochs: PositiveNumber
    time_budget: Annotated[str, Field(pattern=r"^\d+\s*[smhdw]$")] | None
    batch_size: Positive
    eval_batch_size: Positive
    learning_rate: PositiveNumber
    weight_decay: Annotated[Number, Field(ge=0)]
    warmup_ratio: Annotated[Number, Field(ge=0, lt=1)]
    lr_scheduler: str
    max_grad_norm: PositiveNumber
    gradient_accumulation_steps: Positive
    max_steps: int
    optim: str
    precision: Precision
    num_threads: Positive | None
    logging_steps: Positive
    progress_bar: bool
    metric_for_best_model: Literal["f1_macro", "accuracy", "loss"]
    eval_steps: Positive | Auto | None
    early_stopping_patience: Positive | Auto | None
    early_stopping_min_delta: Annotated[Number, Field(ge=0)] | Auto
    class_weights: Literal["balanced"] | list[PositiveNumber] | dict[str, PositiveNumber] | None
    multi_label: MultiLabelConfig
    head_init: Literal["random", "probe"] | Auto
    freeze_embeddings: bool
    freeze_layers: NonNegative
    layer_lr_decay: Annotated[Number, Field(gt=0, le=1)]
    attention_dropout: Annotated[Number, Field(ge=0, lt=1)] | Auto | None
    lora: LoraConfig
    distill: DistillConfig
    group_by_length: bool
    torch_compile: bool
    keep_checkpoints: bool


# --------------------------------------------------------------------------- augment


class Balance(Section):
    enabled: bool
    target_ratio: Annotated[Number, Field(gt=0, le=1)]


class AugmentConfig(Section):
    enabled: bool | Auto
    copies_per_example: NonNegative | Literal["auto"]
    fraction: Fraction
    methods: list[AugmentMethod]
    alpha: Annotated[Number, Field(gt=0, le=1)] | Literal["auto"]
    aeda_ratio: PositiveNumber
    synonyms: Literal["wordnet"]
    mlm_path: str | None
    mlm_top_k: Positive
    balance: Balance
    sample_pairs: NonNegative

    @model_validator(mode="after")
    def _methods_fit(self) -> AugmentConfig:
        if self.enabled is not False and not self.methods:
            raise ValueError(f"methods is empty while enabled is {self.enabled}")
        if self.enabled is not False and "contextual" in self.methods and not self.mlm_path:
            raise ValueError(
                "methods has `contextual` but mlm_path is not set: give a local masked "
                "language model directory, or drop `contextual`"
            )
        return self


# --------------------------------------------------------------------------- evaluate


class BaselineConfig(Section):
    C: PositiveNumber
    max_features: Positive | None
    char_ngrams: bool


class EvaluateConfig(Section):
    batch_size: Positive
    split: SplitName
    validation_split: SplitName | None
    calibration_bins: Positive
    curve_points: Annotated[int, Field(ge=2)]
    baseline: BaselineConfig


# --------------------------------------------------------------------------- error analysis


class SlicesConfig(Section):
    length_bins: list[Positive]
    columns: list[str] | None
    bootstrap: Positive
    min_slice_size: Positive
    weakest_k: NonNegative

    @model_validator(mode="after")
    def _ascending(self) -> SlicesConfig:
        if self.length_bins != sorted(set(self.length_bins)):
            raise ValueError(f"length_bins {self.length_bins} must be strictly ascending")
        return self


# Out-of-sample probabilities for ranking the labelled rows (finetune.analysis.label_errors).
LabelErrorSource = Literal["backbone", "tfidf", "embeddings", "finetuned"]


class LabelErrorsConfig(Section):
    splits: Annotated[list[SplitName], Field(min_length=1)]
    sources: Annotated[list[LabelErrorSource], Field(min_length=1)]
    folds: Annotated[int, Field(ge=2)]
    C: PositiveNumber
    finetune_epochs: PositiveNumber
    rows: Positive | None
    shown: NonNegative


class RobustnessConfig(Section):
    tests: list[RobustnessTest]
    examples: NonNegative
    max_texts: Positive | None


ExplainerName = Literal["integrated_gradients", "shap", "lime"]


class ExplanationsConfig(Section):
    methods: list[ExplainerName]
    top_errors: NonNegative
    correct: NonNegative
    n_steps: Positive
    shap_max_evals: Annotated[int, Field(ge=10)]
    lime_samples: Annotated[int, Field(ge=10)]
    fractions: Annotated[list[Annotated[Number, Field(gt=0, le=1)]], Field(min_length=1)]
    time_budget: Annotated[str, Field(pattern=r"^\d+\s*[smhdw]$")] | None


class ErrorAnalysisConfig(Section):
    max_errors: NonNegative
    shown_errors: NonNegative
    top_confusions: NonNegative
    examples_per_confusion: NonNegative
    batch_size: Positive
    compare_to: Literal["auto", "git", "mlflow", "none"]
    slices: SlicesConfig
    label_errors: LabelErrorsConfig
    robustness: RobustnessConfig
    explanations: ExplanationsConfig


# --------------------------------------------------------------------------- export

ExportVariant = Literal["fp32", "int8", "int8_per_channel", "fp16"]


class Int8Config(Section):
    reduce_range: bool | Auto
    operators: list[str] | None


class ExportConfig(Section):
    variants: Annotated[list[ExportVariant], Field(min_length=1)]
    opset: Annotated[int, Field(ge=14)]
    optimize: bool
    int8: Int8Config
    max_f1_drop: Annotated[Number, Field(ge=-1, le=1)]  # negative: a variant must beat PyTorch
    latency_texts: Positive | None
    throughput_batch_size: Positive
    num_threads: Positive | None
    registered_model_name: str | None


# --------------------------------------------------------------------------- tracking, lifecycle


# A URL that may name a server with credentials: never with its password (core.secrets).
UrlSetting = Annotated[str, AfterValidator(refuse_password)]


class TrackingConfig(Section):
    uri: UrlSetting | None
    experiment_name: str
    registered_model_name: str | None
    log_model: bool
    outage_wait_s: Annotated[Number, Field(ge=0)]


class PromotionConfig(Section):
    min_f1_gain: Annotated[Number, Field(ge=-1, le=1)]
    max_recall_drop: Annotated[Number, Field(ge=0, le=1)]
    split: SplitName
    require_beat_baseline: bool


RetrainWhen = Literal["new-data", "drift", "always"]


class RetrainConfig(Section):
    incoming: str
    lock_file: str
    lock_timeout_s: Annotated[Number, Field(ge=0)]
    repro_timeout_s: PositiveNumber
    push: bool
    when: RetrainWhen


# --------------------------------------------------------------------------- monitoring

PValue = Annotated[Number, Field(gt=0, lt=1)]


class MonitorThresholds(Section):
    domain_auc: Annotated[Number, Field(ge=0.5, lt=1)]
    mmd_p_value: PValue
    prediction_p_value: PValue
    psi: PositiveNumber
    script_shift: Share
    accuracy_drop: Share
    performance_p_value: PValue


class MonitorConfig(Section):
    reference_size: Annotated[int, Field(ge=20)]
    batch_size: Positive
    max_texts: Annotated[int, Field(ge=20)]
    folds: Annotated[int, Field(ge=2)]
    bootstrap: Annotated[int, Field(ge=100)]
    permutations: Annotated[int, Field(ge=99)]
    mmd_samples: Annotated[int, Field(ge=20)]
    confidence_level: Share
    low_confidence: Share
    min_batch: Positive
    out_of_place: NonNegative
    to_label: NonNegative
    thresholds: MonitorThresholds
    experiment_name: str
    log_predictions: bool
    log_flush_rows: Positive
    log_flush_seconds: PositiveNumber
    log_retention_days: Positive | None

    @model_validator(mode="after")
    def _reachable_p_value(self) -> MonitorConfig:
        smallest = 1 / (self.permutations + 1)
        if self.thresholds.mmd_p_value <= smallest:
            raise ValueError(
                f"thresholds.mmd_p_value {self.thresholds.mmd_p_value} can never be reached: "
                f"{self.permutations} permutations give p-values of at least {smallest:.4g}; "
                "raise permutations or the threshold"
            )
        return self


# --------------------------------------------------------------------------- tuning

# A searched key: a leaf of the train, model or augment section (finetune.tuning.space checks
# that it exists and that every value the search can give passes this schema).
SearchedKey = Annotated[str, Field(pattern=r"^(train|model|augment)\.[a-z_][a-z0-9_.]*$")]
StudyName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,60}$")]


class _RangeParam(Section):
    """A range: ``low`` to ``high`` (both included), on a log scale if ``log``."""

    param: SearchedKey
    log: bool

    @model_validator(mode="after")
    def _range(self) -> _RangeParam:
        low, high = self.low, self.high  # type: ignore[attr-defined]
        if not low < high:
            raise ValueError(f"{self.param}: empty range, low {low} is not below high {high}")
        if self.log and low <= 0:
            raise ValueError(f"{self.param}: a log-scale range needs low > 0 (got {low})")
        return self


class FloatParam(_RangeParam):
    type: Literal["float"]
    low: Number
    high: Number


class IntParam(_RangeParam):
    type: Literal["int"]
    low: int
    high: int


class CategoricalParam(Section):
    param: SearchedKey
    type: Literal["categorical"]
    choices: Annotated[list[bool | int | float | str | None], Field(min_length=1)]

    @model_validator(mode="after")
    def _distinct(self) -> CategoricalParam:
        if len(set(map(repr, self.choices))) != len(self.choices):
            raise ValueError(f"{self.param}: choices {self.choices} repeat a value")
        return self


SearchParam = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


class TuneObjective(Section):
    metric: Literal["val_f1_macro", "val_accuracy", "val_loss"]
    direction: Literal["maximize", "minimize"]

    @model_validator(mode="before")
    @classmethod
    def _not_test(cls, data: Any) -> Any:
        metric = data.get("metric") if isinstance(data, dict) else None
        if isinstance(metric, str) and not metric.startswith("val_"):
            raise ValueError(
                f"objective.metric {metric!r}: the search may only optimise a validation "
                "metric (val_f1_macro, val_accuracy, val_loss); choosing hyperparameters on the "
                "test split makes its figures optimistic"
            )
        return data

    @model_validator(mode="after")
    def _direction(self) -> TuneObjective:
        expected = "minimize" if self.metric == "val_loss" else "maximize"
        if self.direction != expected:
            raise ValueError(f"objective.direction for {self.metric} must be {expected}")
        return self


class TuneSampler(Section):
    type: Literal["tpe", "random", "grid"]
    seed: int
    startup_trials: NonNegative


class TunePruner(Section):
    type: Literal["median", "hyperband", "threshold", "none"]
    startup_trials: NonNegative
    warmup_steps: NonNegative
    interval_steps: Positive
    min_resource: Positive
    reduction_factor: Annotated[int, Field(ge=2)]
    lower: Number | None
    upper: Number | None

    @model_validator(mode="after")
    def _threshold(self) -> TunePruner:
        if self.type == "threshold" and self.lower is None and self.upper is None:
            raise ValueError("pruner.type threshold needs lower or upper")
        return self


class TuneConfig(Section):
    study_name: StudyName
    storage: UrlSetting | None
    trials: Positive
    timeout: Annotated[str, Field(pattern=r"^\d+\s*[smhdw]$")] | None
    jobs: Positive
    max_failures_in_a_row: Positive
    targets: Annotated[list[str], Field(min_length=1)]
    objective: TuneObjective
    sampler: TuneSampler
    pruner: TunePruner
    space: Annotated[list[SearchParam], Field(min_length=1)]
    overrides: list[str]

    @model_validator(mode="after")
    def _distinct_params(self) -> TuneConfig:
        names = [p.param for p in self.space]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"space lists {', '.join(repeated)} more than once")
        return self


class PathsConfig(Section):
    """Every path the pipeline reads or writes, relative to the repository root."""

    processed_dir: str
    preprocess_report: str
    preprocess_report_md: str
    preprocess_class_counts: str
    token_length_plot: str
    token_length_image: str
    augmented_dir: str
    augment_report: str
    augment_samples: str
    model_dir: str
    run_info: str
    train_report: str
    metrics_train: str
    checkpoints_dir: str
    evaluate_metrics: str
    metrics_evaluate: str
    evaluate_per_class: str
    evaluate_by_length: str
    confusion_plot: str
    confusion_image: str
    predictions: str
    pr_curve_plot: str
    roc_plot: str
    reliability_plot: str
    evaluate_figures: str
    error_report_html: str
    error_report: str
    error_tables: str
    error_metrics: str
    export_dir: str
    export_metrics: str
    metrics_export: str
    export_report: str
    export_plot: str
    export_image: str
    promotion_report: str
    promotion_decision: str
    retrain_ledger: str
    monitor_dir: str
    monitor_latest: str
    monitor_cache: str
    prediction_log: str
    tune_dir: str
    tune_db: str
    tune_lock_dir: str
    tuned_preset: str
    services_dir: str


# --------------------------------------------------------------------------- the whole config


# --------------------------------------------------------------------------- team services

Port = Annotated[int, Field(ge=1, le=65535)]


class PostgresConfig(Section):
    port: Port
    user: str
    password: str
    database: str
    bin_dir: str | None


class ObjectStoreConfig(Section):
    port: Annotated[int, Field(ge=1, le=55532)]  # +3 (master, volume, filer) and +10000 (gRPC)
    access_key: str
    secret_key: str
    region: str
    bucket: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]


class MlflowServerConfig(Section):
    port: Port
    workers: Positive


class ServicesConfig(Section):
    """``services``: the team stack ``finetune services up`` starts (PostgreSQL, S3, MLflow)."""

    host: str
    start_timeout_s: PositiveNumber
    postgres: PostgresConfig
    s3: ObjectStoreConfig
    mlflow: MlflowServerConfig


class SparkPredictConfig(Section):
    """``predict.spark``: ``finetune predict --engine spark`` (each key has a flag)."""

    master: str
    partitions: Positive | None
    prefer_onnx: bool
    output_format: Literal["parquet", "csv"]
    conf: dict[str, str | int | float | bool]


class PredictConfig(Section):
    """``predict``: batch scoring settings read by ``finetune predict``."""

    spark: SparkPredictConfig


class PipelineConfig(Section):
    """params.yaml as a whole: what every stage and ``finetune`` command reads."""

    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    augment: AugmentConfig
    evaluate: EvaluateConfig
    error_analysis: ErrorAnalysisConfig
    export: ExportConfig
    tracking: TrackingConfig
    promotion: PromotionConfig
    retrain: RetrainConfig
    monitor: MonitorConfig
    tune: TuneConfig
    services: ServicesConfig
    predict: PredictConfig
    seed: int
    paths: PathsConfig

    def params(self) -> dict[str, Any]:
        """Everything but ``paths``, ``services`` and ``predict`` (where things live, the
        services' passwords, how batches are scored later), as plain data: what MLflow records
        as the run's params; a password in any URL in them is masked."""
        return mask(self.model_dump(mode="json", exclude={"paths", "services", "predict"}))


def choices(literal: Any) -> tuple[str, ...]:
    """The allowed values of a ``Literal`` name list, e.g. ``choices(AugmentMethod)``."""
    return tuple(get_args(literal))
