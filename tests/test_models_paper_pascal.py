"""The authors' PASCAL-Context network (issue 10): dilated ResNet-18 (output stride 8), per-task ASPP
heads (rates 12/24/36), ImageNet weights from a user checkpoint, and the ``paper`` preset using them.

Small inputs (32x32 or 32x48, batch 2), width 16, one thread.
"""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest
import torch
from test_models import _one_thread  # noqa: F401  (autouse: one thread for tiny tensors)

from trainer.config import ModelConfig, RunConfig, apply_overrides, preset_config
from trainer.models import RANDOM_RESNET_WARNING, build_model
from trainer.models.backbones import ResNet18, build_backbone
from trainer.models.heads import ASPP_RATES, TaskASPP
from trainer.tasks import tasks_for

PASCAL = tasks_for("pascal")
B = 2


def _paper_model(arch: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = preset_config("paper", "pascal", "one-label", arch).model
    cfg = dataclasses.replace(cfg, **{"width": 16, "fine_mlp_hidden": 16, "pretrained": False, **overrides})
    return build_model(cfg, PASCAL)


def test_dilated_resnet18_has_output_stride_8() -> None:
    net = ResNet18(dilated=True)
    feats = net(torch.randn(B, 3, 64, 96))
    assert net.strides == (4, 8, 8, 8)
    assert [tuple(f.shape) for f in feats] == [
        (B, 64, 16, 24),
        (B, 128, 8, 12),
        (B, 256, 8, 12),
        (B, 512, 8, 12),
    ]
    assert ResNet18().strides == (4, 8, 16, 32)  # the default is unchanged


def test_dilation_follows_the_dilated_resnet_recipe() -> None:
    """layer3 / layer4: stride 1; the first 3x3 conv of each keeps the previous dilation (1, 2), the
    others dilate by 2 and 4; padding = dilation keeps the size (torchvision / CSAIL ResnetDilated)."""
    convs = {n: m for n, m in ResNet18(dilated=True).named_modules() if isinstance(m, torch.nn.Conv2d)}
    expected = {
        "layer3.0.conv1": 1,
        "layer3.0.conv2": 2,
        "layer3.1.conv1": 2,
        "layer3.1.conv2": 2,
        "layer4.0.conv1": 2,
        "layer4.0.conv2": 4,
        "layer4.1.conv1": 4,
        "layer4.1.conv2": 4,
    }
    for name, d in expected.items():
        assert convs[name].dilation == (d, d) and convs[name].padding == (d, d), name
        assert convs[name].stride == (1, 1), name
    assert convs["layer3.0.downsample.0"].stride == (1, 1)
    assert convs["layer2.0.conv1"].stride == (2, 2) and convs["layer2.0.conv1"].dilation == (1, 1)


def test_an_imagenet_checkpoint_loads_into_the_dilated_network(tmp_path) -> None:
    torch.manual_seed(1)
    plain = ResNet18()
    path = tmp_path / "resnet18.pth"
    torch.save({**plain.state_dict(), "fc.weight": torch.zeros(1000, 512)}, path)
    dilated = build_backbone("resnet18", checkpoint=path, dilated=True)
    for k, v in plain.state_dict().items():
        assert torch.equal(dilated.state_dict()[k], v), k


def test_dilation_is_resnet18_only() -> None:
    with pytest.raises(ValueError, match="dilated"):
        ModelConfig(backbone="segnet", dilated=True)
    with pytest.raises(ValueError, match="dilated"):
        build_backbone("segnet", dilated=True)


def test_aspp_has_the_rates_and_batches_the_tasks() -> None:
    torch.manual_seed(0)
    t, c = 3, 8
    aspp = TaskASPP(t, c, c, ASPP_RATES).eval()
    assert ASPP_RATES == (12, 24, 36)
    dilations = [b.conv.dilation for b in aspp.branches]
    kernels = [b.conv.weight.shape[-1] for b in aspp.branches]
    assert dilations == [1, 12, 24, 36] and kernels == [1, 3, 3, 3]
    assert aspp.project.conv.weight.shape == (t * c, 5 * c, 1, 1)  # 1x1, 3 rates, image pooling
    x = torch.randn(B, c, 20, 24)
    shared = aspp(x, shared=True)
    assert shared.shape == (B, t * c, 20, 24)
    # the shared feature read by every task == the per-task input holding it T times
    torch.testing.assert_close(aspp(x.repeat(1, t, 1, 1)), shared, rtol=1e-5, atol=1e-5)
    # task 1 alone: its own slice of every weight, run as a one-task ASPP
    one = TaskASPP(1, c, c, ASPP_RATES).eval()
    sl = slice(c, 2 * c)
    with torch.no_grad():
        for mine, full in zip(
            [*one.branches, one.pool, one.project], [*aspp.branches, aspp.pool, aspp.project]
        ):
            mine.conv.weight.copy_(full.conv.weight[sl])
            for k in ("weight", "bias", "running_mean", "running_var"):
                getattr(mine.bn, k).copy_(getattr(full.bn, k)[sl])
    torch.testing.assert_close(one(x), shared[:, sl], rtol=1e-5, atol=1e-5)


def test_paper_preset_for_pascal_is_the_authors_network() -> None:
    for arch in ("mtl", "hitts"):
        m = preset_config("paper", "pascal", "one-label", arch).model
        assert (m.arch, m.backbone, m.dilated, m.head, m.aspp_rates) == (
            arch,
            "resnet18",
            True,
            "aspp",
            (12, 24, 36),
        )
        assert m.width == 256 and m.multi_scale and m.pretrained and m.backbone_checkpoint is None
        assert m.attention_reduction == 2 and m.resolved_attention_queries == "reduced"
    nyud = preset_config("paper", "nyud", "one-label").model  # SegNet presets are unchanged
    assert (nyud.backbone, nyud.dilated, nyud.head) == ("segnet", False, "auto")
    assert ModelConfig().head == "auto" and not ModelConfig().dilated


def test_the_checkpoint_comes_from_the_config_and_round_trips() -> None:
    cfg = apply_overrides(
        preset_config("paper", "pascal", "one-label"),
        ["model.backbone_checkpoint=/weights/resnet18.pth", "model.aspp_rates=[6, 12, 18]"],
    )
    assert cfg.model.backbone_checkpoint == "/weights/resnet18.pth" and cfg.model.aspp_rates == (6, 12, 18)
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_a_missing_checkpoint_is_reported(caplog, tmp_path) -> None:
    with caplog.at_level(logging.WARNING, logger="trainer.models"):
        _paper_model("mtl", pretrained=True)
    assert RANDOM_RESNET_WARNING in caplog.text
    assert "backbone_checkpoint" in RANDOM_RESNET_WARNING
    path = tmp_path / "resnet18.pth"
    torch.save(ResNet18().state_dict(), path)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="trainer.models"):
        _paper_model("mtl", pretrained=True, backbone_checkpoint=str(path))
    assert RANDOM_RESNET_WARNING not in caplog.text


@pytest.mark.parametrize("arch", ["mtl", "hitts"])
def test_paper_network_outputs_at_stride_8_and_trains_every_parameter(arch: str) -> None:
    model = _paper_model(arch)
    assert isinstance(model.layers.layers[0], TaskASPP)
    out = model(torch.randn(B, 3, 32, 48))
    for s in PASCAL:
        assert out["logits"][s.name].shape == (B, s.num_outputs, 32, 48)
        if arch == "hitts":  # ASPP runs on F'_t, before intra-task attention and the fine tokens
            assert out["task_features"][s.name].shape == (B, 16, 4, 6)
            assert out["fine_scores"][s.name].shape == (B, s.num_outputs, 4, 6)
    sum(v.square().mean() for v in out["logits"].values()).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []


@pytest.mark.slow
def test_paper_hitts_exports_to_onnx(tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")

    class Logits(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(self.inner(image)["logits"].values())

    flat = Logits(_paper_model("hitts")).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = flat(x)
    path = tmp_path / "paper.onnx"
    torch.onnx.export(flat, (x,), path, dynamo=True, opset_version=18, input_names=["image"])
    onnx.checker.check_model(str(path))
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})
    for g, e in zip(got, expected):
        assert abs(g - e.numpy()).max() <= 1e-4 * max(1.0, float(e.abs().max()))
