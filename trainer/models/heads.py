"""Building blocks shared by the MTL baseline and HiTTs: per-task layers batched over tasks, the
shared neck, and the MTL decoder heads.

Per-task layers keep the T tasks' weights in one tensor and run them as one (grouped) convolution
on features with the tasks stacked on the channel axis, ``(B, T*C, h, w)``; a shared input
``(B, C, h, w)`` runs the same weights as one dense convolution (identical to T separate convs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

NECK_STRIDE = 8
"""Stride of the fused shared feature F_s for multi-scale backbones (efficientnet_lite0, resnet18)."""

HEAD_KINDS = ("conv", "mtan", "aspp")
"""MTL head per task. "conv": conv3x3-BN-ReLU x2 then 1x1 (multi-scale backbones).
"mtan": MTAN's SegNet head, conv3x3 (with bias) then 1x1, at full resolution.
"aspp": DeepLab-v3 head as in the authors' PASCAL-Context model, ASPP then conv3x3-BN-ReLU then 1x1."""

ASPP_RATES = (12, 24, 36)
"""Dilation rates of the ASPP head's 3x3 branches (DeepLab v3 at output stride 8; authors' code)."""
ASPP_DROPOUT = 0.5
"""Dropout after the ASPP projection (torchvision's and the authors' ASPP)."""


def xavier_normal_(weight: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """Xavier-normal init (the authors' and MTAN's choice) for a weight that stacks ``groups``
    independent layers on dim 0, with the fans of one layer (so it equals T separate inits)."""
    receptive = math.prod(weight.shape[2:]) if weight.dim() > 2 else 1
    fan_in = weight.shape[1] * receptive
    fan_out = weight.shape[0] // groups * receptive
    with torch.no_grad():
        return weight.normal_(0.0, math.sqrt(2.0 / (fan_in + fan_out)))


def init_layers(module: nn.Module) -> None:
    """Xavier-normal weights and zero biases for the plain Conv2d / Linear layers of ``module``."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            xavier_normal_(m.weight, getattr(m, "groups", 1))
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class TaskConv(nn.Module):
    """T convolutions ``c_in -> c_out`` (kernel k, dilation d, "same" padding), one per task, held as one
    weight (T*c_out, c_in, k, k).

    forward(x, shared): x (B, c_in, h, w) when ``shared`` (every task reads the same input: one
    dense conv), else x (B, T*c_in, h, w) with task t on channels [t*c_in, (t+1)*c_in) (one grouped
    conv). Returns (B, T*c_out, h, w), task t on channels [t*c_out, (t+1)*c_out).
    """

    def __init__(
        self, num_tasks: int, c_in: int, c_out: int, kernel: int = 3, bias: bool = False, dilation: int = 1
    ) -> None:
        super().__init__()
        self.num_tasks, self.c_in, self.c_out = num_tasks, c_in, c_out
        self.padding, self.dilation = dilation * (kernel // 2), dilation
        self.weight = nn.Parameter(torch.empty(num_tasks * c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(num_tasks * c_out)) if bias else None
        xavier_normal_(self.weight, num_tasks)

    def forward(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        groups = 1 if shared else self.num_tasks
        return F.conv2d(
            x, self.weight, self.bias, padding=self.padding, dilation=self.dilation, groups=groups
        )


class TaskConvBNReLU(nn.Module):
    """Per-task conv-BN-ReLU, batched (see ``TaskConv``); BN over the T*c_out channels is exactly
    T per-task BNs."""

    def __init__(self, num_tasks: int, c_in: int, c_out: int, kernel: int = 3, dilation: int = 1) -> None:
        super().__init__()
        self.conv = TaskConv(num_tasks, c_in, c_out, kernel, bias=False, dilation=dilation)
        self.bn = nn.BatchNorm2d(num_tasks * c_out)

    def forward(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x, shared)), inplace=True)


class TaskASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLab v3), one per task, batched over tasks.

    Branches, each conv-BN-ReLU ``c_in -> c_out``: a 1x1 conv, one 3x3 conv per rate (dilation = rate),
    and image pooling (global average, 1x1 conv, broadcast back). Per task the branches are
    concatenated, projected by a 1x1 conv-BN-ReLU to ``c_out`` and dropped out (p 0.5), as in
    torchvision's ``ASPP`` and the authors' code.

    forward(x, shared): x (B, T*c_in, h, w), or (B, c_in, h, w) read by every task when ``shared``
    -> (B, T*c_out, h, w).
    """

    def __init__(self, num_tasks: int, c_in: int, c_out: int, rates: Sequence[int] = ASPP_RATES) -> None:
        super().__init__()
        self.num_tasks, self.c_out, self.rates = num_tasks, c_out, tuple(rates)
        self.branches = nn.ModuleList(
            [TaskConvBNReLU(num_tasks, c_in, c_out, 1)]
            + [TaskConvBNReLU(num_tasks, c_in, c_out, 3, dilation=r) for r in rates]
        )
        self.pool = TaskConvBNReLU(num_tasks, c_in, c_out, 1)
        self.project = TaskConvBNReLU(num_tasks, (len(rates) + 2) * c_out, c_out, 1)
        self.dropout = nn.Dropout(ASPP_DROPOUT)

    def forward(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        b, _, h, w = x.shape
        t, c = self.num_tasks, self.c_out
        outs = [branch(x, shared) for branch in self.branches]
        outs.append(self.pool(x.mean((2, 3), keepdim=True), shared).expand(-1, -1, h, w))  # (B, T*c, h, w)
        # per task: its branches side by side, (B, T, n*c, h, w), so the projection is one grouped conv
        joined = torch.cat([o.view(b, t, c, h, w) for o in outs], dim=2).reshape(b, t * len(outs) * c, h, w)
        return self.dropout(self.project(joined))


class TaskLinear(nn.Module):
    """T linear maps ``d_in -> d_out``, weight (T, d_out, d_in), bias (T, d_out).

    forward(x (..., T, N, d_in)) -> (..., T, N, d_out): task t's map applied to x[..., t, :, :].
    """

    def __init__(self, num_tasks: int, d_in: int, d_out: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_tasks, d_out, d_in))
        self.bias = nn.Parameter(torch.zeros(num_tasks, d_out)) if bias else None
        for w in self.weight:
            xavier_normal_(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.weight.transpose(1, 2)  # a batched MatMul (ONNX Runtime runs Einsum far slower)
        return y if self.bias is None else y + self.bias.unsqueeze(-2)


class TaskClassifiers(nn.Module):
    """The per-task output convs ``c_in -> C_p`` (kernel k; C_p differs between tasks).

    forward(x (B, T*c_in, h, w) or shared (B, c_in, h, w)) -> list of T tensors (B, C_p_t, h, w).
    """

    def __init__(self, c_in: int, num_outputs: Sequence[int], kernel: int = 1) -> None:
        super().__init__()
        self.c_in = c_in
        self.convs = nn.ModuleList(nn.Conv2d(c_in, c, kernel, padding=kernel // 2) for c in num_outputs)
        init_layers(self)

    def forward(self, x: torch.Tensor, shared: bool = False) -> list[torch.Tensor]:
        if shared:
            return [conv(x) for conv in self.convs]
        return [conv(x[:, t * self.c_in : (t + 1) * self.c_in]) for t, conv in enumerate(self.convs)]


def resize_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize (align_corners=False) of (B, C, h, w) to ``size``; a no-op at that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def resize_maps(maps: list[torch.Tensor], size: Sequence[int]) -> list[torch.Tensor]:
    """Resize every task's maps (B, C_t, h, w) to ``size`` (bilinear) with one interpolation."""
    if tuple(maps[0].shape[-2:]) == tuple(size):
        return maps
    joined = resize_to(torch.cat(maps, dim=1), size)
    return list(torch.split(joined, [m.shape[1] for m in maps], dim=1))


class Neck(nn.Module):
    """The shared feature F_s (B, D, h, w) from the backbone's features.

    * one scale (SegNet, stride 1): identity when it already has D channels, else conv1x1-BN-ReLU.
    * several scales (FPN-style, light): a 1x1 lateral conv per scale to D, every scale resampled
      to the stride-``NECK_STRIDE`` grid (bilinear), summed, BN, ReLU. Equal to one 1x1 conv over the
      concatenated resampled scales, at a fraction of the memory traffic.
    """

    def __init__(self, channels: Sequence[int], strides: Sequence[int], width: int) -> None:
        super().__init__()
        self.strides = tuple(strides)
        if len(channels) == 1:
            self.stride = strides[0]
            self.project = (
                None
                if channels[0] == width
                else nn.Sequential(
                    nn.Conv2d(channels[0], width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
                )
            )
        else:
            if NECK_STRIDE not in strides:
                raise ValueError(
                    f"a multi-scale backbone needs a stride-{NECK_STRIDE} level, got strides {strides}"
                )
            self.stride = NECK_STRIDE
            self.laterals = nn.ModuleList(nn.Conv2d(c, width, 1, bias=False) for c in channels)
            self.bn = nn.BatchNorm2d(width)
        init_layers(self)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        if len(feats) == 1:
            return feats[0] if self.project is None else self.project(feats[0])
        size = feats[self.strides.index(NECK_STRIDE)].shape[-2:]
        fused = sum(resize_to(lat(f), size) for lat, f in zip(self.laterals, feats))
        return F.relu(self.bn(fused), inplace=True)


class HeadLayers(nn.Module):
    """The per-task layers of an MTL head before its 1x1 classifier, batched over tasks.

    kind "conv": conv3x3-BN-ReLU, conv3x3-BN-ReLU. kind "mtan": conv3x3 with bias (MTAN SegNet head).
    kind "aspp": ASPP (``aspp_rates``), conv3x3-BN-ReLU (DeepLab v3 head, the authors' PASCAL head).
    forward(x, shared) -> (B, T*D, h, w); ``shared`` says x is the shared (B, D, h, w) feature.
    """

    def __init__(self, kind: str, num_tasks: int, width: int, aspp_rates: Sequence[int] = ASPP_RATES) -> None:
        super().__init__()
        if kind not in HEAD_KINDS:
            raise ValueError(f"unknown head kind {kind!r}; valid: {HEAD_KINDS}")
        if kind == "conv":
            self.layers = nn.ModuleList(TaskConvBNReLU(num_tasks, width, width) for _ in range(2))
        elif kind == "aspp":
            self.layers = nn.ModuleList(
                [TaskASPP(num_tasks, width, width, aspp_rates), TaskConvBNReLU(num_tasks, width, width)]
            )
        else:
            self.layers = nn.ModuleList([TaskConv(num_tasks, width, width, 3, bias=True)])

    def forward(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x, shared=shared and i == 0)
        return x


def head_kind(backbone: str, head: str = "auto") -> str:
    """The head kind: ``head`` itself, or for "auto" the one that goes with the backbone (MTAN's conv
    head for SegNet, the conv head otherwise)."""
    if head != "auto":
        return head
    return "mtan" if backbone == "segnet" else "conv"
