"""Structured configuration: the one home of every config value and of every allowed value.

Each section is a dataclass; ``harp.config.load`` layers the schema, a data preset, a config file
and ``key=value`` overrides on it with OmegaConf, so a value can be set from the command line
(``data.root=/data/UCF-101``), a config file, or a search space, and a typo fails with a clear
error instead of being silently ignored. Search spaces only say which of these values vary; they
never introduce new ones.

Enumerated keys are typed by the ``StrEnum`` classes below, so OmegaConf itself rejects a value
that is not one of them, and nothing downstream re-checks. A member *is* its string
(``cfg.optim.name == "sgd"``, f-strings, dict keys, JSON), and each member's name equals its value
because OmegaConf parses an enum from its name and writes the name back (``to_yaml``, ``to_dict``).

``None`` means "take the default that belongs elsewhere" (usually the model family's: its
frames, frame size, dropout), so one family's defaults never leak into another's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Choice(StrEnum):
    """Base of the enumerated config values: each member's name is its value (see above;
    tests/config checks it for every subclass)."""

    def __repr__(self) -> str:
        # As the plain string would print, so messages (``model.size='base'``) and dataclass
        # reprs read as they did when these keys were str.
        return repr(self.value)


class DataFormat(Choice):
    synthetic = "synthetic"
    ucf101 = "ucf101"
    hmdb51 = "hmdb51"
    kinetics = "kinetics"
    folder = "folder"
    manifest = "manifest"


class SamplingMethod(Choice):
    """The frame samplers of ``harp.data.sampling``, in the order they are documented there."""

    uniform = "uniform"
    equidistant = "equidistant"
    random = "random"
    dense = "dense"
    multi_clip = "multi_clip"
    segment_stride = "segment_stride"
    segment_frames = "segment_frames"


class ShortVideo(Choice):
    """What to do with a video shorter than the clip needs."""

    loop = "loop"
    repeat_last = "repeat_last"
    augment = "augment"


class DecodeBackend(Choice):
    decord = "decord"
    pyav = "pyav"


class ValStrategy(Choice):
    """How the validation split is carved: whole groups (no scene on both sides) or random clips."""

    group = "group"
    random = "random"


class FlipPolicy(Choice):
    """Horizontal flip: labels unchanged, never flip, or flip and swap labels (``data.flip_swap``)."""

    safe = "safe"
    never = "never"
    swap = "swap"


class ModelSize(Choice):
    tiny = "tiny"
    base = "base"


class OptimizerName(Choice):
    sgd = "sgd"
    adam = "adam"
    adamw = "adamw"


class LRSchedule(Choice):
    """The learning-rate schedule over epochs (``harp.train.optim``)."""

    none = "none"
    cosine = "cosine"
    step = "step"
    exponential = "exponential"
    linear = "linear"  # to zero at the last step (Hugging Face Trainer's default)


class Precision(Choice):
    """auto -> bf16 autocast on GPU, fp32 on CPU."""

    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


class Searcher(Choice):
    """The Optuna sampler that proposes trials."""

    tpe = "tpe"
    random = "random"
    grid = "grid"
    cmaes = "cmaes"
    nsga2 = "nsga2"


class TrialScheduler(Choice):
    """The Ray Tune scheduler that stops poor trials early."""

    asha = "asha"
    median = "median"
    none = "none"


class WandbMode(Choice):
    """auto -> online with an API key, offline without."""

    auto = "auto"
    online = "online"
    offline = "offline"
    disabled = "disabled"


class MetricMode(Choice):
    """Whether a higher (max) or a lower (min) metric is better."""

    max = "max"
    min = "min"


# Mapping-valued keys that take entries the schema does not name (family-specific model options,
# the label pairs a horizontal flip swaps): `+key=value` adds one, and a layer that gives the
# mapping gives all of it.
OPEN_MAPPINGS: tuple[str, ...] = ("model.options", "data.flip_swap")


@dataclass
class SynthConfig:
    """The embedded synthetic data set (``harp data synth``): classes that need time to tell apart."""

    num_classes: int = 10
    clips_per_class: int = 30
    min_size: int = 64
    max_size: int = 128
    min_frames: int = 24
    max_frames: int = 48
    short_fraction: float = 0.1  # clips shorter than a model's frame need (short-video handling)
    clips_per_group: int = 3  # clips sharing one scene, like UCF101's gGG groups (kept on one side of a split)
    seed: int = 0


@dataclass
class DataConfig:
    """Where the videos are, how they are indexed into a manifest, and how they are decoded."""

    format: DataFormat = DataFormat.synthetic
    root: str = "data/synthetic"
    # Split files folder (UCF101 ucfTrainTestlist/, HMDB51 testTrainMulti_7030_splits/),
    # the Kinetics CSV, or the generic CSV/Parquet manifest. "" -> looked for under root.
    annotations: str = ""
    split: int = 1
    # The Parquet manifest written by `harp data index` and read by training. "" -> <root>/harp_manifest.parquet
    manifest: str = ""
    val_fraction: float = 0.15
    val_strategy: ValStrategy = ValStrategy.group
    test_fraction: float = 0.2  # carved (group-aware) only when the data set has no official test split
    seed: int = 0
    # Horizontal flip policy: "safe" (labels unchanged), "never", or "swap" (flip_swap maps label -> label).
    flip: FlipPolicy = FlipPolicy.safe
    flip_swap: dict[str, str] = field(default_factory=dict)
    decode_backend: DecodeBackend = DecodeBackend.pyav  # harp's PyAV reader: faster than decord for every sampler (harp.data.decode)
    decode_timeout_s: float = 20.0
    short_video: ShortVideo = ShortVideo.loop
    num_workers: int = 2  # DataLoader worker processes per training worker
    max_bad_fraction: float = 0.05  # past this fraction of undecodable files an epoch fails loudly
    max_retries: int = 10  # replacement samples tried after a file fails to decode
    probe_workers: int = 0  # parallel probes while indexing; 0 -> number of CPUs
    # A class subset (Kaur's HMDB_simp: 25 HMDB51 classes, 50 videos each): the classes to keep
    # (empty -> all), or a file with one class name a line; label indices follow the data set's order.
    classes: list[str] = field(default_factory=list)
    classes_file: str = ""
    # > 0: keep this many videos per class (whole source-video groups first, a stable hash order) and
    # carve train/val/test inside each class with exact counts -- test = round(per_class x
    # test_fraction), val = round(rest x val_fraction) -- in place of the official split.
    per_class: int = 0
    synth: SynthConfig = field(default_factory=SynthConfig)


@dataclass
class SamplingConfig:
    """Which frames of a video make a clip (``harp.data.sampling``)."""

    method: SamplingMethod | None = None  # None -> the model family's default (uniform for most; segment_frames for mdt)
    num_frames: int | None = None  # None -> the model family's default frames
    interval: int = 2  # uniform: frame stride; segment_stride: take every k-th frame
    num_clips: int = 1  # multi_clip: clips per training sample
    segment_frames: int | None = None  # segment_frames: adjacent frames per segment; None -> model.options.segment_frames, else 1


@dataclass
class AugmentConfig:
    """Clip-consistent spatial transforms (same crop/flip for every frame of a clip)."""

    resize_short_side: int | None = None  # None -> frame_size * 8 / 7 (e.g. 128 for 112)
    crop_scales: list[float] = field(default_factory=lambda: [1.0, 0.875, 0.75, 0.66])
    hflip: bool = True
    color_jitter: float = 0.0


@dataclass
class ModelConfig:
    """Which family, how big, and where its weights start from (``harp.models``)."""

    family: str = "cnn3d_attention"
    size: ModelSize = ModelSize.tiny
    num_classes: int | None = None  # None -> from the manifest
    frames: int | None = None  # None -> the family's default for its size
    frame_size: int | None = None
    dropout: float | None = None
    # none | imagenet | kinetics400 | kinetics600 | ssv2 | file:PATH | hf:REPO_OR_DIR
    pretrained: str = "none"
    # How input pixels are normalised: "" -> as the pretraining source expects (its declared
    # normalisation, else the family's); or a name of harp.models.spec.INPUT_NORMS (imagenet, kinetics,
    # c3d_sports1m, ...), or the path of a JSON file {mean, std, pixel_range, channels}.
    input_norm: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # family-specific knobs


@dataclass
class OptimConfig:
    """Optimiser, regularisation and learning-rate schedule (``harp.train.optim``)."""

    name: OptimizerName = OptimizerName.adamw
    lr: float = 1e-3
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    weight_decay: float = 0.0  # the optimiser's own (decoupled for adamw)
    # explicit L2 penalty added to the loss (Chen, Tang & Cai 2022, "Human Action Recognition Based on
    # Vision Transformer and L2 Regularization"; harp.papers key chen2022)
    l2: float = 0.0
    schedule: LRSchedule = LRSchedule.cosine
    warmup_epochs: float = 0.0
    milestones: list[int] = field(default_factory=list)  # step schedule, in epochs
    gamma: float = 0.1  # step / exponential decay factor
    label_smoothing: float = 0.0


@dataclass
class TrainConfig:
    """One trial's training run (``harp.train``)."""

    epochs: int = 5
    batch_size: int = 8  # global batch; reached with grad_accum_steps when it does not fit
    grad_accum_steps: int = 1
    clip_grad_norm: float = 0.0  # 0 -> off
    num_workers: int = 1  # Ray Train data-parallel workers; 1 runs in-process
    use_gpu: bool | None = None  # None -> when a GPU exists
    precision: Precision = Precision.auto  # auto -> bf16 autocast on GPU, fp32 on CPU
    seed: int = 0
    max_steps_per_epoch: int | None = None
    output_dir: str = "runs/train"
    # torch's intra-op threads: None -> this process's count, which the run then records in its
    # checkpoints' config, so an exported config retrains with the threads the trial had
    # (reductions in another order give other numbers; harp.train.reproduce)
    threads: int | None = None
    deterministic: bool = False  # torch.use_deterministic_algorithms (exact on GPU too, slower)


@dataclass
class EvalConfig:
    """Test-time protocol: N temporal clips x M spatial crops, scores averaged."""

    split: str = "test"
    num_clips: int = 1
    num_crops: int = 1
    batch_size: int = 8


@dataclass
class WandbConfig:
    """Weights & Biases: online with an API key, offline without, or disabled."""

    mode: WandbMode = WandbMode.auto
    project: str = "harp"
    entity: str | None = None


@dataclass
class StudyTableConfig:
    """How a study's per-cell table is laid out (``harp.export``): which ``sweep.group_by`` keys
    name its rows and which its columns, as the paper's table has them. Empty rows -> the first
    group_by key; empty columns -> the other group_by keys (or one column when there are none)."""

    rows: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)


@dataclass
class SweepConfig:
    """The search: Ray Tune + Optuna + a trial scheduler (``harp.tune``)."""

    name: str | None = None  # None -> <search space name>-<timestamp>
    search_space: str = "search_spaces/default.yaml"
    output_dir: str = "runs"  # local path or any pyarrow-filesystem URI
    num_samples: int = 8
    max_concurrent_trials: int = 2
    searcher: Searcher = Searcher.tpe
    scheduler: TrialScheduler = TrialScheduler.asha
    metric: str = "val_top1"
    mode: MetricMode = MetricMode.max
    objectives: list[str] = field(default_factory=list)  # extra objectives for nsga2, e.g. ["gflops:min"]
    grace_period: int = 1
    reduction_factor: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    optuna_storage: str = ""  # SQLAlchemy URL or journal:///abs/file.log (Optuna JournalStorage); "" -> SQLite in the sweep directory
    ray_address: str = "local"
    max_failures: int = 2
    seed: int = 0
    # A study's cells: the best trial of each distinct combination of these config keys (``data``
    # = the data set) is selected on its own validation split and tested once; export writes
    # best/table.csv and best/table.md. Empty -> one best trial for the whole sweep.
    group_by: list[str] = field(default_factory=list)
    refit: bool = False  # retrain each cell's best config on train+val for its chosen epochs before the test
    table: StudyTableConfig = field(default_factory=StudyTableConfig)


@dataclass
class HarpConfig:
    """The whole configuration of one training run or sweep."""

    data: DataConfig = field(default_factory=DataConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
