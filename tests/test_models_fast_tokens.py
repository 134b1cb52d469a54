"""The cheaper token stage (issue 13 item 7): exact rewrites keep the maths, the switches that change
it are the authors' choices or documented options, and single-scale models are untouched."""

from __future__ import annotations

import copy
import dataclasses
import weakref

import pytest
import torch
import torch.nn.functional as F
from test_models import _one_thread  # noqa: F401  (autouse: one thread for tiny tensors)

from trainer.config import ModelConfig, RunConfig
from trainer.models import build_model
from trainer.models.global_tokens import IntraTaskAttention, MultiScaleGlobalTokens, gated_task_features
from trainer.models.heads import TaskConvBNReLU
from trainer.tasks import tasks_for

SPECS = tasks_for("nyud")


def test_a_scale_finer_than_the_output_grid_is_resampled_before_its_1x1_exactly() -> None:
    """Fusion = one 1x1 conv over the concatenated scales resampled to the output grid, also when a
    scale is finer than that grid (it is then resampled first: 1x1 conv and bilinear resampling commute)."""
    torch.manual_seed(0)
    stage = MultiScaleGlobalTokens(num_tasks=2, channels=(4, 6, 3), width=5).eval()
    feats = [torch.randn(2, 4, 16, 24), torch.randn(2, 6, 8, 12), torch.randn(2, 3, 4, 6)]
    out_size = (8, 12)
    fused, _, _ = stage(feats, out_size)
    for t in range(2):
        per_scale = []
        for j, f in enumerate(feats):
            tokens = stage.to_scale[j](stage.theta.unsqueeze(1)).squeeze(1)
            a = (stage.q[j](tokens) @ stage.k[j](tokens).T / tokens.shape[1] ** 0.5).softmax(-1)
            x, _ = gated_task_features(f, tokens, a)
            c = f.shape[1]
            y = stage.ffn[j](x)[:, t * c : (t + 1) * c]
            per_scale.append(F.interpolate(y, size=out_size, mode="bilinear", align_corners=False))
        weight = torch.cat([fuse.weight[t * 5 : (t + 1) * 5] for fuse in stage.fuse], dim=1)
        expected = F.conv2d(torch.cat(per_scale, 1), weight, stage.fuse[0].bias[t * 5 : (t + 1) * 5])
        torch.testing.assert_close(fused[:, t * 5 : (t + 1) * 5], expected, rtol=1e-5, atol=1e-5)


def test_reduced_queries_at_reduction_1_equal_full_queries() -> None:
    """With r = 1 and the reducing depthwise conv set to identity, the reduced pixels are the pixels:
    the authors' reduced-query attention must then give exactly the full-query result."""
    torch.manual_seed(0)
    full = IntraTaskAttention(num_tasks=2, width=8, reduction=1).eval()
    reduced = IntraTaskAttention(num_tasks=2, width=8, reduction=1, reduced_queries=True).eval()
    reduced.load_state_dict(full.state_dict())
    with torch.no_grad():
        for m in (full, reduced):
            m.reduce.weight.fill_(1.0)
    x, tokens = torch.randn(3, 16, 5, 7), torch.randn(2, 8)
    f_full, t_full = full(x, tokens)
    f_red, t_red = reduced(x, tokens)
    torch.testing.assert_close(f_red, f_full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(t_red, t_full, rtol=1e-5, atol=1e-5)


def test_reduced_queries_upsample_the_update_and_handle_padding() -> None:
    torch.manual_seed(0)
    attn = IntraTaskAttention(num_tasks=2, width=8, reduction=4, reduced_queries=True).eval()
    x, tokens = torch.randn(3, 16, 9, 10), torch.randn(2, 8)  # padded to 12x12, 3x3 reduced pixels
    feats, new_tokens = attn(x, tokens)
    assert feats.shape == x.shape and new_tokens.shape == tokens.shape
    singles = [attn(x[i : i + 1], tokens)[1] for i in range(3)]
    torch.testing.assert_close(new_tokens, torch.stack(singles).mean(0), rtol=1e-5, atol=1e-5)


def test_attention_queries_auto_is_reduced_for_multi_scale_only() -> None:
    assert ModelConfig(multi_scale=True).resolved_attention_queries == "reduced"
    assert ModelConfig().resolved_attention_queries == "full"
    assert ModelConfig(multi_scale=True, attention_queries="full").resolved_attention_queries == "full"
    with pytest.raises(ValueError, match="attention_queries"):
        ModelConfig(attention_queries="some")
    cfg = RunConfig(model=ModelConfig(attention_queries="reduced", scale_ffn=False))
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_single_scale_models_keep_their_keys_and_outputs() -> None:
    """attention_queries "auto" leaves single-scale models as they were ("full")."""
    base = ModelConfig(backbone="resnet18", pretrained=False, width=16, fine_mlp_hidden=16)
    torch.manual_seed(0)
    auto = build_model(base, SPECS).eval()
    torch.manual_seed(0)
    full = build_model(dataclasses.replace(base, attention_queries="full"), SPECS).eval()
    assert list(auto.state_dict()) == list(full.state_dict())
    assert not auto.attention.reduced_queries
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        a, b = auto(x)["logits"], full(x)["logits"]
    for k in a:
        assert torch.equal(a[k], b[k])


def test_multi_scale_without_scale_ffn_trains_every_parameter() -> None:
    cfg = ModelConfig(
        backbone="resnet18", pretrained=False, width=16, fine_mlp_hidden=16, multi_scale=True, scale_ffn=False
    )
    torch.manual_seed(0)
    model = build_model(cfg, SPECS)
    assert model.global_tokens.ffn is None and model.attention.reduced_queries
    with_ffn = build_model(dataclasses.replace(cfg, scale_ffn=True), SPECS)
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in with_ffn.parameters())
    out = model(torch.randn(2, 3, 32, 48))
    sum(v.square().mean() for v in out["logits"].values()).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []


def _plain_multi_scale(stage: MultiScaleGlobalTokens, feats: list, out_size: tuple) -> tuple:
    """The multi-scale token stage written out plainly (the (B, T*C_j, h_j, w_j) gated features
    materialised and kept for backward, as before issue 13 item 7): the reference for the rewrite."""
    fused, tokens = 0, 0
    for j, f in enumerate(feats):
        scale_tokens = stage.to_scale[j](stage.theta.unsqueeze(1)).squeeze(1)
        a = (stage.q[j](scale_tokens) @ stage.k[j](scale_tokens).T / scale_tokens.shape[1] ** 0.5).softmax(-1)
        x, _ = gated_task_features(f, scale_tokens, a)
        x = stage.ffn[j](x) if stage.ffn is not None else x
        if x.shape[-2] * x.shape[-1] > out_size[0] * out_size[1]:
            fused = fused + stage.fuse[j](
                F.interpolate(x, size=out_size, mode="bilinear", align_corners=False)
            )
        else:
            y = stage.fuse[j](x)
            fused = fused + F.interpolate(y, size=out_size, mode="bilinear", align_corners=False)
        tokens = tokens + stage.from_scale[j]((a @ scale_tokens).unsqueeze(1)).squeeze(1)
    return fused, tokens


@pytest.mark.parametrize("scale_ffn", [True, False])
def test_multi_scale_stage_equals_the_plain_implementation_with_gradients(scale_ffn: bool) -> None:
    """Training mode, same weights: features, tokens and every gradient (parameters, tokens, inputs)
    equal the plain implementation's within fp32 tolerance."""
    torch.manual_seed(0)
    stage = MultiScaleGlobalTokens(num_tasks=3, channels=(4, 6, 8, 5), width=7, scale_ffn=scale_ffn).train()
    twin = copy.deepcopy(stage)
    feats = [
        torch.randn(2, c, 16 // 2**j, 24 // 2**j, requires_grad=True) for j, c in enumerate((4, 6, 8, 5))
    ]
    twin_feats = [f.detach().clone().requires_grad_() for f in feats]
    got = stage(feats, (8, 12))[:2]
    ref = _plain_multi_scale(twin, twin_feats, (8, 12))
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    weights = [torch.randn_like(a) for a in got]
    sum((a * w).sum() for a, w in zip(got, weights)).backward()
    sum((b * w).sum() for b, w in zip(ref, weights)).backward()
    for (name, p), q in zip(stage.named_parameters(), twin.parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0, name
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)
    for f, g in zip(feats, twin_feats):
        torch.testing.assert_close(f.grad, g.grad, rtol=1e-4, atol=1e-6)


def test_gated_features_are_not_kept_for_backward(monkeypatch: pytest.MonkeyPatch) -> None:
    """apply_to_gated: the T-times-wider product F_s * m is freed after the forward pass (recomputed
    in backward), and the gradients are those of the plain layer(F_s * m)."""
    from trainer.models import global_tokens

    torch.manual_seed(0)
    layer = TaskConvBNReLU(3, 4, 5)
    shared = torch.randn(2, 4, 6, 8, requires_grad=True)
    mixed = torch.rand(2, 3, 6, 8, requires_grad=True)
    products = []
    original = global_tokens.gate_features

    def recorded(*args):
        out = original(*args)
        products.append(weakref.ref(out))
        return out

    monkeypatch.setattr(global_tokens, "gate_features", recorded)
    y = global_tokens.apply_to_gated(layer, shared, mixed)
    assert len(products) == 1 and products[0]() is None  # not kept alive by the autograd graph
    y.square().sum().backward()
    grads = [shared.grad.clone(), mixed.grad.clone(), layer.conv.weight.grad.clone()]
    for t in (shared, mixed, layer.conv.weight):
        t.grad = None
    layer(original(shared, mixed)).square().sum().backward()
    for a, b in zip(grads, [shared.grad, mixed.grad, layer.conv.weight.grad]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_global_scores_are_the_token_feature_products() -> None:
    """M_f = sigmoid(<F''_t, theta''_t>) per pixel (the grouped 1x1 conv of the model's forward)."""
    cfg = ModelConfig(backbone="resnet18", pretrained=False, width=8, fine_mlp_hidden=8, multi_scale=True)
    torch.manual_seed(0)
    model = build_model(cfg, SPECS).eval()
    captured = {}
    model.attention.register_forward_hook(lambda m, i, o: captured.update(tokens=o[1]))
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 48))
    for i, s in enumerate(SPECS):
        expected = torch.sigmoid(
            torch.einsum("bdhw,d->bhw", out["task_features"][s.name], captured["tokens"][i])
        )
        torch.testing.assert_close(out["global_scores"][s.name], expected, rtol=1e-5, atol=1e-6)


def test_paper_token_stage_drops_both_authors_convs_and_trains_every_parameter() -> None:
    """scale_ffn and attention_ffn False: the paper's token stage (no per-scale conv, no conv after
    intra-task attention, whose update is added to its input)."""
    cfg = ModelConfig(
        backbone="resnet18",
        pretrained=False,
        width=16,
        fine_mlp_hidden=16,
        multi_scale=True,
        scale_ffn=False,
        attention_ffn=False,
    )
    assert RunConfig.from_dict(RunConfig(model=cfg).to_dict()).model == cfg
    torch.manual_seed(0)
    model = build_model(cfg, SPECS)
    assert model.attention.ffn is None and model.global_tokens.ffn is None
    assert not any(".ffn." in n for n, _ in model.named_parameters())
    out = model(torch.randn(2, 3, 32, 48))
    sum(v.square().mean() for v in out["logits"].values()).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []
    x, tokens = torch.randn(2, 3 * 16, 4, 6), torch.randn(3, 16)
    attention = model.attention.eval()
    feats, _ = attention(x, tokens)
    with torch.no_grad():
        attention.ffn = torch.nn.Identity()  # the conv3x3-BN-ReLU is all that differs
        same, _ = attention(x, tokens)
    torch.testing.assert_close(feats, same)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(backbone="resnet18"),  # stride-8 layout, single scale: the head's layers read F'_t
        dict(backbone="resnet18", head_reads_shared=True),  # F'_t + F_s: the plain path
        dict(backbone="resnet18", multi_scale=True),  # reduced queries: x + up(update) recomputed too
        dict(backbone="resnet18", multi_scale=True, scale_ffn=False, attention_ffn=False),
        dict(
            backbone="segnet", attention_queries="reduced", attention_reduction=3
        ),  # padded grid  # the token stage at stride 4, then its own conv
    ],
)
def test_recomputed_gated_features_give_the_plain_gradients(
    overrides: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Model level, training mode: outputs and every parameter's gradient are those of the plain
    computation (the mixed features, and the attention's input + upsampled update, kept)."""
    from trainer.models import global_tokens

    cfg = ModelConfig(pretrained=False, width=8, fine_mlp_hidden=8, **overrides)
    torch.manual_seed(0)
    model = build_model(cfg, SPECS).train()
    twin = copy.deepcopy(model)
    image = torch.randn(2, 3, 32, 48)

    def run(net: torch.nn.Module) -> dict:
        out = net(image)
        sum(v.square().mean() for v in out["logits"].values()).backward()
        return out["logits"]

    got = run(model)
    monkeypatch.setattr(global_tokens, "apply_recomputed", lambda layer, make, *xs: layer(make(*xs)))
    ref = run(twin)
    for k in got:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_fine_token_embedding_of_the_identity_skips_the_matmul() -> None:
    from trainer.models.fine_tokens import FineTokenGenerator

    torch.manual_seed(0)
    gen = FineTokenGenerator(num_outputs=5, width=7, hidden=6)
    token = torch.randn(7)
    expected = gen.mlp(token.unsqueeze(1).expand(-1, 5) + gen.embed(gen.basis).T).T
    torch.testing.assert_close(gen(token), expected, rtol=1e-5, atol=1e-6)  # the same sums, to rounding


def test_batched_qkv_equals_the_three_maps() -> None:
    torch.manual_seed(0)
    attn = IntraTaskAttention(num_tasks=3, width=8, reduction=2, reduced_queries=True)
    for m in (attn.q, attn.k, attn.v):
        torch.nn.init.normal_(m.bias)
    x = torch.randn(2, 3, 5, 8)
    for got, layer in zip(attn._qkv(x), (attn.q, attn.k, attn.v)):
        torch.testing.assert_close(got, layer(x), rtol=1e-5, atol=1e-6)
