"""Quantisers: targets -> indices, logits -> predictions, fitting, serialisation, ONNX export."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from trainer.quantise import (
    ClassQuantiser,
    DepthBins,
    NormalCentres,
    Quantiser,
    build_quantisers,
    logits_to_outputs,
    quantisers_from_dict,
    quantisers_to_dict,
)
from trainer.tasks import DATASET_TASKS

NYUD = DATASET_TASKS["nyud"]
SEMSEG, DEPTH, NORMALS = NYUD
BIG = 50.0  # a logit margin that makes softmax one-hot to float precision

AXES = torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])


def one_hot_logits(index: torch.Tensor, k: int) -> torch.Tensor:
    """(B, H, W) index -> (B, K, H, W) logits with BIG at the index."""
    return torch.nn.functional.one_hot(index, k).permute(0, 3, 1, 2).float() * BIG


def test_class_quantiser_identity_and_argmax():
    q = ClassQuantiser(3)
    target = torch.tensor([[[0, 2, -1, 255]]])
    assert q.to_index(target).tolist() == [[[0, 2, -1, -1]]]  # out of range -> ignore
    logits = torch.tensor([[[[0.0]], [[2.0]], [[1.0]]]])  # (1, 3, 1, 1)
    assert q.decode(logits).item() == 1
    assert torch.equal(q.index_to_value(torch.tensor([[[1, -1]]])), torch.tensor([[[1, -1]]]))


def test_depth_log_bins_nearest_centre_in_log_space():
    """Centres 1, 10, 100 (log spacing); log-space boundaries at sqrt(10) = 3.162 and sqrt(1000) = 31.62.

    3.0 -> 0, 3.3 -> 1, 31 -> 1, 32 -> 2 (in linear distance 32 is nearer 10 than 100: the log rule
    differs); out-of-range depths clamp to the end bins; 0, negative, NaN, inf -> -1.
    """
    q = DepthBins(1.0, 100.0, 3)
    assert q.spacing == "log"
    assert torch.allclose(q.centres, torch.tensor([1.0, 10.0, 100.0]))
    depth = torch.tensor([0.5, 3.0, 3.3, 31.0, 32.0, 200.0, 0.0, -1.0, math.nan, math.inf])
    index = q.to_index(depth.view(1, 1, 1, -1))
    assert index.shape == (1, 1, 10) and index.dtype == torch.int64
    assert index.flatten().tolist() == [0, 0, 1, 1, 2, 2, -1, -1, -1, -1]


def test_depth_linear_bins():
    q = DepthBins(1.0, 3.0, 3, spacing="linear")
    assert torch.allclose(q.centres, torch.tensor([1.0, 2.0, 3.0]))
    assert q.to_index(torch.tensor([[[[1.4, 1.6, 2.6]]]])).flatten().tolist() == [0, 1, 2]
    with pytest.raises(ValueError):
        DepthBins(1.0, 3.0, 3, spacing="cubic")


def test_depth_decode_soft_weighted_and_differentiable():
    """One-hot logits give the centre; equal logits give the mean of the centres (1+10+100)/3 = 37."""
    q = DepthBins(1.0, 100.0, 3)
    logits = one_hot_logits(torch.tensor([[[0, 2]]]), 3)  # (1, 3, 1, 2)
    pred = q.decode(logits)
    assert pred.shape == (1, 1, 1, 2)
    assert torch.allclose(pred.flatten(), torch.tensor([1.0, 100.0]))
    flat = torch.zeros(1, 3, 1, 1, requires_grad=True)
    out = q.decode(flat)
    assert out.item() == pytest.approx(37.0)
    out.sum().backward()
    assert flat.grad is not None and flat.grad.abs().sum() > 0


def test_depth_index_to_value_round_trip_and_missing():
    q = DepthBins(0.5, 10.0, 30)
    index = torch.arange(30).view(1, 5, 6)
    value = q.index_to_value(index)
    assert value.shape == (1, 1, 5, 6)
    assert torch.equal(q.to_index(value), index)
    missing = q.index_to_value(torch.tensor([[[-1, 3]]]))
    assert missing[0, 0, 0, 0].item() == 0.0 and missing[0, 0, 0, 1].item() == pytest.approx(
        float(q.centres[3])
    )


def test_depth_fit_percentiles_ignore_outliers_and_missing():
    """1001 depths evenly spaced in [1, 5] plus 2 outliers at 1e4 and zeros (missing): the 0.5 / 99.5
    percentiles stay inside [1, 5] (the 2 outliers are 0.2 % of the valid values); percentiles 0 / 100
    give the exact extremes."""
    a = torch.linspace(1.0, 5.0, 1001).view(1, 7, 143)
    b = torch.tensor([[[1e4, 1e4, 0.0, 0.0]]])
    q = DepthBins.fit([a, b.numpy()], num_bins=30)
    assert 1.0 <= q.d_min < 1.1 and 4.9 < q.d_max <= 5.0
    q_all = DepthBins.fit([a, b], num_bins=30, low_pct=0.0, high_pct=100.0)
    assert q_all.d_min == pytest.approx(1.0) and q_all.d_max == pytest.approx(1e4)


def test_normal_to_index_cosine_and_invalid():
    q = NormalCentres(AXES)
    target = torch.tensor([[0.9, 0.1, 0.0], [0.0, -0.2, 0.5], [0.0, 0.0, 0.0], [math.nan, 0, 1]])
    index = q.to_index(target.T.reshape(1, 3, 1, 4))
    assert index.shape == (1, 1, 4)
    assert index.flatten().tolist() == [0, 4, -1, -1]


def test_normal_decode_unit_and_index_to_value():
    q = NormalCentres(AXES)
    pred = q.decode(one_hot_logits(torch.tensor([[[2, 5]]]), 6))
    assert pred.shape == (1, 3, 1, 2)
    assert torch.allclose(pred[0, :, 0, 0], torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)
    mixed = torch.zeros(1, 6, 1, 1)
    mixed[0, [0, 2]] = BIG  # half +x, half +y -> (1, 1, 0) / sqrt(2)
    assert torch.allclose(q.decode(mixed).flatten(), torch.tensor([1.0, 1.0, 0.0]) / math.sqrt(2), atol=1e-6)
    value = q.index_to_value(torch.tensor([[[4, -1]]]))
    assert value.shape == (1, 3, 1, 2)
    assert value[0, :, 0, 0].tolist() == [0.0, 0.0, 1.0] and value[0, :, 0, 1].tolist() == [0.0, 0.0, 0.0]


def _clustered_normals(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    truth = torch.nn.functional.normalize(torch.tensor([[0.0, 0, 1], [1, 0, 0.2], [0, -1, 0.3]]), dim=1)
    pts = truth.repeat_interleave(300, 0) + 0.05 * torch.randn(900, 3, generator=g)
    return truth, pts


def test_normal_kmeans_recovers_clusters_and_is_deterministic():
    truth, pts = _clustered_normals(0)
    arrays = [pts[:450].T.reshape(3, 15, 30), pts[450:]]  # (3, H, W) and (N, 3) layouts
    q = NormalCentres.fit(arrays, num_centres=3, seed=1)
    assert torch.allclose(q.centres.norm(dim=1), torch.ones(3))
    cos = q.centres @ truth.T  # every true direction has a centre within ~2 degrees
    assert (cos.max(dim=0).values > math.cos(math.radians(2))).all()
    again = NormalCentres.fit(arrays, num_centres=3, seed=1)
    assert torch.equal(q.centres, again.centres)


def test_normal_uniform_fibonacci_sphere():
    q = NormalCentres.uniform(40)
    c = q.centres.double()
    assert c.shape == (40, 3) and torch.allclose(c.norm(dim=1), torch.ones(40, dtype=torch.float64))
    assert c.mean(dim=0).norm() < 0.05  # spread over the whole sphere
    cos = c @ c.T - 2 * torch.eye(40, dtype=torch.float64)
    min_angle = math.degrees(math.acos(cos.max().item()))
    assert min_angle > 15.0


def test_serialisation_round_trip_through_json():
    qs = {
        "semseg": ClassQuantiser(13),
        "depth": DepthBins(0.7, 9.0, 30),
        "normals": NormalCentres.uniform(20),
    }
    restored = quantisers_from_dict(json.loads(json.dumps(quantisers_to_dict(qs))), NYUD)
    assert list(restored) == ["semseg", "depth", "normals"]
    assert torch.equal(restored["depth"].centres, qs["depth"].centres)
    assert torch.allclose(restored["normals"].centres, qs["normals"].centres)
    assert isinstance(Quantiser.from_dict(qs["semseg"].to_dict()), ClassQuantiser)
    with pytest.raises(ValueError, match="30 classes"):
        bad = quantisers_to_dict({**qs, "normals": NormalCentres.uniform(30)})
        quantisers_from_dict(bad, NYUD)


def test_build_quantisers_single_pass_over_samples():
    truth, pts = _clustered_normals(1)
    samples = [
        {
            "depth": torch.linspace(1.0, 4.0, 450).view(1, 15, 30),
            "normals": pts[i * 450 : (i + 1) * 450].T.reshape(3, 15, 30),
        }
        for i in range(2)
    ]
    samples.append({"depth": torch.zeros(1, 15, 30), "normals": torch.zeros(3, 15, 30)})  # unlabelled
    qs = build_quantisers(NYUD, samples, seed=0)
    assert [q.num_classes for q in qs.values()] == [13, 30, 20]
    assert 1.0 <= qs["depth"].d_min < 1.1 and 3.9 < qs["depth"].d_max <= 4.0
    uniform = build_quantisers(DATASET_TASKS["pascal"], None, normal_method="uniform")
    assert uniform["normals"].num_classes == 40
    with pytest.raises(ValueError, match="need training targets"):
        build_quantisers(NYUD, None)


def test_logits_to_outputs_shapes_and_no_mutation():
    torch.manual_seed(0)
    qs = {
        "semseg": ClassQuantiser(13),
        "depth": DepthBins(0.5, 10.0, 30),
        "normals": NormalCentres.uniform(20),
    }
    for spec, channels in zip(NYUD, (None, 1, 3)):
        logits = torch.randn(2, spec.num_outputs, 4, 5)
        before = logits.clone()
        out = logits_to_outputs(spec, logits, qs[spec.name])
        assert torch.equal(logits, before)
        assert set(out) == {"pred", "confidence", "label"}
        assert out["confidence"].shape == (2, 4, 5) and out["label"].dtype == torch.int64
        probs = logits.softmax(1)
        assert torch.allclose(out["confidence"], probs.max(1).values)
        if channels is None:
            assert torch.equal(out["pred"], logits.argmax(1))
        else:
            assert out["pred"].shape == (2, channels, 4, 5)
            assert torch.allclose(out["pred"], qs[spec.name].decode(logits))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.export internals
def test_logits_to_outputs_exports_to_onnx(tmp_path):
    """The graph exported as trainer/export.py does (dynamo, opset 18) matches eager within 1e-5
    in ONNX Runtime (about 3 s)."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    qs = {
        "semseg": ClassQuantiser(13),
        "depth": DepthBins(0.5, 10.0, 30),
        "normals": NormalCentres.uniform(20),
    }

    class Head(torch.nn.Module):
        def forward(self, a, b, c):
            outs = []
            for spec, logits in zip(NYUD, (a, b, c)):
                o = logits_to_outputs(spec, logits, qs[spec.name])
                outs += [o["pred"], o["confidence"], o["label"]]
            return tuple(outs)

    torch.manual_seed(0)
    inputs = tuple(torch.randn(1, s.num_outputs, 6, 8) for s in NYUD)
    path = tmp_path / "head.onnx"
    head = Head().eval()
    torch.onnx.export(head, inputs, str(path), input_names=["a", "b", "c"], opset_version=18, dynamo=True)
    onnx.checker.check_model(onnx.load(str(path)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: x.numpy() for n, x in zip(["a", "b", "c"], inputs)})
    expected = head(*inputs)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("quantiser", [DepthBins(0.5, 10.0, 30), NormalCentres.uniform(20)])
def test_device_copies_of_centres_are_made_once(quantiser: Quantiser) -> None:
    """On a GPU every loss call would otherwise copy the centres from the host (a blocking copy: the
    host waits for the GPU each step). The "meta" device stands in for the GPU here."""
    import copy
    import pickle

    probabilities = torch.empty(2, quantiser.num_classes, 4, 5, device="meta")
    first = quantiser._on("centres", probabilities)
    assert first.device.type == "meta" and quantiser._on("centres", probabilities) is first
    assert quantiser.decode_probabilities(probabilities).device.type == "meta"
    assert quantiser._on("centres", torch.empty(1)) is quantiser.centres  # CPU: the tensor itself
    quantiser.centres = quantiser.centres.clone()  # a replaced attribute is copied again
    assert quantiser._on("centres", probabilities) is not first
    for clone in (copy.deepcopy(quantiser), pickle.loads(pickle.dumps(quantiser))):
        assert "_device_copies" not in clone.__dict__
        assert torch.equal(clone.centres, quantiser.centres)
