"""The baselines HiTTs is compared with, on the same backbone and head.

* ``MTL``: shared backbone + neck, one head per task (``heads.HeadLayers`` then a 1x1 to C_p);
  logits upsampled bilinearly to the input size (SegNet's MTAN head already runs at full size).
* ``STL``: one full network (backbone + neck + head) per task; no parameter is shared.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..tasks import TaskSpec
from .backbones import IMAGENET_MEAN, IMAGENET_STD, build_backbone
from .heads import ASPP_RATES, HeadLayers, Neck, TaskClassifiers, head_kind, resize_maps


class MTL(nn.Module):
    """Shared encoder + per-task decoder heads.

    forward(image (B, 3, H, W)) -> {"logits": {task: (B, C_p, H, W)}}; with ``upsample_logits`` False
    the logits stay at the head's resolution (H, W) / 8 (the ONNX export upsamples them itself).
    """

    def __init__(
        self,
        specs: Sequence[TaskSpec],
        backbone: str = "efficientnet_lite0",
        pretrained: bool = True,
        backbone_checkpoint: str | None = None,
        width: int = 64,
        dilated: bool = False,
        head: str = "auto",
        aspp_rates: Sequence[int] = ASPP_RATES,
    ) -> None:
        super().__init__()
        self.task_names = tuple(s.name for s in specs)
        self.num_outputs = tuple(s.num_outputs for s in specs)
        self.width = width
        self.input_mean, self.input_std = IMAGENET_MEAN, IMAGENET_STD
        self.backbone = build_backbone(backbone, pretrained, backbone_checkpoint, dilated)
        self.neck = Neck(self.backbone.channels, self.backbone.strides, width)
        self.layers = HeadLayers(head_kind(backbone, head), len(specs), width, aspp_rates)
        self.classifiers = TaskClassifiers(width, self.num_outputs)

    def forward(self, image: torch.Tensor, upsample_logits: bool = True) -> dict:
        shared = self.neck(self.backbone(image))  # (B, D, h, w)
        heads = self.layers(shared, shared=True)  # (B, T*D, h, w)
        logits = self.classifiers(heads)
        if upsample_logits:
            logits = resize_maps(logits, image.shape[-2:])
        return {"logits": dict(zip(self.task_names, logits))}


class STL(nn.Module):
    """One independent ``MTL`` network per task (each with a single head).

    forward(image (B, 3, H, W)) -> {"logits": {task: (B, C_p, H, W)}} (``upsample_logits``: see ``MTL``).
    """

    def __init__(self, specs: Sequence[TaskSpec], **mtl_kwargs) -> None:
        super().__init__()
        self.task_names = tuple(s.name for s in specs)
        self.num_outputs = tuple(s.num_outputs for s in specs)
        self.input_mean, self.input_std = IMAGENET_MEAN, IMAGENET_STD
        self.nets = nn.ModuleDict({s.name: MTL((s,), **mtl_kwargs) for s in specs})

    def forward(self, image: torch.Tensor, upsample_logits: bool = True) -> dict:
        return {
            "logits": {name: net(image, upsample_logits)["logits"][name] for name, net in self.nets.items()}
        }
