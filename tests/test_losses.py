"""Task losses and L_s / L_p / L_f: hand-computed values, masking, NaN safety, gradients."""

from __future__ import annotations

import math

import pytest
import torch
from host_reads import record_host_reads

from trainer.losses import compute_losses, pixel_task_loss
from trainer.quantise import ClassQuantiser, DepthBins, NormalCentres
from trainer.tasks import DATASET_TASKS

NYUD = DATASET_TASKS["nyud"]
SEMSEG, DEPTH, NORMALS = NYUD
B, H, W, D, h, w = 2, 4, 5, 6, 2, 3


def quantisers() -> dict:
    return {
        "semseg": ClassQuantiser(13),
        "depth": DepthBins(0.5, 10.0, 30),
        "normals": NormalCentres.uniform(20),
    }


def make_outputs(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    logits = {s.name: torch.randn(B, s.num_outputs, H, W, generator=g).requires_grad_() for s in NYUD}
    feats = {s.name: torch.randn(B, D, h, w, generator=g).requires_grad_() for s in NYUD}
    return {"logits": logits, "task_features": feats}


def make_batch(labelled: list[list[bool]], seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    batch = {
        "semseg": torch.randint(-1, 13, (B, H, W), generator=g),
        "depth": torch.rand(B, 1, H, W, generator=g) * 5 + 0.5,
        "normals": torch.nn.functional.normalize(torch.randn(B, 3, H, W, generator=g), dim=1),
        "labelled": torch.tensor(labelled),
    }
    for s in NYUD:
        batch[f"pseudo/{s.name}"] = torch.randint(0, s.num_outputs, (B, H, W), generator=g)
        batch[f"pseudo_mask/{s.name}"] = (torch.rand(B, H, W, generator=g) > 0.5).float()
        batch[f"feature_target/{s.name}"] = torch.randn(B, D, h, w, generator=g)
        batch[f"feature_mask/{s.name}"] = torch.rand(B, h, w, generator=g)
    return batch


def test_ce_plus_l1_depth_by_hand():
    """Linear bins with centres 1 and 3, lambda = 0.1, 1 x 3 image.

    pixel 0: logits (0, 0) -> softmax (1/2, 1/2), pred 2; target 1.2 -> bin 0; CE = ln 2,
        L1 = 0.8 -> ln 2 + 0.08 = 0.773147.
    pixel 1: logits (ln 3, 0) -> softmax (3/4, 1/4), pred 1.5; target 2.9 -> bin 1; CE = ln 4,
        L1 = 1.4 -> ln 4 + 0.14 = 1.526294.
    pixel 2: depth 0 (missing) -> invalid, loss 0.
    L_s/depth = (0.773147 + 1.526294) / 2 = 1.149721; T = 1, so L_s = total = the same.
    """
    q = DepthBins(1.0, 3.0, 2, spacing="linear")
    logits = torch.tensor([[0.0, math.log(3.0), 0.0], [0.0, 0.0, 0.0]]).view(1, 2, 1, 3).requires_grad_()
    target = torch.tensor([1.2, 2.9, 0.0]).view(1, 1, 1, 3)
    loss, valid = pixel_task_loss(DEPTH, logits, q.to_index(target), target, q)
    assert valid.flatten().tolist() == [True, True, False]
    expected = [math.log(2) + 0.08, math.log(4) + 0.14, 0.0]
    assert loss.flatten().tolist() == pytest.approx(expected, abs=1e-6)
    out = compute_losses(
        {"logits": {"depth": logits}},
        {"depth": target, "labelled": torch.tensor([[True]])},
        (DEPTH,),
        {"depth": q},
    )
    assert out["L_s/depth"].item() == pytest.approx(1.149721, abs=1e-6)
    assert out["total"].item() == pytest.approx(1.149721, abs=1e-6)
    out["total"].backward()
    assert logits.grad is not None and logits.grad[..., :2].abs().sum() > 0
    assert logits.grad[..., 2].abs().sum() == 0  # the missing pixel has no gradient


def test_ce_plus_cosine_normals_by_hand():
    """Centres +x, +y; logits (0, 0) -> pred normalise(1/2, 1/2, 0) = (1, 1, 0) / sqrt 2; target +x ->
    centre 0; CE = ln 2; 1 - cos = 1 - 1/sqrt 2 = 0.292893 -> ln 2 + 0.0292893 = 0.722440."""
    q = NormalCentres(torch.tensor([[1.0, 0, 0], [0, 1, 0]]))
    target = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    loss, _ = pixel_task_loss(NORMALS, torch.zeros(1, 2, 1, 1), q.to_index(target), target, q)
    assert loss.item() == pytest.approx(math.log(2) + 0.1 * (1 - 1 / math.sqrt(2)), abs=1e-6)


def test_unlabelled_task_contributes_exactly_zero():
    """labelled (B=2, T=3) = [[1,0,0],[0,1,0]]: normals is unlabelled everywhere -> L_s/normals = 0.0;
    L_s = (L_s/semseg + L_s/depth) / 3 (T counts every task); L_s/semseg only sees image 0."""
    outputs, batch = make_outputs(), make_batch([[True, False, False], [False, True, False]])
    out = compute_losses(outputs, batch, NYUD, quantisers())
    assert out["L_s/normals"].item() == 0.0
    assert out["L_s"].item() == pytest.approx((out["L_s/semseg"] + out["L_s/depth"]).item() / 3)
    assert set(out) == {"L_s/semseg", "L_s/depth", "L_s/normals", "L_s", "total"}
    first = compute_losses(
        {"logits": {k: v[:1] for k, v in outputs["logits"].items()}},
        {**{k: batch[k][:1] for k in ("semseg", "depth", "normals")}, "labelled": batch["labelled"][:1]},
        NYUD,
        quantisers(),
    )
    assert out["L_s/semseg"].item() == pytest.approx(first["L_s/semseg"].item())
    empty = make_batch([[True, True, True], [True, True, True]])
    empty["semseg"][:] = -1  # labelled but no valid pixel
    assert compute_losses(outputs, empty, NYUD, quantisers())["L_s/semseg"].item() == 0.0


def test_nan_in_unlabelled_targets_never_reaches_loss_or_gradient():
    """NaN / inf planted in every target of an unlabelled (image, task): the loss equals the clean
    loss and every gradient is finite."""
    labelled = [[True, False, False], [False, True, False]]
    outputs, clean = make_outputs(), make_batch(labelled)
    poisoned = {**clean, "depth": clean["depth"].clone(), "normals": clean["normals"].clone()}
    poisoned["depth"][0] = math.nan
    poisoned["normals"][:] = math.nan
    poisoned["normals"][1, 0] = math.inf
    poisoned["semseg"] = clean["semseg"].clone()
    poisoned["semseg"][1] = 10**6  # garbage class ids on the unlabelled image
    ref = compute_losses(outputs, clean, NYUD, quantisers())["total"]
    out = compute_losses(outputs, poisoned, NYUD, quantisers())
    assert torch.isfinite(out["total"]), out
    assert out["total"].item() == pytest.approx(ref.item())
    out["total"].backward()
    for name, logits in outputs["logits"].items():
        assert torch.isfinite(logits.grad).all(), name


def test_pseudo_mask_respected():
    """Pseudo labels where M_p = 0, and on images where the task is labelled, do not change L_p
    (perturbed: identical). L_p/task = sum(M_p * L) / (unlabelled images * H * W), checked against
    pixel_task_loss; a task labelled on every image has L_p/task = 0."""
    labelled = [[True, False, True], [False, True, True]]
    outputs, batch = make_outputs(), make_batch(labelled)
    qs = quantisers()
    out = compute_losses(outputs, batch, NYUD, qs, use_pseudo=True)
    perturbed = dict(batch)
    for s in NYUD:
        key = f"pseudo/{s.name}"
        noise = torch.randint(0, s.num_outputs, (B, H, W), generator=torch.Generator().manual_seed(7))
        off = batch[f"pseudo_mask/{s.name}"] == 0
        off |= batch["labelled"][:, NYUD.index(s)].view(B, 1, 1)
        perturbed[key] = torch.where(off, noise, batch[key])
        perturbed[f"pseudo_mask/{s.name}"] = torch.where(
            batch["labelled"][:, NYUD.index(s)].view(B, 1, 1), torch.nan, batch[f"pseudo_mask/{s.name}"]
        )
    again = compute_losses(outputs, perturbed, NYUD, qs, use_pseudo=True)
    for s in NYUD:
        assert again[f"L_p/{s.name}"].item() == pytest.approx(out[f"L_p/{s.name}"].item(), abs=0, rel=1e-6)
    assert out["L_p/normals"].item() == 0.0
    # semseg is unlabelled on image 1 only
    loss, _ = pixel_task_loss(
        SEMSEG, outputs["logits"]["semseg"][1:], batch["pseudo/semseg"][1:], None, qs["semseg"]
    )
    expected = (batch["pseudo_mask/semseg"][1:] * loss).sum() / (H * W)
    assert out["L_p/semseg"].item() == pytest.approx(expected.item())
    assert out["L_p"].item() == pytest.approx(sum(out[f"L_p/{s.name}"].item() for s in NYUD) / 3)
    assert out["total"].item() == pytest.approx((out["L_s"] + out["L_p"]).item())


def test_l_s_and_l_p_from_one_pass_each_have_their_own_value():
    """compute_losses computes L_i once per task for L_s and L_p together (each image with its own
    target): L_s is bit for bit the ground-truth-only value, and L_p/depth, L_p/normals equal a pass
    of pixel_task_loss over the unlabelled images' pseudo labels alone (regression target: the centre)."""
    labelled = [[True, False, True], [False, True, False]]
    outputs, batch = make_outputs(), make_batch(labelled)
    qs = quantisers()
    both = compute_losses(outputs, batch, NYUD, qs, use_pseudo=True)
    alone = compute_losses(outputs, batch, NYUD, qs)
    for s in NYUD:
        assert torch.equal(both[f"L_s/{s.name}"], alone[f"L_s/{s.name}"])
    for s in (DEPTH, NORMALS):
        unlabelled = [k for k in range(B) if not labelled[k][NYUD.index(s)]]
        pseudo = batch[f"pseudo/{s.name}"][unlabelled]
        centre = qs[s.name].index_to_value(pseudo)
        loss, _ = pixel_task_loss(s, outputs["logits"][s.name][unlabelled], pseudo, centre, qs[s.name])
        expected = (batch[f"pseudo_mask/{s.name}"][unlabelled] * loss).sum() / (len(unlabelled) * H * W)
        assert both[f"L_p/{s.name}"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_pseudo_regression_target_is_the_centre():
    """For depth, L_p's regression part uses index_to_value(pseudo): a confident prediction of the
    pseudo bin has L1 ~ 0, so L_p ~ CE ~ 0."""
    q = DepthBins(1.0, 3.0, 2, spacing="linear")
    logits = torch.tensor([[50.0], [0.0]]).view(1, 2, 1, 1)
    batch = {
        "depth": torch.zeros(1, 1, 1, 1),
        "labelled": torch.tensor([[False]]),
        "pseudo/depth": torch.zeros(1, 1, 1, dtype=torch.int64),
        "pseudo_mask/depth": torch.ones(1, 1, 1),
    }
    out = compute_losses({"logits": {"depth": logits}}, batch, (DEPTH,), {"depth": q}, use_pseudo=True)
    assert out["L_s/depth"].item() == 0.0 and out["L_p/depth"].item() == pytest.approx(0.0, abs=1e-6)


def test_feature_loss_alpha_weights_and_resize():
    """F' = 0, F~ = 1 -> per-pixel MSE 1. Image 0 labelled (weight 1, its mask ignored), image 1
    unlabelled with M_f = 0.5: L_f/task = (4 * 1 + 4 * 0.5) / 8 = 0.75 (h = w = 2). Changing image 0's
    mask changes nothing; image 1's mask 0 -> 0.5. Features at 4 x 4 are resized to the 2 x 2 target
    (constant, so the same value)."""
    labelled = torch.tensor([[True], [False]])
    target = torch.ones(2, 3, 2, 2)
    mask = torch.stack([torch.zeros(2, 2), torch.full((2, 2), 0.5)])
    for size in (2, 4):
        feats = torch.zeros(2, 3, size, size, requires_grad=True)
        outputs = {"logits": {"semseg": torch.zeros(2, 13, 2, 2)}, "task_features": {"semseg": feats}}
        batch = {
            "semseg": torch.full((2, 2, 2), -1),
            "labelled": labelled,
            "feature_target/semseg": target,
            "feature_mask/semseg": mask,
        }
        out = compute_losses(outputs, batch, (SEMSEG,), {"semseg": ClassQuantiser(13)}, use_features=True)
        assert out["L_f/semseg"].item() == pytest.approx(0.75)
        assert out["total"].item() == pytest.approx(0.75)
        out["total"].backward()
        assert feats.grad.abs().sum() > 0
    batch["feature_mask/semseg"] = torch.stack([torch.full((2, 2), math.nan), torch.full((2, 2), 0.5)])
    assert compute_losses(outputs, batch, (SEMSEG,), {"semseg": ClassQuantiser(13)}, use_features=True)[
        "L_f/semseg"
    ].item() == pytest.approx(0.75)
    batch["feature_mask/semseg"] = torch.zeros(2, 2, 2)
    assert compute_losses(outputs, batch, (SEMSEG,), {"semseg": ClassQuantiser(13)}, use_features=True)[
        "L_f/semseg"
    ].item() == pytest.approx(0.5)


def test_all_terms_gradients_reach_logits_and_features():
    labelled = [[True, False, True], [False, True, False]]
    outputs, batch = make_outputs(), make_batch(labelled)
    out = compute_losses(outputs, batch, NYUD, quantisers(), use_pseudo=True, use_features=True)
    assert torch.isfinite(torch.stack([v for v in out.values()])).all(), out
    assert out["total"].item() == pytest.approx((out["L_s"] + out["L_p"] + out["L_f"]).item())
    out["total"].backward()
    for s in NYUD:
        assert outputs["logits"][s.name].grad.abs().sum() > 0, s.name
        assert outputs["task_features"][s.name].grad.abs().sum() > 0, s.name


def test_task_order_selects_label_columns():
    """batch["labelled"] columns in another order than specs: task_order maps them."""
    outputs, batch = make_outputs(), make_batch([[True, False, False], [True, False, False]])
    reordered = {**batch, "labelled": batch["labelled"][:, [2, 1, 0]]}  # (normals, depth, semseg)
    a = compute_losses(outputs, batch, NYUD, quantisers())
    b = compute_losses(outputs, reordered, NYUD, quantisers(), task_order=["normals", "depth", "semseg"])
    assert a["total"].item() == pytest.approx(b["total"].item())
    with pytest.raises(ValueError, match="labelled"):
        compute_losses(outputs, {**batch, "labelled": batch["labelled"][:, :2]}, NYUD, quantisers())


def test_losses_never_read_a_tensor_on_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every term, L_p and L_f included, stays on the device: no ``item`` / ``int`` / ``bool`` read
    that would make the GPU training step wait."""
    import trainer.losses
    import trainer.quantise

    outputs, batch = make_outputs(), make_batch([[True, False, True], [False, True, False]])
    qs = quantisers()
    reads = record_host_reads(monkeypatch, trainer.losses.__file__, trainer.quantise.__file__)
    compute_losses(outputs, batch, NYUD, qs, use_pseudo=True, use_features=True)
    assert reads == []
