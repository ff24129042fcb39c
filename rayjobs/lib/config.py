"""The one configuration tree of every Ray job: data, model, loss, optimisation, scaling, tracking.

Loaded as preset YAML (``rayjobs/presets/<name>.yaml``), then an optional user YAML, then
``--set key.path=value`` overrides; the effective tree is saved with every run.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
from pathlib import Path

from rayjobs.lib.balance import BALANCES
from rayjobs.lib.configtree import from_dict, load_yaml, merge, parse_override
from sffb.backbone import available_backbones
from sffb.fusion import FUSIONS
from sffb.losses import DistillationLoss
from sffb.model import SFFBConfig

PRESETS = Path(__file__).resolve().parents[1] / "presets"
DEFAULT_PRESET = "cpu-demo"
PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
MODEL_INITS = ("auto", "random", "pretrained", "teacher")
#: What relaunching an existing run name does (rayjobs/lib/run_names.py): resume it when its
#: configuration is this job's (auto), refuse any existing run (never), or refuse a new one (must).
RESUME_MODES = ("auto", "never", "must")
#: timm's learning-rate schedules that make sense stepped once per epoch.
LR_SCHEDULES = ("constant", "cosine", "poly", "tanh")
#: The SFFBConfig keys that fix the weights' shapes: a teacher-initialised student must match.
ARCHITECTURE_KEYS = ("backbone", "fusion", "fusion_options", "num_classes", "image_size",
                     "band_cuts")  # fmt: skip


@dataclass(frozen=True)
class AugmentConfig:
    """Applied identically to both crops of a pair (SPEC §3); probabilities and jitter spans."""

    flip: float = 0.5
    grayscale: float = 0.1
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2


@dataclass(frozen=True)
class DataConfig:
    shards: str = ""  # prepared shards, a path or URI (data_prep); "" = the embedded dataset
    methods: tuple[str, ...] = ()  # fake methods to use besides every real; () = all
    teacher_level: str = "raw"
    student_level: str = "c23"
    batch_size: int = 32  # global: split evenly over the workers
    prefetch_batches: int = 2
    shuffle_buffer: int = 256  # local shuffle buffer (rows) per worker
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Where training pairs are augmented: "device" (the training worker's GPU or CPU, leaving
    # Ray Data's CPUs to decoding; see BENCHMARKS.md) or "cpu" (inside Ray Data's workers).
    augment_on: str = "device"
    # Class imbalance of the train split (rayjobs/lib/balance.py): auto (loss weights past 1:2),
    # none, loss_weights (balanced cross-entropy) or sampler (the smaller class repeated).
    balance: str = "auto"
    # The same seed gives the same batches (rayjobs/lib/reproducible.py): files shuffled with the
    # job's seed, rows kept in order through Ray Data and handed to workers by count, not by
    # who asks first. false lets Ray Data hand out blocks as they finish (no wait on a slow one).
    deterministic: bool = True


@dataclass(frozen=True)
class LossConfig:
    lambda1: float = 2.0
    lambda2: float = 100.0
    lambda3: float = 1.0
    temperature: float = 1.0
    knowledge: str = "maps+logits"
    soft_scale: str = "none"  # "t2": L_soft times T^2 (Hinton et al.); "none": the paper's
    feature_norm: str = "none"  # "l2": maps L2-normalised per sample before comparing
    balance: str = "none"  # "running": each term divided by its running mean (EMA)
    balance_momentum: float = 0.99  # the EMA's momentum per step
    kd_warmup_epochs: int = 0  # feature + soft terms ramp from 0 (epoch 0) to full at this epoch


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 2e-4
    # Adam's rate for a student that starts as a copy of its trained teacher (``model.init:
    # teacher``): fine-tuning trained weights wants smaller steps than training from scratch
    # (docs/distillation.md, "Eleventh"). None = ``lr``.
    teacher_start_lr: float | None = None
    weight_decay: float = 0.0
    epochs: int = 10
    # The teacher's pretraining epochs (pretrain_teacher.py, or distill.py training a missing
    # teacher); None = ``epochs``. Learning a faint raw-only trace from random weights takes
    # more epochs than fine-tuning a student from the teacher (docs/distillation.md, "Fifteenth").
    teacher_epochs: int | None = None
    fused: bool = False  # fused Adam kernel (CUDA, and CPU: 1.06x a CPU KD step at 96x96)
    # Learning-rate schedule (timm's, stepped per epoch): LR_SCHEDULES; constant = the paper's.
    schedule: str = "constant"
    # The teacher's schedule over ``teacher_epochs``; None = ``schedule``. A teacher learning a
    # faint trace from random weights settles better on a decaying rate (docs/distillation.md,
    # "Twentieth"), while a student fine-tuned from it keeps its own schedule.
    teacher_schedule: str | None = None
    warmup_epochs: int = 0  # linear warm-up from warmup_lr to lr over these first epochs
    warmup_lr: float = 1.0e-5
    min_lr: float = 0.0  # where cosine / poly / tanh end
    # After each epoch, BatchNorm statistics recomputed on this many of the epoch's first
    # (un-augmented) batches per worker before validation and checkpointing ("precise BN",
    # sffb/batchnorm.py): short runs otherwise evaluate with stale statistics. 0 = off.
    precise_bn_batches: int = 16
    # An exponential moving average of the weights (timm's ModelEmaV3, its decay warmed up and
    # capped here) is what is validated and kept, the trained weights only resume training
    # (rayjobs/lib/weight_average.py). 0 = off: the trained weights are kept.
    ema_decay: float = 0.0
    # The gradient's global L2 norm clipped to this before each step (DDP: after the gradients
    # are averaged, so every rank clips alike); 0 = off. The norm is logged as train_grad_norm.
    clip_grad_norm: float = 0.0


@dataclass(frozen=True)
class ScalingConfig:
    num_workers: int = 2
    use_gpu: str = "auto"  # "auto" (GPUs when the cluster has them), "yes", "no"
    cpus_per_worker: float = 0.5  # fractional by default: leaves CPU to Ray Data on small hosts
    bf16: bool = True  # autocast on GPU
    # bf16 autocast on CPU workers: auto (where the CPU computes bf16 itself, AVX-512 BF16 or
    # AMX: 1.5x a KD step at 96x96), true (anywhere; emulated elsewhere, and slower: 0.8x) or
    # false (fp32). Like channels_last, it changes the float arithmetic, so the trajectory.
    cpu_bf16: bool | str = False
    channels_last: bool = False
    # GPU DDP: BatchNorm statistics over the global batch, not each GPU's few samples.
    sync_batchnorm: bool = True
    max_failures: int = 2  # worker failures recovered from the latest checkpoint
    # How Ray places the workers: PACK (fewest nodes), SPREAD (one per node where possible).
    placement_strategy: str = "PACK"


@dataclass(frozen=True)
class ModelConfig(SFFBConfig):
    """The SFFB's architecture (``sffb.SFFBConfig``) plus how a job starts its weights.

    ``init``: ``auto`` (ImageNet weights when ``pretrained_path`` is set, else random),
    ``random``, ``pretrained`` (needs ``pretrained_path``), or ``teacher`` (a student starts as
    an exact copy of its teacher: the obvious baseline for distillation).
    """

    init: str = "auto"


@dataclass(frozen=True)
class TrackingConfig:
    experiment: str = "sffb"
    # "" = derived from the job, backbone, fusion, methods, level and a hash of the rest of
    # the configuration (rayjobs/lib/run_names.py); relaunching a name resumes that run.
    run_name: str = ""
    resume: str = "auto"  # RESUME_MODES
    storage_path: str = ""  # checkpoints, a path or URI (s3://...); "" = $SFFB_HOME/runs
    tracking_uri: str = ""  # "" = $MLFLOW_TRACKING_URI, else SQLite under $SFFB_HOME
    teacher_run: str = ""  # distillation: the teacher run's name ("" = the default teacher)
    # CPU, memory, disk, network and (with nvidia-ml-py) GPU use of rank 0's machine, logged
    # by MLflow as system/* metrics every this many seconds during training; 0 = off.
    system_metrics_interval_s: float = 10.0


@dataclass(frozen=True)
class JobConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    seed: int = 0

    def uses_teacher(self, mode: str) -> bool:
        """A student learns from the teacher unless its knowledge is ``none`` (SFFB alone)."""
        return mode == "student" and self.loss.knowledge != "none"

    def needs_teacher_checkpoint(self, mode: str) -> bool:
        """Distillation reads the teacher, and so does a student that starts from its weights."""
        return self.uses_teacher(mode) or self.starts_from_teacher(mode)

    def sffb_alone(self) -> JobConfig:
        """SFFB alone, the baseline distillation must beat: this job with nothing from the
        teacher, neither its knowledge (``loss.knowledge: none``) nor its weights (``model.init:
        teacher`` becomes ``auto``: the teacher fine-tuned without KD is another baseline)."""
        init = "auto" if self.model.init == "teacher" else self.model.init
        return replace(
            self, loss=replace(self.loss, knowledge="none"), model=replace(self.model, init=init)
        )

    def starts_from_teacher(self, mode: str) -> bool:
        """A student that begins as an exact copy of its teacher's weights."""
        return mode == "student" and self.model.init == "teacher"

    def learning_rate(self, mode: str) -> float:
        """Adam's rate for this run: ``optim.teacher_start_lr`` when fine-tuning the teacher."""
        if self.starts_from_teacher(mode) and self.optim.teacher_start_lr is not None:
            return self.optim.teacher_start_lr
        return self.optim.lr

    def input_level(self, mode: str) -> str:
        """The level the trained model sees: compressed for a student, raw for the teacher."""
        return self.data.student_level if mode == "student" else self.data.teacher_level

    def training_levels(self, mode: str) -> tuple[str, ...]:
        """The levels a training batch holds: the teacher's (when used), then the model's input."""
        own = self.input_level(mode)
        return (self.data.teacher_level, own) if self.uses_teacher(mode) else (own,)

    def __post_init__(self) -> None:
        if self.model.backbone not in available_backbones():
            raise ValueError(
                f"model.backbone: unknown {self.model.backbone!r}; one of {available_backbones()}"
            )
        if self.model.fusion not in FUSIONS:
            raise ValueError(
                f"model.fusion: unknown {self.model.fusion!r}; one of {sorted(FUSIONS)}"
            )
        try:  # the loss validates its own options: one source of truth for them
            DistillationLoss(**vars(self.loss))
        except ValueError as error:
            raise ValueError(f"loss: {error}") from None
        if min(self.optim.lr, self.optim.teacher_start_lr or 0.0) < 0:
            raise ValueError("optim.lr and optim.teacher_start_lr must be >= 0")
        for key in ("schedule", "teacher_schedule"):
            value = getattr(self.optim, key)
            if value is not None and value not in LR_SCHEDULES:
                raise ValueError(f"optim.{key}: unknown {value!r}; one of {LR_SCHEDULES}")
        if self.optim.teacher_epochs is not None and self.optim.teacher_epochs < 1:
            raise ValueError(f"optim.teacher_epochs must be >= 1, got {self.optim.teacher_epochs}")
        if self.optim.clip_grad_norm < 0:
            raise ValueError(f"optim.clip_grad_norm must be >= 0, got {self.optim.clip_grad_norm}")
        if not 0.0 <= self.optim.ema_decay < 1.0:
            raise ValueError(f"optim.ema_decay must be in [0, 1), got {self.optim.ema_decay}")
        shortest = min(self.optim.epochs, self.optim.teacher_epochs or self.optim.epochs)
        if not 0 <= self.optim.warmup_epochs < max(shortest, 1):
            raise ValueError(
                f"optim.warmup_epochs {self.optim.warmup_epochs} must be in [0, optim.epochs) "
                "and [0, optim.teacher_epochs)"
            )
        if isinstance(self.scaling.cpu_bf16, str) and self.scaling.cpu_bf16 != "auto":
            raise ValueError(
                f"scaling.cpu_bf16: expected true, false or auto, got {self.scaling.cpu_bf16!r}"
            )
        if self.scaling.use_gpu not in ("auto", "yes", "no"):
            raise ValueError(
                f"scaling.use_gpu: expected auto, yes or no, got {self.scaling.use_gpu!r}"
            )
        if self.tracking.resume not in RESUME_MODES:
            raise ValueError(
                f"tracking.resume: unknown {self.tracking.resume!r}; one of {RESUME_MODES}"
            )
        if self.model.init not in MODEL_INITS:
            raise ValueError(f"model.init: unknown {self.model.init!r}; one of {MODEL_INITS}")
        if self.model.init == "pretrained" and not self.model.pretrained_path:
            raise ValueError(
                "model.init pretrained needs model.pretrained_path (a local ImageNet weights file)"
            )
        if self.model.init == "random" and self.model.pretrained_path:
            raise ValueError(
                "model.init random contradicts model.pretrained_path; use auto or pretrained"
            )
        if self.scaling.placement_strategy not in PLACEMENT_STRATEGIES:
            raise ValueError(
                f"scaling.placement_strategy: expected one of {PLACEMENT_STRATEGIES}, "
                f"got {self.scaling.placement_strategy!r}"
            )
        if self.data.augment_on not in ("device", "cpu"):
            raise ValueError(
                f"data.augment_on: expected device or cpu, got {self.data.augment_on!r}"
            )
        if self.data.balance not in BALANCES:
            raise ValueError(f"data.balance: unknown {self.data.balance!r}; one of {BALANCES}")
        if self.data.batch_size % self.scaling.num_workers:
            raise ValueError(
                f"data.batch_size {self.data.batch_size} does not split over "
                f"{self.scaling.num_workers} workers"
            )
        if self.data.batch_size // self.scaling.num_workers < 2:
            raise ValueError(
                f"data.batch_size {self.data.batch_size} over {self.scaling.num_workers} "
                "workers leaves 1 sample per worker: BatchNorm (and SK fusion's) needs at least 2"
            )


def load_job_config(
    preset: str = DEFAULT_PRESET, path: str | Path | None = None, overrides: list[str] = ()
) -> JobConfig:
    """Preset, then the user's YAML, then ``key.path=value`` overrides."""
    preset_file = PRESETS / f"{preset}.yaml"
    if not preset_file.is_file():
        known = sorted(p.stem for p in PRESETS.glob("*.yaml"))
        raise ValueError(f"unknown preset {preset!r}; one of {', '.join(known)}")
    data = load_yaml(preset_file)
    if path is not None:
        data = merge(data, load_yaml(path))
    for override in overrides:
        data = merge(data, parse_override(override))
    return from_dict(JobConfig, data)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default=DEFAULT_PRESET, help="paper or cpu-demo")
    parser.add_argument("--config", help="YAML merged over the preset (a path or a URI)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one value, e.g. --set loss.lambda2=50 (repeatable)",
    )  # fmt: skip


def config_from_args(args: argparse.Namespace) -> JobConfig:
    return load_job_config(args.preset, args.config, args.overrides)
