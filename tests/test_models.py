"""trainer.models: output contract, ablations, gradients, backbones and checkpoints.

Small inputs (32x48, batch 2) and width 16 keep the file fast on a CPU.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from trainer.config import ModelConfig
from trainer.models import HiTTs, build_model, count_parameters
from trainer.models.backbones import (
    EFFNET_HEAD_PREFIXES,
    ResNet18,
    SegNet,
    efficientnet_lite0_weights_path,
    load_resnet18_checkpoint,
)
from trainer.models.fine_tokens import FineTokenGenerator
from trainer.models.global_tokens import IntraTaskAttention, MultiScaleGlobalTokens, gated_task_features
from trainer.models.heads import TaskConv
from trainer.tasks import tasks_for

SPECS = tasks_for("nyud")  # semseg 13, depth 30, normals 20
H, W, B = 32, 48, 2
SMALL = ModelConfig(
    arch="hitts", backbone="efficientnet_lite0", pretrained=False, width=16, fine_mlp_hidden=32
)
PAPER_SEGNET_MTL_PARAMS = 25.06e6
ABLATIONS = (
    {},
    {"use_global_tokens": False},
    {"use_inter_task": False},
    {"use_intra_task": False},
    {"use_fine_tokens": False},
    {"use_orthogonal_embeddings": False},
    {"multi_scale": True},
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one thread is fastest, and immune to a busy second core (OpenMP barriers)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(**overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(dataclasses.replace(SMALL, **overrides), SPECS)


def _image(h: int = H, w: int = W) -> torch.Tensor:
    return torch.randn(B, 3, h, w, generator=torch.Generator().manual_seed(1))


def _check_contract(out: dict, cfg: ModelConfig, stride: int, h: int = H, w: int = W) -> None:
    """The output dict of docs/architecture.md for ``cfg``."""
    names = [s.name for s in SPECS]
    d, fh, fw = cfg.width, h // stride, w // stride
    assert list(out["logits"]) == names
    for s in SPECS:
        assert out["logits"][s.name].shape == (B, s.num_outputs, h, w)
    expected = {"logits"}
    if cfg.arch == "hitts":
        expected.add("task_features")
        for s in SPECS:
            assert out["task_features"][s.name].shape == (B, d, fh, fw)
        if cfg.use_global_tokens:
            expected.add("global_scores")
            for s in SPECS:
                scores = out["global_scores"][s.name]
                assert scores.shape == (B, fh, fw) and 0 <= scores.min() and scores.max() <= 1
            if cfg.use_inter_task:
                expected.add("affinity")
                assert out["affinity"].shape == (len(SPECS), len(SPECS))
        if cfg.use_fine_tokens:
            expected |= {"fine_scores", "fine_tokens"}
            for s in SPECS:
                assert out["fine_scores"][s.name].shape == (B, s.num_outputs, fh, fw)
                assert (out["fine_scores"][s.name] >= 0).all()  # softplus
                assert out["fine_tokens"][s.name].shape == (s.num_outputs, d)
    assert set(out) == expected


@pytest.mark.parametrize("arch", ["stl", "mtl", "hitts"])
@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "resnet18"])
def test_output_contract_per_arch(arch: str, backbone: str) -> None:
    cfg = dataclasses.replace(SMALL, arch=arch, backbone=backbone)
    out = build_model(cfg, SPECS)(_image())
    _check_contract(out, cfg, stride=8)


@pytest.mark.parametrize("switches", ABLATIONS, ids=lambda s: ",".join(s) or "full")
def test_output_contract_per_ablation(switches: dict) -> None:
    cfg = dataclasses.replace(SMALL, **switches)
    out = build_model(cfg, SPECS)(_image())
    _check_contract(out, cfg, stride=8)


@pytest.mark.parametrize("arch", ["mtl", "hitts"])
def test_segnet_full_resolution_head_and_stride4_tokens(arch: str) -> None:
    cfg = dataclasses.replace(SMALL, arch=arch, backbone="segnet")
    model = build_model(cfg, SPECS)
    out = model(_image())
    _check_contract(out, cfg, stride=4, h=32, w=48)
    if arch == "hitts":
        assert model.feature_stride == 4


def test_segnet_handles_sizes_not_divisible_by_32() -> None:
    feats = SegNet()(torch.randn(1, 3, 36, 52))
    assert [f.shape for f in feats] == [(1, 64, 36, 52)]


def test_efficientnet_lite0_loads_the_packaged_imagenet_weights() -> None:
    cfg = dataclasses.replace(SMALL, arch="hitts", backbone="efficientnet_lite0", pretrained=True)
    model = build_model(cfg, SPECS)
    state = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    own = model.backbone.state_dict()
    assert set(own) == {k for k in state if not k.startswith(EFFNET_HEAD_PREFIXES)}
    for key in ("_conv_stem.weight", "_blocks.5._depthwise_conv.weight", "_blocks.15._bn2.running_var"):
        assert torch.equal(own[key], state[key])
    assert model.backbone.channels == (24, 40, 112, 320)
    _check_contract(model(_image()), cfg, stride=8)
    random = build_model(dataclasses.replace(cfg, pretrained=False), SPECS)
    assert not torch.equal(random.backbone.state_dict()["_conv_stem.weight"], state["_conv_stem.weight"])


def test_multiscale_feature_strides() -> None:
    for model in (ResNet18(), build_model(SMALL, SPECS).backbone):
        feats = model(torch.randn(1, 3, 64, 96))
        assert [f.shape[1] for f in feats] == list(model.channels)
        assert [(64 // f.shape[2], 96 // f.shape[3]) for f in feats] == [(s, s) for s in model.strides]


@pytest.mark.parametrize(
    "switches", [{}, {"multi_scale": True}, {"backbone": "segnet"}], ids=["ss", "ms", "segnet"]
)
def test_affinity_rows_sum_to_one(switches: dict) -> None:
    out = _model(**switches)(_image())
    a = out["affinity"]
    assert torch.allclose(a.sum(-1), torch.ones(len(SPECS)), atol=1e-6)
    assert (a > 0).all()


@pytest.mark.parametrize(
    "switches", [{}, {"multi_scale": True}, {"backbone": "segnet"}], ids=["ss", "ms", "segnet"]
)
def test_every_parameter_gets_a_gradient_from_the_logits(switches: dict) -> None:
    model = _model(**switches)
    out = model(_image())
    sum(v.square().mean() for v in out["logits"].values()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    tokens = model.global_tokens.theta
    assert tokens.grad.abs().sum() > 0  # global tokens
    for gen in model.fine:
        assert gen.mlp[0].weight.grad.abs().sum() > 0  # fine-token MLP
        assert gen.embed.weight.grad.abs().sum() > 0  # orthogonal-embedding projection


@pytest.mark.parametrize("switches", ABLATIONS[1:-1], ids=lambda s: ",".join(s))
def test_ablations_train_every_parameter_they_use(switches: dict) -> None:
    model = _model(**switches)
    out = model(_image())
    sum(v.square().mean() for v in out["logits"].values()).backward()
    missing = {n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}
    # Without fine tokens the tokens after attention only feed M_f (global_scores): no logit gradient.
    allowed = (
        {"attention.token_out.weight", "attention.token_out.bias"} if "use_fine_tokens" in switches else set()
    )
    assert missing <= allowed


def test_changing_theta_changes_the_predictions() -> None:
    model = _model().eval()
    x = _image()
    with torch.no_grad():
        before = model(x)["logits"]
        model.global_tokens.theta.add_(torch.randn_like(model.global_tokens.theta))
        after = model(x)["logits"]
    for name in before:
        assert not torch.allclose(before[name], after[name])


def test_stl_branches_are_independent() -> None:
    model = _model(arch="stl")
    out = model(_image())
    F.cross_entropy(out["logits"]["semseg"], torch.zeros(B, 32, 48, dtype=torch.long)).backward()
    for name, net in model.nets.items():
        grads = [p.grad for p in net.parameters()]
        if name == "semseg":
            assert all(g is not None for g in grads)
        else:
            assert all(g is None for g in grads)
    assert count_parameters(model) == sum(count_parameters(n) for n in model.nets.values())


@pytest.mark.slow  # builds the 25M-parameter SegNet MTL and HiTTs
def test_segnet_mtl_parameter_count_matches_the_paper() -> None:
    with torch.device("meta"):
        model = build_model(ModelConfig(arch="mtl", backbone="segnet", pretrained=False), SPECS)
    n = count_parameters(model)
    assert abs(n - PAPER_SEGNET_MTL_PARAMS) / PAPER_SEGNET_MTL_PARAMS < 0.10, n


def test_hitts_is_the_mtl_head_plus_tokens() -> None:
    """Every MTL parameter has a same-named, same-shaped HiTTs parameter (HiTTs only adds)."""
    mtl = build_model(dataclasses.replace(SMALL, arch="mtl"), SPECS)
    hitts = build_model(SMALL, SPECS)
    hitts_params = dict(hitts.named_parameters())
    for name, p in mtl.named_parameters():
        assert hitts_params[name].shape == p.shape, name


def test_gate_mixing_equals_mixing_the_gated_features() -> None:
    """F'_i = sum_j A_ij (F_s * g_j), computed by hand, equals the gate-mixing rewrite."""
    torch.manual_seed(0)
    shared, tokens = torch.randn(2, 8, 5, 6), torch.randn(3, 8)
    affinity = torch.randn(3, 3).softmax(-1)
    gates = torch.sigmoid(torch.einsum("bchw,tc->bthw", shared, tokens))
    per_task = [shared * gates[:, j : j + 1] for j in range(3)]
    expected = torch.cat([sum(affinity[i, j] * per_task[j] for j in range(3)) for i in range(3)], dim=1)
    got, _ = gated_task_features(shared, tokens, affinity)
    assert torch.allclose(got, expected, atol=1e-6)


def test_per_scale_fusion_equals_the_1x1_conv_over_concatenated_scales() -> None:
    torch.manual_seed(0)
    stage = MultiScaleGlobalTokens(num_tasks=2, channels=(4, 6), width=5)
    feats = [torch.randn(1, 4, 8, 12), torch.randn(1, 6, 4, 6)]
    out_size = (8, 12)
    fused, _, _ = stage(feats, out_size)
    # By hand for task 1: resize each scale's FFN output, concatenate, one 1x1 conv.
    t = 1
    per_scale = []
    for j, f in enumerate(feats):
        scale_tokens = stage.to_scale[j](stage.theta.unsqueeze(1)).squeeze(1)
        a = (stage.q[j](scale_tokens) @ stage.k[j](scale_tokens).T / scale_tokens.shape[1] ** 0.5).softmax(-1)
        x, _ = gated_task_features(f, scale_tokens, a)
        y = stage.ffn[j](x)[:, t * f.shape[1] : (t + 1) * f.shape[1]]
        per_scale.append(F.interpolate(y, size=out_size, mode="bilinear", align_corners=False))
    weight = torch.cat([fuse.weight[t * 5 : (t + 1) * 5] for fuse in stage.fuse], dim=1)
    expected = F.conv2d(torch.cat(per_scale, 1), weight, stage.fuse[0].bias[t * 5 : (t + 1) * 5])
    assert torch.allclose(fused[:, t * 5 : (t + 1) * 5], expected, atol=1e-5)


def test_task_conv_equals_separate_convs() -> None:
    torch.manual_seed(0)
    conv = TaskConv(num_tasks=3, c_in=4, c_out=5, kernel=3, bias=True)
    x_shared, x_tasks = torch.randn(2, 4, 6, 7), torch.randn(2, 12, 6, 7)
    for t in range(3):
        w, b = conv.weight[t * 5 : (t + 1) * 5], conv.bias[t * 5 : (t + 1) * 5]
        expected_shared = F.conv2d(x_shared, w, b, padding=1)
        expected_task = F.conv2d(x_tasks[:, t * 4 : (t + 1) * 4], w, b, padding=1)
        assert torch.allclose(conv(x_shared, shared=True)[:, t * 5 : (t + 1) * 5], expected_shared, atol=1e-5)
        assert torch.allclose(conv(x_tasks)[:, t * 5 : (t + 1) * 5], expected_task, atol=1e-5)


def test_intra_task_attention_token_is_the_batch_mean_and_small_maps_work() -> None:
    torch.manual_seed(0)
    attn = IntraTaskAttention(num_tasks=2, width=8, reduction=4).eval()
    x, tokens = torch.randn(3, 16, 3, 5), torch.randn(2, 8)  # 3x5 < r: padded to 4x8
    feats, new_tokens = attn(x, tokens)
    assert feats.shape == x.shape and new_tokens.shape == tokens.shape
    singles = [attn(x[i : i + 1], tokens)[1] for i in range(3)]
    assert torch.allclose(new_tokens, torch.stack(singles).mean(0), atol=1e-5)


def test_fine_tokens_without_orthogonal_embeddings_see_only_the_token() -> None:
    """w/o OE every row of the MLP input is one channel of the token repeated C_p times."""
    torch.manual_seed(0)
    with_oe, without = FineTokenGenerator(5, 8, 16, True), FineTokenGenerator(5, 8, 16, False)
    token = torch.randn(8)
    assert with_oe(token).shape == without(token).shape == (5, 8)
    assert without.embed is None and with_oe.embed is not None


def test_multi_scale_needs_a_multiscale_backbone() -> None:
    with pytest.raises(ValueError, match="multi_scale"):
        _model(backbone="segnet", multi_scale=True)


def test_resnet18_checkpoint_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    source = ResNet18()
    state = source.state_dict()
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)  # torchvision classifier
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    cfg = dataclasses.replace(SMALL, arch="mtl", backbone="resnet18", backbone_checkpoint=str(path))
    model = build_model(cfg, SPECS)
    for key, value in source.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key


def test_bad_resnet18_checkpoints_fail_clearly(tmp_path) -> None:
    state = ResNet18().state_dict()
    del state["layer4.1.conv2.weight"]
    state["layer9.weight"] = torch.zeros(1)
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(ValueError) as err:
        load_resnet18_checkpoint(ResNet18(), path)
    message = str(err.value)
    assert "layer4.1.conv2.weight" in message and "layer9.weight" in message and "conv1.weight" in message
    assert "missing" in message and "unexpected" in message and "shape" in message

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not be read"):
        load_resnet18_checkpoint(ResNet18(), garbage)
    with pytest.raises(FileNotFoundError):
        load_resnet18_checkpoint(ResNet18(), tmp_path / "absent.pth")


def test_build_model_rejects_bad_task_lists() -> None:
    with pytest.raises(ValueError, match="at least one task"):
        build_model(SMALL, ())
    with pytest.raises(ValueError, match="unique"):
        build_model(SMALL, SPECS[:1] * 2)


@pytest.mark.slow
def test_onnx_export_matches_pytorch(tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model: HiTTs = _model().eval()

    class Flat(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = self.inner(image)
            return (
                *out["logits"].values(),
                *out["global_scores"].values(),
                *out["fine_scores"].values(),
                *out["fine_tokens"].values(),
                out["affinity"],
            )

    flat = Flat(model).eval()
    x = torch.randn(1, 3, H, W)
    with torch.no_grad():
        expected = flat(x)
    path = tmp_path / "hitts.onnx"
    torch.onnx.export(flat, (x,), path, dynamo=True, opset_version=18, input_names=["image"])
    onnx.checker.check_model(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x.numpy()})
    for g, e in zip(got, expected):
        assert abs(g - e.numpy()).max() <= 1e-4 * max(1.0, float(e.abs().max()))
