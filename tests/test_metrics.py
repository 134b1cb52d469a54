"""Streaming meters and Delta_MTL against values derived by hand."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.metrics import (
    ANGLE_HIST_RESOLUTION,
    DepthMeter,
    EdgeMeter,
    MultiTaskMeter,
    NormalMeter,
    SalMeter,
    SegMeter,
    delta_mtl,
    make_meter,
)
from trainer.quantise import ClassQuantiser, DepthBins, NormalCentres, logits_to_outputs
from trainer.tasks import DATASET_TASKS

NYUD = DATASET_TASKS["nyud"]
PASCAL = DATASET_TASKS["pascal"]


def test_seg_miou_pacc_by_hand():
    """target [[0, 0, 1], [1, 2, -1]], pred [[0, 1, 1], [1, 1, 0]]; the last pixel is ignored.

    Valid (gt, pred) pairs: (0,0) (0,1) (1,1) (1,1) (2,1): 3 of 5 correct -> pAcc = 60 %.
    class 0: TP 1, FP 0, FN 1 -> 1/2; class 1: TP 2, FP 2, FN 0 -> 2/4; class 2: TP 0, FN 1 -> 0.
    mIoU = (0.5 + 0.5 + 0) / 3 = 33.33 %. With num_classes = 4, class 3 has union 0 and is skipped:
    the same mIoU.
    """
    target = torch.tensor([[[0, 0, 1], [1, 2, -1]]])
    pred = torch.tensor([[[0, 1, 1], [1, 1, 0]]])
    for num_classes in (3, 4):
        m = SegMeter(num_classes)
        m.add(pred, target)
        out = m.compute()
        assert out["pacc"] == pytest.approx(60.0)
        assert out["miou"] == pytest.approx(100.0 / 3)
    assert torch.equal(target, torch.tensor([[[0, 0, 1], [1, 2, -1]]]))  # input untouched


def test_depth_errors_by_hand():
    """target [2, 4, 0 (missing), 1], pred [3, 3, 5, 1.5] -> errors 1, 1, 0.5 on 3 pixels.

    abs = 2.5 / 3 = 0.8333; rel = (1/2 + 1/4 + 0.5/1) / 3 = 1.25 / 3 = 0.41667;
    rmse = sqrt((1 + 1 + 0.25) / 3) = sqrt(0.75) = 0.86603.
    """
    m = DepthMeter()
    m.add(
        torch.tensor([3.0, 3.0, 5.0, 1.5]).view(1, 1, 2, 2),
        torch.tensor([2.0, 4.0, 0.0, 1.0]).view(1, 1, 2, 2),
    )
    out = m.compute()
    assert out["abs_err"] == pytest.approx(2.5 / 3)
    assert out["rel_err"] == pytest.approx(1.25 / 3)
    assert out["rmse"] == pytest.approx(math.sqrt(0.75))


def _normals_at(angles_deg: list[float], scale: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Prediction (sin a, 0, cos a) * scale (not unit: the meter normalises) vs target +z; one extra
    pixel with a zero target (missing)."""
    a = torch.deg2rad(torch.tensor(angles_deg, dtype=torch.float64))
    pred = torch.stack([a.sin(), torch.zeros_like(a), a.cos()]) * scale  # (3, N)
    target = torch.zeros(3, len(angles_deg)).double()
    target[2] = 1.0
    pred = torch.cat([pred, torch.tensor([[1.0], [0.0], [0.0]], dtype=torch.float64)], dim=1)
    target = torch.cat([target, torch.zeros(3, 1, dtype=torch.float64)], dim=1)
    return pred.view(1, 3, 1, -1), target.view(1, 3, 1, -1)


def test_normal_angles_by_hand():
    """Angles 0, 10, 20, 45 degrees (+ one missing pixel, skipped).

    mean = 75 / 4 = 18.75; median = (10 + 20) / 2 = 15; rmse = sqrt((0 + 100 + 400 + 2025) / 4)
    = sqrt(631.25) = 25.1247; < 11.25: {0, 10} = 50 %; < 22.5: {0, 10, 20} = 75 %; < 30: 75 %.
    Odd count (0, 10, 20): median = 10. Median tolerance: half the 0.01 degree histogram bin.
    """
    m = NormalMeter()
    m.add(*_normals_at([0.0, 10.0, 20.0, 45.0]))
    out = m.compute()
    assert out["mean_angle"] == pytest.approx(18.75)
    assert out["median_angle"] == pytest.approx(15.0, abs=ANGLE_HIST_RESOLUTION / 2)
    assert out["rmse_angle"] == pytest.approx(math.sqrt(631.25))
    assert out["within_11_25"] == pytest.approx(50.0)
    assert out["within_22_5"] == pytest.approx(75.0)
    assert out["within_30"] == pytest.approx(75.0)
    odd = NormalMeter()
    odd.add(*_normals_at([0.0, 10.0, 20.0]))
    assert odd.compute()["median_angle"] == pytest.approx(10.0, abs=ANGLE_HIST_RESOLUTION / 2)


def test_edge_odsf_by_hand():
    """prob [0.9, 0.8, 0.3, 0.6, 0.1 | 0.95], target [1, 1, 1, 0, 0 | -1 (ignored)].

    edge where p >= t:  t <= 0.1: TP 3 FP 2 -> P 3/5, R 1, F 0.75;  0.1 < t <= 0.3: TP 3 FP 1 ->
    P 3/4, R 1, F = 1.5 / 1.75 = 6/7;  0.3 < t <= 0.6: TP 2 FP 1 FN 1 -> F 2/3;  0.6 < t <= 0.8:
    TP 2 FP 0 FN 1 -> F 0.8;  0.8 < t <= 0.9: F 0.5.  odsF = 6/7 = 85.714 %. Were the ignored
    0.95 pixel counted it would add an FP everywhere (max F 0.75).
    """
    m = EdgeMeter()
    m.add(torch.tensor([[[0.9, 0.8, 0.3, 0.6, 0.1, 0.95]]]), torch.tensor([[[1, 1, 1, 0, 0, -1]]]))
    assert m.compute()["odsf"] == pytest.approx(600.0 / 7)


def test_edge_tolerance_by_dilation():
    """GT edge at column 2, predicted edge (p = 0.9) at column 3: pixel-exact matching finds no TP
    (odsF 0); with tolerance_px = 1 both match (P = R = 1, odsF 100 %)."""
    prob = torch.tensor([[[0.0, 0.0, 0.0, 0.9, 0.0]]])
    target = torch.tensor([[[0, 0, 1, 0, 0]]])
    exact, tolerant = EdgeMeter(), EdgeMeter(tolerance_px=1)
    exact.add(prob, target)
    tolerant.add(prob, target)
    assert exact.compute()["odsf"] == 0.0
    assert tolerant.compute()["odsf"] == pytest.approx(100.0)


def test_saliency_maxf_and_iou_by_hand():
    """prob [0.9, 0.6, 0.4, 0.2], target [1, 0, 1, 0], beta^2 = 0.3, F = 1.3 P R / (0.3 P + R).

    IoU at 0.5: fg {0.9, 0.6}: TP 1 FP 1 FN 1 -> 1/3 = 33.33 %.
    t <= 0.2: P 1/2 R 1 -> 0.5652; 0.2 < t <= 0.4: P 2/3 R 1 -> 0.7222; 0.4 < t <= 0.6: P 1/2
    R 1/2 -> 0.5; 0.6 < t <= 0.9: P 1 R 1/2 -> 0.65 / 0.8 = 0.8125. maxF = 81.25 %.
    Updating with the logits_to_outputs dict (label + confidence) gives the same numbers.
    """
    prob = torch.tensor([[[0.9, 0.6, 0.4, 0.2]]])
    target = torch.tensor([[[1, 0, 1, 0]]])
    m = SalMeter()
    m.add(prob, target)
    out = m.compute()
    assert out["miou"] == pytest.approx(100.0 / 3)
    assert out["max_f"] == pytest.approx(81.25)
    label = (prob > 0.5).long()
    confidence = torch.where(label == 1, prob, 1 - prob)
    via_dict = SalMeter()
    via_dict.update({"pred": label, "confidence": confidence, "label": label}, target)
    assert via_dict.compute() == pytest.approx(out)


def test_streaming_equals_one_pass():
    """Two updates == one update on the concatenation, for every meter (pixel-pooled statistics)."""
    g = torch.Generator().manual_seed(0)
    b, h, w = 4, 6, 7
    seg_t = torch.randint(-1, 5, (b, h, w), generator=g)
    seg_p = torch.randint(0, 5, (b, h, w), generator=g)
    depth_t = torch.rand(b, 1, h, w, generator=g) * 5 * (torch.rand(b, 1, h, w, generator=g) > 0.2)
    depth_p = torch.rand(b, 1, h, w, generator=g) * 5
    norm_t = torch.randn(b, 3, h, w, generator=g) * (torch.rand(b, 1, h, w, generator=g) > 0.2)
    norm_p = torch.randn(b, 3, h, w, generator=g)
    bin_t = torch.randint(-1, 2, (b, h, w), generator=g)
    prob = torch.rand(b, h, w, generator=g)
    cases = [
        (lambda: SegMeter(5), seg_p, seg_t),
        (DepthMeter, depth_p, depth_t),
        (NormalMeter, norm_p, norm_t),
        (EdgeMeter, prob, bin_t),
        (lambda: EdgeMeter(tolerance_px=1), prob, bin_t),
        (SalMeter, prob, bin_t),
    ]
    for make, pred, target in cases:
        one, two = make(), make()
        one.add(pred, target)
        two.add(pred[:1], target[:1])
        two.add(pred[1:], target[1:])
        assert two.compute() == pytest.approx(one.compute()), make
        two.reset()
        assert all(math.isnan(v) for v in two.compute().values())


def test_make_meter_by_kind_and_metrics():
    kinds = [type(make_meter(s)).__name__ for s in PASCAL]
    assert kinds == ["SegMeter", "SegMeter", "NormalMeter", "SalMeter", "EdgeMeter"]
    assert [type(make_meter(s)).__name__ for s in NYUD] == ["SegMeter", "DepthMeter", "NormalMeter"]


def test_multitask_meter_keys_follow_specs():
    torch.manual_seed(0)
    qs = {
        "semseg": ClassQuantiser(13),
        "depth": DepthBins(0.5, 10.0, 30),
        "normals": NormalCentres.uniform(20),
    }
    batch = {
        "semseg": torch.randint(-1, 13, (2, 4, 5)),
        "depth": torch.rand(2, 1, 4, 5) * 5,
        "normals": torch.nn.functional.normalize(torch.randn(2, 3, 4, 5), dim=1),
    }
    outputs = {s.name: logits_to_outputs(s, torch.randn(2, s.num_outputs, 4, 5), qs[s.name]) for s in NYUD}
    meter = MultiTaskMeter(NYUD)
    meter.update(outputs, batch)
    result = meter.compute()
    assert {t: list(m) for t, m in result.items()} == {s.name: [x.name for x in s.metrics] for s in NYUD}
    assert all(math.isfinite(v) for m in result.values() for v in m.values())


def test_delta_mtl_by_hand():
    """semseg mIoU 40 vs 50: (40 - 50) / 50 = -0.2; depth abs_err 0.4 vs 0.5 (lower is better):
    -(0.4 - 0.5) / 0.5 = +0.2; normals mean_angle 33 vs 30: -(3 / 30) = -0.1. pAcc is only in the
    results and is skipped. Delta = (-0.2 + 0.2 - 0.1) / 3 * 100 = -3.333 %."""
    metrics = {
        "semseg": {"miou": 40.0, "pacc": 70.0},
        "depth": {"abs_err": 0.4},
        "normals": {"mean_angle": 33.0},
    }
    reference = {"semseg": {"miou": 50.0}, "depth": {"abs_err": 0.5}, "normals": {"mean_angle": 30.0}}
    assert delta_mtl(metrics, reference, NYUD) == pytest.approx(-10.0 / 3)
    with pytest.raises(ValueError, match="is 0"):
        delta_mtl(metrics, {"semseg": {"miou": 0.0}}, NYUD)
    with pytest.raises(ValueError, match="no metric"):
        delta_mtl(metrics, {"semseg": {"pacc": 1.0}, "other": {"x": 1.0}}, NYUD[1:])


def test_delta_mtl_reproduces_paper_nyud_one_label_mtl_baseline():
    """Paper Table 1, NYUD-v2 one-label, MTL baseline vs STL.

    Three headline metrics (method doc): mIoU +(30.92 - 29.28) / 29.28 = +0.056011; AbS
    -(0.5982 - 0.7182) / 0.7182 = +0.167084; mErr -(31.85 - 30.20) / 30.20 = -0.054636;
    mean = 0.168460 / 3 -> +5.6153 %. (The paper's +0.11 is over all nine metrics of Table 1.)

    All nine: mIoU +0.056011, pAcc +(58.23 - 55.41) / 55.41 = +0.050893, AbS +0.167084, rmse
    -(0.8544 - 1.0151) / 1.0151 = +0.158310, mErr -(31.8509 - 30.1971) / 30.1971 = -0.054767, angle
    rmse -(38.6313 - 37.7115) / 37.7115 = -0.024390, 11.25 (19.7083 - 23.1532) / 23.1532 = -0.148787,
    22.5 (41.2614 - 46.4046) / 46.4046 = -0.110834, 30 (53.6381 - 58.5216) / 58.5216 = -0.083448;
    sum 0.010072 / 9 -> +0.1119 %, the paper's +0.11.
    """
    stl = {"semseg": {"miou": 29.28}, "depth": {"abs_err": 0.7182}, "normals": {"mean_angle": 30.20}}
    mtl = {"semseg": {"miou": 30.92}, "depth": {"abs_err": 0.5982}, "normals": {"mean_angle": 31.85}}
    assert delta_mtl(mtl, stl, NYUD) == pytest.approx(5.6153, abs=1e-4)
    stl9 = {
        "semseg": {"miou": 29.28, "pacc": 55.41},
        "depth": {"abs_err": 0.7182, "rmse": 1.0151},
        "normals": {
            "mean_angle": 30.1971,
            "rmse_angle": 37.7115,
            "within_11_25": 23.1532,
            "within_22_5": 46.4046,
            "within_30": 58.5216,
        },
    }
    mtl9 = {
        "semseg": {"miou": 30.92, "pacc": 58.23},
        "depth": {"abs_err": 0.5982, "rmse": 0.8544},
        "normals": {
            "mean_angle": 31.8509,
            "rmse_angle": 38.6313,
            "within_11_25": 19.7083,
            "within_22_5": 41.2614,
            "within_30": 53.6381,
        },
    }
    assert delta_mtl(mtl9, stl9, NYUD) == pytest.approx(0.1119, abs=1e-4)
    assert round(delta_mtl(mtl9, stl9, NYUD), 2) == 0.11
