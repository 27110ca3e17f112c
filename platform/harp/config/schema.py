"""Structured configuration: the one home of every config value.

Each section is a dataclass registered in Hydra's ConfigStore (see ``harp.config.load``), so a
value can be overridden from the command line (``data.root=/data/UCF-101``), a config file, or a
search space, and a typo fails with a clear error instead of being silently ignored. Search
spaces only say which of these values vary; they never introduce new ones.

``None`` means "take the default that belongs elsewhere" (usually the model family's: its
frames, frame size, dropout), so one family's defaults never leak into another's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

# The allowed values of the enumerated keys, in one place; validation and the docs read these.
DATA_FORMATS = ("synthetic", "ucf101", "hmdb51", "kinetics", "folder", "manifest")
SAMPLING_METHODS = ("uniform", "equidistant", "random", "dense", "multi_clip", "segment_stride")
SHORT_VIDEO_MODES = ("loop", "repeat_last", "augment")
DECODE_BACKENDS = ("decord", "pyav")
VAL_STRATEGIES = ("group", "random")
FLIP_POLICIES = ("safe", "never", "swap")
MODEL_SIZES = ("tiny", "base")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "cosine", "step", "exponential")
PRECISIONS = ("auto", "fp32", "bf16")
SEARCHERS = ("tpe", "random", "grid", "cmaes", "nsga2")
SCHEDULERS = ("asha", "median", "none")
WANDB_MODES = ("auto", "online", "offline", "disabled")
METRIC_MODES = ("max", "min")


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

    format: str = "synthetic"
    root: str = "data/synthetic"
    # Split files folder (UCF101 ucfTrainTestlist/, HMDB51 testTrainMulti_7030_splits/),
    # the Kinetics CSV, or the generic CSV/Parquet manifest. "" -> looked for under root.
    annotations: str = ""
    split: int = 1
    # The Parquet manifest written by `harp data index` and read by training. "" -> <root>/harp_manifest.parquet
    manifest: str = ""
    val_fraction: float = 0.15
    val_strategy: str = "group"
    test_fraction: float = 0.2  # carved (group-aware) only when the data set has no official test split
    seed: int = 0
    # Horizontal flip policy: "safe" (labels unchanged), "never", or "swap" (flip_swap maps label -> label).
    flip: str = "safe"
    flip_swap: Dict[str, str] = field(default_factory=dict)
    decode_backend: str = "decord"
    decode_timeout_s: float = 20.0
    short_video: str = "loop"
    num_workers: int = 2  # DataLoader worker processes per training worker
    max_bad_fraction: float = 0.05  # past this fraction of undecodable files an epoch fails loudly
    max_retries: int = 10  # replacement samples tried after a file fails to decode
    probe_workers: int = 0  # parallel probes while indexing; 0 -> number of CPUs
    synth: SynthConfig = field(default_factory=SynthConfig)


@dataclass
class SamplingConfig:
    """Which frames of a video make a clip (``harp.data.sampling``)."""

    method: str = "uniform"
    num_frames: Optional[int] = None  # None -> the model family's default frames
    interval: int = 2  # uniform: frame stride; segment_stride: take every k-th frame
    num_clips: int = 1  # multi_clip: clips per training sample


@dataclass
class AugmentConfig:
    """Clip-consistent spatial transforms (same crop/flip for every frame of a clip)."""

    resize_short_side: Optional[int] = None  # None -> frame_size * 8 / 7 (e.g. 128 for 112)
    crop_scales: List[float] = field(default_factory=lambda: [1.0, 0.875, 0.75, 0.66])
    hflip: bool = True
    color_jitter: float = 0.0


@dataclass
class ModelConfig:
    """Which family, how big, and where its weights start from (``harp.models``)."""

    family: str = "cnn3d_attention"
    size: str = "tiny"
    num_classes: Optional[int] = None  # None -> from the manifest
    frames: Optional[int] = None  # None -> the family's default for its size
    frame_size: Optional[int] = None
    dropout: Optional[float] = None
    # none | imagenet | kinetics400 | kinetics600 | ssv2 | file:PATH | hf:REPO_OR_DIR
    pretrained: str = "none"
    options: Dict[str, Any] = field(default_factory=dict)  # family-specific knobs


@dataclass
class OptimConfig:
    """Optimiser, regularisation and learning-rate schedule (``harp.train.optim``)."""

    name: str = "adamw"
    lr: float = 1e-3
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    weight_decay: float = 0.0  # the optimiser's own (decoupled for adamw)
    l2: float = 0.0  # explicit L2 penalty added to the loss (000_57caf5912cf98c58.txt)
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    milestones: List[int] = field(default_factory=list)  # step schedule, in epochs
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
    use_gpu: Optional[bool] = None  # None -> when a GPU exists
    precision: str = "auto"  # auto -> bf16 autocast on GPU, fp32 on CPU
    seed: int = 0
    max_steps_per_epoch: Optional[int] = None
    output_dir: str = "runs/train"


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

    mode: str = "auto"
    project: str = "harp"
    entity: Optional[str] = None


@dataclass
class SweepConfig:
    """The search: Ray Tune + Optuna + a trial scheduler (``harp.tune``)."""

    name: Optional[str] = None  # None -> <search space name>-<timestamp>
    search_space: str = "search_spaces/default.yaml"
    output_dir: str = "runs"  # local path or any pyarrow-filesystem URI
    num_samples: int = 8
    max_concurrent_trials: int = 2
    searcher: str = "tpe"
    scheduler: str = "asha"
    metric: str = "val_top1"
    mode: str = "max"
    objectives: List[str] = field(default_factory=list)  # extra objectives for nsga2, e.g. ["gflops:min"]
    grace_period: int = 1
    reduction_factor: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    optuna_storage: str = ""  # SQLAlchemy URL; "" -> SQLite in the sweep directory
    ray_address: str = "local"
    max_failures: int = 2
    seed: int = 0


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
