"""Issue 10's fidelity switches and the held-out validation split behave as documented."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from pipeline_fixtures import tiny_config

from trainer.config import ModelConfig, apply_overrides
from trainer.losses import AUTHORS_CE_WEIGHT, loss_weights, pixel_task_loss
from trainer.models import build_model
from trainer.models.global_tokens import gated_task_features
from trainer.pipeline import ensure_split, task_specs, validation_indices
from trainer.tasks import tasks_for

SPECS = tasks_for("nyud")


def tiny_model(**switches) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(arch="hitts", width=16, fine_mlp_hidden=16, pretrained=False, **switches)
    return build_model(cfg, SPECS)


def test_gate_channel_scale_is_the_gate_of_the_scaled_feature() -> None:
    torch.manual_seed(0)
    shared, tokens, scale = torch.randn(2, 8, 5, 6), torch.randn(3, 8), torch.randn(8)
    _, gates = gated_task_features(shared, tokens, None, scale)
    expected = torch.sigmoid(torch.einsum("bchw,tc->bthw", shared * scale.view(1, 8, 1, 1), tokens))
    torch.testing.assert_close(gates, expected)


def test_gate_channel_scale_is_learned_and_shrinks_gate_logits_at_init() -> None:
    model = tiny_model(gate_channel_scale=True)
    scale = model.global_tokens.channel_scale
    assert scale.requires_grad and scale.shape == (16,)
    assert 0.1 < float(scale.detach().std()) < 0.6  # Xavier-normal of a (16, 1, 1, 1) depthwise weight: 0.34
    out = model(torch.randn(2, 3, 64, 96))
    sum(v.float().mean() for v in out["logits"].values()).backward()
    assert scale.grad is not None and scale.grad.abs().sum() > 0


def test_untrained_tokens_are_a_buffer_that_stays_at_its_init() -> None:
    model = tiny_model(train_global_tokens=False)
    names = {n for n, _ in model.named_parameters()}
    assert "global_tokens.theta" not in names
    assert "global_tokens.theta" in model.state_dict()  # saved, so exports and resumes keep it
    before = model.global_tokens.theta.clone()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    out = model(torch.randn(2, 3, 64, 96))
    sum(v.float().mean() for v in out["logits"].values()).backward()
    opt.step()
    torch.testing.assert_close(model.global_tokens.theta, before)


def test_head_reads_shared_adds_the_shared_feature_path() -> None:
    image = torch.randn(2, 3, 64, 96)
    plain, bypass = tiny_model(), tiny_model(head_reads_shared=True)
    assert plain.state_dict().keys() == bypass.state_dict().keys()  # no new weights, only a sum
    bypass.load_state_dict(plain.state_dict())
    plain.eval(), bypass.eval()
    with torch.no_grad():
        a, b = plain(image)["logits"]["semseg"], bypass(image)["logits"]["semseg"]
    assert a.shape == b.shape and not torch.allclose(a, b)


def test_loss_forms() -> None:
    depth, semseg = SPECS[1], SPECS[0]
    assert loss_weights(depth, "paper") == (1.0, 0.1, 1.0)
    assert loss_weights(depth, "authors") == (AUTHORS_CE_WEIGHT, 1.0, 0.6)
    assert loss_weights(semseg, "authors") == (1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="loss form"):
        loss_weights(depth, "mine")


def test_authors_loss_is_regression_plus_a_tenth_of_ce() -> None:
    """Hand-computed: with uniform logits CE = log C; the decoded depth is the mean bin centre."""

    class Bins:
        centres = torch.tensor([1.0, 3.0])

        def decode(self, logits: torch.Tensor) -> torch.Tensor:
            return (logits.softmax(1) * self.centres.view(1, -1, 1, 1)).sum(1, keepdim=True)

    depth = replace(SPECS[1], num_outputs=2)
    logits = torch.zeros(1, 2, 1, 1)
    index, target = torch.zeros(1, 1, 1, dtype=torch.long), torch.full((1, 1, 1, 1), 1.0)
    ce, l1 = float(np.log(2)), 1.0  # prediction 2.0 against 1.0
    paper, _ = pixel_task_loss(depth, logits, index, target, Bins(), "paper")
    authors, _ = pixel_task_loss(depth, logits, index, target, Bins(), "authors")
    assert float(paper) == pytest.approx(ce + 0.1 * l1)
    assert float(authors) == pytest.approx(l1 + 0.1 * ce)


def test_validation_scenes_are_held_out_seeded_and_saved(data_root: Path, tmp_path: Path) -> None:
    cfg = apply_overrides(tiny_config(), ["data.validation_images=3"])
    specs = task_specs(cfg)
    mask = ensure_split(cfg, data_root, specs, tmp_path / "split.json")
    held = validation_indices(tmp_path / "split.json")
    assert len(held) == 3 and len(set(held.tolist())) == 3
    assert not mask[held].any()  # no label of a validation scene is available for training
    assert mask[np.setdiff1d(np.arange(len(mask)), held)].any(axis=1).all()
    again = ensure_split(cfg, data_root, specs, tmp_path / "other.json")
    np.testing.assert_array_equal(again, mask)  # same seed, same split
    doc = json.loads((tmp_path / "split.json").read_text())
    assert doc["meta"]["validation"] == held.tolist()
    with pytest.raises(ValueError, match="holds out 3"):
        ensure_split(
            apply_overrides(cfg, ["data.validation_images=2"]), data_root, specs, tmp_path / "split.json"
        )


def test_eval_split_val_needs_held_out_scenes() -> None:
    with pytest.raises(ValueError, match="validation_images"):
        apply_overrides(tiny_config(), ["data.eval_split=val"])
