"""Diagnostic of the reproduction study: the authors' N(0, 1) token init saturates the task-query gates."""

from __future__ import annotations

import pytest
import torch

from trainer.config import ModelConfig
from trainer.models import build_model
from trainer.tasks import tasks_for

SATURATED = 0.01  # a gate below 0.01 or above 0.99 passes (almost) no gradient to its logit


def saturated_fraction(token_init_std: float) -> float:
    """Fraction of gates sigmoid(<F_s, theta_i>) within SATURATED of 0 or 1 at init, on a smooth image."""
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(arch="hitts", width=64, token_init_std=token_init_std), tasks_for("nyud")
    ).eval()
    captured = {}
    model.global_tokens.register_forward_hook(lambda m, inputs, out: captured.update(shared=inputs[0]))
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 96), torch.linspace(-1, 1, 128), indexing="ij")
    image = torch.stack([xx, yy, xx * yy]).unsqueeze(0)  # (1, 3, 96, 128), roughly normalised
    with torch.no_grad():
        model(image)
        theta = model.global_tokens.theta  # (T, D)
        gates = torch.sigmoid(torch.einsum("bchw,tc->bthw", captured["shared"], theta))
    return float(((gates < SATURATED) | (gates > 1 - SATURATED)).float().mean())


@pytest.mark.slow  # two EfficientNet-Lite0 HiTTs models at 96x128: several seconds
def test_small_token_init_leaves_gates_unsaturated() -> None:
    authors, small = saturated_fraction(1.0), saturated_fraction(0.05)  # measured: 0.91 and 0.05
    assert authors > 0.5, authors  # most gates start stuck at 0 or 1 (93% on the real frames)
    assert small < 0.15, small  # the init of the `hitts_small_init` diagnostic run
