"""The cheaper token stage (issue 13 item 7): exact rewrites keep the maths, the switches that change
it are the authors' choices or documented options, and single-scale models are untouched."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from test_models import _one_thread  # noqa: F401  (autouse: one thread for tiny tensors)

from trainer.config import ModelConfig, RunConfig
from trainer.models import build_model
from trainer.models.global_tokens import IntraTaskAttention, MultiScaleGlobalTokens, gated_task_features
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
