"""The training step on a GPU makes no host sync (skipped without CUDA): every loss term, fused Adam,
gradient clipping, bf16 autocast and channels_last, run under ``torch.cuda.set_sync_debug_mode("error")``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_losses import make_batch, quantisers

from trainer.config import ModelConfig, TrainConfig
from trainer.engine import LossTracker, setup, train_step
from trainer.losses import compute_losses
from trainer.models import build_model
from trainer.tasks import DATASET_TASKS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

NYUD = DATASET_TASKS["nyud"]
H, W = 64, 96


def cuda_batch(seed: int) -> dict:
    """A pinned batch at the model's size (what the loader hands over with ``pin_memory``)."""
    small = make_batch([[True, False, True], [False, True, False]], seed=seed)
    g = torch.Generator().manual_seed(seed)
    batch = {"image": torch.randn(2, 3, H, W, generator=g), "labelled": small["labelled"]}
    batch["semseg"] = torch.randint(-1, 13, (2, H, W), generator=g)
    batch["depth"] = torch.rand(2, 1, H, W, generator=g) * 5 + 0.5
    batch["normals"] = torch.nn.functional.normalize(torch.randn(2, 3, H, W, generator=g), dim=1)
    for s in NYUD:
        batch[f"pseudo/{s.name}"] = torch.randint(0, s.num_outputs, (2, H, W), generator=g)
        batch[f"pseudo_mask/{s.name}"] = (torch.rand(2, H, W, generator=g) > 0.5).float()
    return {k: v.pin_memory() for k, v in batch.items()}


@pytest.mark.parametrize("arch", ["mtl", "hitts"])
def test_gpu_training_step_never_syncs(arch: str, tmp_path: Path) -> None:
    specs = NYUD
    model = build_model(
        ModelConfig(arch=arch, backbone="efficientnet_lite0", pretrained=False, width=16), specs
    )
    cfg = TrainConfig(device="cuda", grad_clip_norm=1.0, amp=True, channels_last=True, lr=1e-3)
    t = setup(model, cfg, tmp_path, resume=False)
    qs = quantisers()

    def loss_fn(outputs: dict, batch: dict) -> dict:
        return compute_losses(outputs, batch, specs, qs, use_pseudo=True)

    tracker = LossTracker(0, tmp_path / "checkpoint.pt")
    batches = [cuda_batch(seed) for seed in range(5)]
    for batch in batches[:2]:  # warm-up: lazy optimiser state, cuDNN algorithm choice
        tracker.add(0, train_step(t, batch, loss_fn, cfg))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step, batch in enumerate(batches[2:]):
            tracker.add(step, train_step(t, batch, loss_fn, cfg))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    means = tracker.check()
    assert set(means) >= {"L_s", "L_p", "total"} and all(v == v for v in means.values())


def test_gated_features_are_released_under_bf16_and_channels_last(monkeypatch: pytest.MonkeyPatch) -> None:
    """The multi-scale token stage recomputes F_s * m in backward instead of keeping it (issue 13
    item 7) also in the GPU training setting (bf16 autocast, channels_last), with the gradients of
    the plain computation."""
    import copy
    import weakref

    from trainer.models import global_tokens

    cfg = ModelConfig(arch="hitts", backbone="resnet18", pretrained=False, width=16, multi_scale=True)
    torch.manual_seed(0)
    model = build_model(cfg, NYUD).cuda().to(memory_format=torch.channels_last)
    twin = copy.deepcopy(model)
    image = torch.randn(2, 3, H, W, device="cuda").contiguous(memory_format=torch.channels_last)
    products: list = []
    original = global_tokens.gate_features

    def recorded(*args: torch.Tensor) -> torch.Tensor:
        out = original(*args)
        products.append(weakref.ref(out))
        return out

    def loss_of(net: torch.nn.Module) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = net(image)
        return sum(v.float().square().mean() for v in out["logits"].values())

    monkeypatch.setattr(global_tokens, "gate_features", recorded)
    loss = loss_of(model)
    assert len(products) == 4 and all(p() is None for p in products)  # one per scale, none kept
    loss.backward()
    monkeypatch.setattr(global_tokens, "gate_features", original)
    monkeypatch.setattr(global_tokens, "apply_recomputed", lambda layer, make, *xs: layer(make(*xs)))
    loss_of(twin).backward()
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=2e-2, atol=1e-4, msg=name)
