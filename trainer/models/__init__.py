"""Models: ``build_model(cfg, specs)`` gives the STL, MTL or HiTTs network of a ``ModelConfig``.

Every model maps an image (B, 3, H, W), normalised with ImageNet mean/std, to the output dict of
docs/architecture.md, keyed by task name in the order of ``specs``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from torch import nn

from ..config import ModelConfig
from ..tasks import TaskSpec
from .baselines import MTL, STL
from .hitts import HiTTs

__all__ = ["HiTTs", "MTL", "STL", "build_model", "count_parameters"]

log = logging.getLogger(__name__)
RANDOM_RESNET_WARNING = "ResNet-18 randomly initialised: the paper uses ImageNet weights; pass --set model.backbone_checkpoint=PATH"


def build_model(cfg: ModelConfig, specs: Sequence[TaskSpec]) -> nn.Module:
    """The network described by ``cfg`` for the tasks ``specs``.

    A ResNet-18 asked to be pretrained (``pretrained`` True) without a ``backbone_checkpoint`` is built
    with random weights, and a warning says so (weights are never downloaded).
    """
    specs = tuple(specs)
    if not specs:
        raise ValueError("build_model needs at least one task")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"task names must be unique, got {names}")
    if cfg.backbone == "resnet18" and cfg.pretrained and cfg.backbone_checkpoint is None:
        log.warning(RANDOM_RESNET_WARNING)
    common = dict(
        backbone=cfg.backbone,
        pretrained=cfg.pretrained,
        backbone_checkpoint=cfg.backbone_checkpoint,
        width=cfg.width,
        dilated=cfg.dilated,
        head=cfg.head,
        aspp_rates=cfg.aspp_rates,
    )
    if cfg.arch == "stl":
        return STL(specs, **common)
    if cfg.arch == "mtl":
        return MTL(specs, **common)
    return HiTTs(
        specs,
        **common,
        multi_scale=cfg.multi_scale,
        use_global_tokens=cfg.use_global_tokens,
        use_inter_task=cfg.use_inter_task,
        use_intra_task=cfg.use_intra_task,
        use_fine_tokens=cfg.use_fine_tokens,
        use_orthogonal_embeddings=cfg.use_orthogonal_embeddings,
        attention_reduction=cfg.attention_reduction,
        fine_mlp_hidden=cfg.fine_mlp_hidden,
        token_init_std=cfg.token_init_std,
        gate_channel_scale=cfg.gate_channel_scale,
        train_global_tokens=cfg.train_global_tokens,
        head_reads_shared=cfg.head_reads_shared,
        scale_ffn=cfg.scale_ffn,
        reduced_queries=cfg.resolved_attention_queries == "reduced",
        attention_ffn=cfg.attention_ffn,
    )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
