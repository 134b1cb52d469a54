"""Streaming evaluation meters, one per task kind, and Delta_MTL.

Every meter follows ``reset() / update(outputs, target) / compute()``:

* ``update(outputs, target)`` takes the dict of ``trainer.quantise.logits_to_outputs`` (``pred``,
  ``confidence``, ``label``; an optional ``probabilities`` (B, C_p, H, W) is preferred where a
  meter needs a probability) and the ground-truth target in the sample layout of
  ``trainer/tasks.py``. ``add(...)`` takes plain tensors (documented per meter).
* Statistics are accumulated over ALL valid pixels of a split (one pass, pixel-pooled, not averaged
  per image); invalid pixels (class -1, depth <= 0, zero normal, edge -1) are skipped.
* Inputs are never mutated; tensors are detached and copied to the CPU in float64 / int64.
* ``compute()`` returns ``{metric: float}`` with the names of ``TaskSpec.metrics``; a meter that has
  seen no valid pixel returns NaN for each metric.

Units: mIoU, pAcc, within-angle ratios, odsF, maxF in percent; depth errors in target units
(metres / disparity); angles in degrees.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hitts_schema import delta_mtl as schema_delta_mtl
from trainer.tasks import MISSING_DEPTH, TaskSpec

PERCENT = 100.0
NUM_THRESHOLDS = 99
"""Probability thresholds t_j = j / (NUM_THRESHOLDS + 1), j = 1..99 (0.01 .. 0.99) for odsF / maxF."""
SAL_BETA_SQUARED = 0.3
"""beta^2 of the saliency F-measure (the multi-task repos' convention)."""
BINARY_THRESHOLD = 0.5
"""Foreground probability threshold of the saliency IoU."""
ANGLE_THRESHOLDS = (11.25, 22.5, 30.0)
ANGLE_HIST_RESOLUTION = 0.01
"""Normal angle errors are histogrammed on a 0.01 degree grid (rounded) for the streaming median."""
MAX_ANGLE = 180.0


def _cpu(x: Any, dtype: torch.dtype) -> torch.Tensor:
    """A detached CPU copy-or-view of a tensor / array in ``dtype`` (never written to)."""
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.cpu().to(dtype)


def _foreground_probability(outputs: Mapping[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """(B, H, W) probability of class 1 of a 2-class task.

    From ``outputs["probabilities"][:, 1]`` when present, otherwise recovered exactly from the
    max-softmax ``confidence`` and ``label``: p1 = confidence where label == 1, else 1 - confidence.
    A bare tensor is taken as the probability itself.
    """
    if isinstance(outputs, torch.Tensor):
        return outputs
    if "probabilities" in outputs:
        return outputs["probabilities"][:, 1]
    confidence, label = outputs["confidence"], outputs["label"]
    return torch.where(label == 1, confidence, 1.0 - confidence)


def _pred(outputs: Mapping[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
    return outputs if isinstance(outputs, torch.Tensor) else outputs["pred"]


def _thresholds() -> torch.Tensor:
    return torch.arange(1, NUM_THRESHOLDS + 1, dtype=torch.float64) / (NUM_THRESHOLDS + 1)


def _counts_at_thresholds(prob: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> tuple:
    """Per threshold t_j: (#positive pixels with p >= t_j, #negative pixels with p >= t_j).

    One bucketize + bincount + reversed cumsum (O(pixels), no loop over thresholds).
    """
    thr = _thresholds()
    k = torch.bucketize(prob, thr, right=True)  # number of thresholds <= p, in 0..n

    def at_least(mask: torch.Tensor) -> torch.Tensor:
        hist = torch.bincount(k[mask], minlength=NUM_THRESHOLDS + 1)
        return hist.flip(0).cumsum(0).flip(0)[1:]  # (n,): count with k >= j for j = 1..n

    return at_least(positive), at_least(negative)


def _f_measure(
    tp_pred: torch.Tensor, fp: torch.Tensor, tp_gt: torch.Tensor, fn: torch.Tensor, beta_squared: float
) -> torch.Tensor:
    """F_beta per threshold from precision = tp_pred / (tp_pred + fp) and recall = tp_gt / (tp_gt + fn)
    (tp_pred == tp_gt unless matching has a tolerance). Precision, recall and F are 0 where their
    denominators are 0. Fractions, not percent."""
    tp_pred, fp, tp_gt, fn = tp_pred.double(), fp.double(), tp_gt.double(), fn.double()
    zero = torch.zeros_like(tp_pred)
    precision = torch.where(tp_pred + fp > 0, tp_pred / (tp_pred + fp).clamp_min(1), zero)
    recall = torch.where(tp_gt + fn > 0, tp_gt / (tp_gt + fn).clamp_min(1), zero)
    denom = beta_squared * precision + recall
    return torch.where(
        denom > 0, (1 + beta_squared) * precision * recall / torch.where(denom > 0, denom, 1.0), zero
    )


class Meter:
    """Base of the streaming meters."""

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, outputs: Mapping[str, torch.Tensor] | torch.Tensor, target: torch.Tensor) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError


class SegMeter(Meter):
    """Semantic segmentation (also human parts): confusion matrix over the split, by bincount.

    add(pred (B, H, W) int class, target (B, H, W) int, -1 / out-of-range = ignore).
    ``miou``: mean over classes with union (TP + FP + FN) > 0 of TP / union, percent (the MTAN
    ``nanmean`` convention: a class absent from both GT and prediction is skipped).
    ``pacc``: correct / valid pixels, percent.
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.reset()

    def reset(self) -> None:
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)  # (gt, pred)

    def update(self, outputs: Mapping[str, torch.Tensor] | torch.Tensor, target: torch.Tensor) -> None:
        self.add(_pred(outputs), target)

    def add(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred, target = _cpu(pred, torch.int64).reshape(-1), _cpu(target, torch.int64).reshape(-1)
        if pred.shape != target.shape:
            raise ValueError(f"prediction has {pred.numel()} pixels, target {target.numel()}")
        c = self.num_classes
        valid = (target >= 0) & (target < c)
        p, t = pred[valid], target[valid]
        if ((p < 0) | (p >= c)).any():
            raise ValueError(f"predicted classes must lie in [0, {c})")
        self.confusion += torch.bincount(t * c + p, minlength=c * c).reshape(c, c)

    def compute(self) -> dict[str, float]:
        cm = self.confusion.double()
        total = cm.sum()
        if total == 0:
            return {"miou": math.nan, "pacc": math.nan}
        tp = cm.diag()
        union = cm.sum(0) + cm.sum(1) - tp
        present = union > 0
        miou = (tp[present] / union[present]).mean().item() * PERCENT
        pacc = (tp.sum() / total).item() * PERCENT
        return {"miou": miou, "pacc": pacc}


class DepthMeter(Meter):
    """Depth over pixels with a finite target > 0 (MTAN / XTC convention, pixel-pooled over the split).

    add(pred (B, 1, H, W) or (B, H, W), target of the same number of pixels).
    ``abs_err`` = mean |p - t|, ``rel_err`` = mean |p - t| / t, ``rmse`` = sqrt(mean (p - t)^2).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.sum_abs = 0.0
        self.sum_rel = 0.0
        self.sum_sq = 0.0

    def update(self, outputs: Mapping[str, torch.Tensor] | torch.Tensor, target: torch.Tensor) -> None:
        self.add(_pred(outputs), target)

    def add(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        p, t = _cpu(pred, torch.float64).reshape(-1), _cpu(target, torch.float64).reshape(-1)
        if p.shape != t.shape:
            raise ValueError(f"prediction has {p.numel()} pixels, target {t.numel()}")
        valid = torch.isfinite(t) & (t > MISSING_DEPTH)
        err = (p[valid] - t[valid]).abs()
        self.count += int(valid.sum())
        self.sum_abs += err.sum().item()
        self.sum_rel += (err / t[valid]).sum().item()
        self.sum_sq += (err * err).sum().item()

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            return {"abs_err": math.nan, "rel_err": math.nan, "rmse": math.nan}
        n = self.count
        return {"abs_err": self.sum_abs / n, "rel_err": self.sum_rel / n, "rmse": math.sqrt(self.sum_sq / n)}


class NormalMeter(Meter):
    """Surface normals: angle between the normalised prediction and the target, in degrees.

    add(pred (B, 3, H, W), target (B, 3, H, W)); pixels whose target is the zero vector or
    non-finite are skipped. Over all valid pixels of the split: ``mean_angle``, ``median_angle``,
    ``rmse_angle`` (sqrt of the mean squared angle), ``within_11_25`` / ``within_22_5`` /
    ``within_30`` (percent of pixels with angle strictly below the threshold).
    The median is read from a histogram of the angles rounded to ``ANGLE_HIST_RESOLUTION``
    (0.01 degree): exact up to +-0.005 degree; for an even count it is the mean of the two
    middle values. Mean, rmse and ratios are exact.
    """

    def __init__(self) -> None:
        self.num_bins = round(MAX_ANGLE / ANGLE_HIST_RESOLUTION) + 1
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.sum_angle = 0.0
        self.sum_sq = 0.0
        self.within = [0] * len(ANGLE_THRESHOLDS)
        self.hist = torch.zeros(self.num_bins, dtype=torch.int64)

    def update(self, outputs: Mapping[str, torch.Tensor] | torch.Tensor, target: torch.Tensor) -> None:
        self.add(_pred(outputs), target)

    def add(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        p = _cpu(pred, torch.float64).movedim(-3, -1).reshape(-1, 3)
        t = _cpu(target, torch.float64).movedim(-3, -1).reshape(-1, 3)
        if p.shape != t.shape:
            raise ValueError(f"prediction has {p.shape[0]} pixels, target {t.shape[0]}")
        t_norm = t.norm(dim=1)
        valid = torch.isfinite(t).all(dim=1) & (t_norm > 0)
        p, t = p[valid], t[valid] / t_norm[valid, None]
        p = p / p.norm(dim=1, keepdim=True).clamp_min(1e-12)
        angle = torch.rad2deg(torch.acos((p * t).sum(dim=1).clamp(-1.0, 1.0)))
        self.count += angle.numel()
        self.sum_angle += angle.sum().item()
        self.sum_sq += (angle * angle).sum().item()
        for i, thr in enumerate(ANGLE_THRESHOLDS):
            self.within[i] += int((angle < thr).sum())
        bins = torch.round(angle / ANGLE_HIST_RESOLUTION).long().clamp(0, self.num_bins - 1)
        self.hist += torch.bincount(bins, minlength=self.num_bins)

    def _median(self) -> float:
        cum = self.hist.cumsum(0)
        n = self.count
        # 1-based ranks of the middle element(s): (n+1)//2 and n//2+1 (equal when n is odd)
        lo = int(torch.searchsorted(cum, torch.tensor((n + 1) // 2)))
        hi = int(torch.searchsorted(cum, torch.tensor(n // 2 + 1)))
        return (lo + hi) / 2 * ANGLE_HIST_RESOLUTION

    def compute(self) -> dict[str, float]:
        keys = ("mean_angle", "median_angle", "rmse_angle", "within_11_25", "within_22_5", "within_30")
        if self.count == 0:
            return dict.fromkeys(keys, math.nan)
        n = self.count
        values = [self.sum_angle / n, self._median(), math.sqrt(self.sum_sq / n)]
        values += [w / n * PERCENT for w in self.within]
        return dict(zip(keys, values))


class EdgeMeter(Meter):
    """Edges: optimal dataset-scale F-measure (odsF), percent.

    add(prob (B, H, W) edge probability, target (B, H, W): 1 = edge, 0 = not, anything else (-1) ignored).
    For each threshold t_j (``NUM_THRESHOLDS`` = 99, 0.01 .. 0.99; edge where p >= t_j) TP / FP /
    FN are summed over the split; F = 2PR / (P + R) at each threshold; odsF = max over thresholds.

    This APPROXIMATES the BSDS odsF: no edge thinning (NMS) and no bipartite matching. With
    ``tolerance_px = r > 0`` a predicted edge pixel counts as TP if a GT edge lies within the
    (2r+1)^2 window (max-pool dilation of the GT; precision), and a GT edge pixel counts as
    matched if a predicted edge lies within it (dilation of the prediction; recall); a
    one-to-many approximation of the BSDS distance tolerance. ``tolerance_px = 0`` (default) is
    exact pixel-wise matching. Dilation stays inside each image; ignore pixels count nowhere.
    """

    def __init__(self, tolerance_px: int = 0) -> None:
        self.tolerance_px = int(tolerance_px)
        self.reset()

    def reset(self) -> None:
        self.tp_pred = torch.zeros(NUM_THRESHOLDS, dtype=torch.int64)  # predicted edges that match
        self.fp = torch.zeros(NUM_THRESHOLDS, dtype=torch.int64)
        self.tp_gt = torch.zeros(NUM_THRESHOLDS, dtype=torch.int64)  # GT edges that are matched
        self.fn = torch.zeros(NUM_THRESHOLDS, dtype=torch.int64)
        self.count = 0  # valid pixels seen

    def update(self, outputs: Mapping[str, torch.Tensor] | torch.Tensor, target: torch.Tensor) -> None:
        self.add(_foreground_probability(outputs), target)

    def add(self, prob: torch.Tensor, target: torch.Tensor) -> None:
        p, t = _cpu(prob, torch.float64), _cpu(target, torch.int64)
        if p.shape != t.shape:
            raise ValueError(f"edge probability {tuple(p.shape)} and target {tuple(t.shape)} differ")
        gt = t == 1
        valid = gt | (t == 0)  # anything but 0 / 1 (-1, 255) is ignored
        self.count += int(valid.sum())
        if self.tolerance_px == 0:
            tp, fp = _counts_at_thresholds(p, gt & valid, ~gt & valid)
            self.tp_pred += tp
            self.fp += fp
            self.tp_gt += tp
            self.fn += int(gt.sum()) - tp
            return
        size = 2 * self.tolerance_px + 1
        image_shape = (-1, 1, *t.shape[-2:])  # (B, 1, H, W) for max_pool2d
        p, gt, valid = p.reshape(image_shape), gt.reshape(image_shape), valid.reshape(image_shape)
        near_gt = F.max_pool2d(gt.double(), size, stride=1, padding=self.tolerance_px) > 0
        for j, thr in enumerate(_thresholds().tolist()):
            edge = (p >= thr) & valid
            near_edge = F.max_pool2d(edge.double(), size, stride=1, padding=self.tolerance_px) > 0
            self.tp_pred[j] += int((edge & near_gt).sum())
            self.fp[j] += int((edge & ~near_gt).sum())
            self.tp_gt[j] += int((gt & near_edge).sum())
            self.fn[j] += int((gt & ~near_edge).sum())

    def f_per_threshold(self) -> torch.Tensor:
        """(NUM_THRESHOLDS,) F-measure (beta = 1) at each threshold (fraction, not percent)."""
        return _f_measure(self.tp_pred, self.fp, self.tp_gt, self.fn, 1.0)

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            return {"odsf": math.nan}
        return {"odsf": self.f_per_threshold().max().item() * PERCENT}


class SalMeter(Meter):
    """Saliency (binary): ``max_f`` and ``miou``, percent, pooled over the split.

    add(prob (B, H, W) foreground probability, target (B, H, W): 1 = salient, 0 = not, anything else (-1) ignored).
    ``max_f``: max over the 99 thresholds (salient where p >= t_j) of the F-measure with
    beta^2 = 0.3 from split-level TP / FP / FN. ``miou``: foreground IoU TP / (TP + FP + FN) of the
    mask p >= 0.5 (a single binary IoU; some repos instead take the best IoU over thresholds).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.tp = torch.zeros(NUM_THRESHOLDS, dtype=torch.int64)
        self.fp = torch.zeros(NUM_THRESHOLDS, dtype=torch.int64)
        self.num_pos = 0
        self.count = 0  # valid pixels seen
        self.iou_tp = self.iou_fp = self.iou_fn = 0

    def update(self, outputs: Mapping[str, torch.Tensor] | torch.Tensor, target: torch.Tensor) -> None:
        self.add(_foreground_probability(outputs), target)

    def add(self, prob: torch.Tensor, target: torch.Tensor) -> None:
        p, t = _cpu(prob, torch.float64), _cpu(target, torch.int64)
        if p.shape != t.shape:
            raise ValueError(f"saliency probability {tuple(p.shape)} and target {tuple(t.shape)} differ")
        pos = t == 1
        valid = pos | (t == 0)  # anything but 0 / 1 (-1, 255) is ignored
        neg = valid & ~pos
        self.count += int(valid.sum())
        tp, fp = _counts_at_thresholds(p, pos, neg)
        self.tp += tp
        self.fp += fp
        self.num_pos += int(pos.sum())
        fg = p >= BINARY_THRESHOLD
        self.iou_tp += int((fg & pos).sum())
        self.iou_fp += int((fg & neg).sum())
        self.iou_fn += int((~fg & pos).sum())

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            return {"miou": math.nan, "max_f": math.nan}
        fn = self.num_pos - self.tp
        max_f = _f_measure(self.tp, self.fp, self.tp, fn, SAL_BETA_SQUARED).max().item() * PERCENT
        union = self.iou_tp + self.iou_fp + self.iou_fn
        miou = self.iou_tp / union * PERCENT if union > 0 else math.nan
        return {"miou": miou, "max_f": max_f}


def make_meter(spec: TaskSpec, edge_tolerance_px: int = 0) -> Meter:
    """The meter of a task, chosen by its kind and metric names (never by task name):
    segmentation -> SegMeter; depth -> DepthMeter; normals -> NormalMeter; binary with ``odsf``
    -> EdgeMeter; binary with ``max_f`` -> SalMeter; any other binary -> SegMeter(2)."""
    names = {m.name for m in spec.metrics}
    if spec.kind == "depth":
        return DepthMeter()
    if spec.kind == "normals":
        return NormalMeter()
    if spec.kind == "binary" and "odsf" in names:
        return EdgeMeter(edge_tolerance_px)
    if spec.kind == "binary" and "max_f" in names:
        return SalMeter()
    return SegMeter(spec.num_outputs)


class MultiTaskMeter:
    """One meter per task.

    update(outputs_by_task: {task: logits_to_outputs dict}, batch: {task: target, ...}).
    compute() -> {task: {metric: float}} in ``specs`` order.
    """

    def __init__(self, specs: Iterable[TaskSpec], edge_tolerance_px: int = 0) -> None:
        self.specs = tuple(specs)
        self.meters = {s.name: make_meter(s, edge_tolerance_px) for s in self.specs}

    def reset(self) -> None:
        for m in self.meters.values():
            m.reset()

    def update(
        self, outputs_by_task: Mapping[str, Mapping[str, torch.Tensor]], batch: Mapping[str, Any]
    ) -> None:
        for name, meter in self.meters.items():
            if name not in outputs_by_task or name not in batch:
                raise KeyError(f"task {name!r} missing from the model outputs or the batch")
            meter.update(outputs_by_task[name], batch[name])

    def compute(self) -> dict[str, dict[str, float]]:
        return {name: meter.compute() for name, meter in self.meters.items()}


def delta_mtl(
    metrics: Mapping[str, Mapping[str, float]],
    reference: Mapping[str, Mapping[str, float]],
    specs: Iterable[TaskSpec],
    metric_set: Iterable[tuple[str, str]] | None = None,
) -> float:
    """Delta_MTL in percent against the STL ``reference`` (``hitts_schema.delta_mtl``).

    metric_set: the paper's (task, metric) pairs (``hitts_schema.metric_set_for``); None = every
        metric declared in the ``specs`` that both dicts hold (the secondary all-metrics figure).
    """
    if metric_set is None:
        metric_set = [
            (s.name, m.name)
            for s in specs
            for m in s.metrics
            if m.name in metrics.get(s.name, {}) and m.name in reference.get(s.name, {})
        ]
    return schema_delta_mtl(metrics, reference, metric_set)


__all__ = [
    "DepthMeter",
    "EdgeMeter",
    "Meter",
    "MultiTaskMeter",
    "NormalMeter",
    "SalMeter",
    "SegMeter",
    "delta_mtl",
    "make_meter",
]
