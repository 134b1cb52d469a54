"""Task losses (paper Appendix A.1) and the HiTTs objectives L_s, L_p, L_f (Sec. 3.3).

Per-pixel task loss (``pixel_task_loss``)::

    L_i = CE(G'_i, index) + lambda_i * L_reg(decode(G'_i), reg_target)

with lambda_i = ``TaskSpec.reg_weight`` (0.1 for depth / normals, 0 otherwise), L_reg = L1 for depth
(|pred - target|, target units) and 1 - cos(pred, target) for normals (the paper's "angle/cosine
loss"; the cosine form is smooth at zero error where the arc-cosine angle is not).

Objectives (``compute_losses``), T = ``len(specs)`` (all tasks, labelled in the batch or not):

* ``L_s = 1/T sum_i L_s/i``; ``L_s/i`` = mean of L_i over the valid pixels of the images where task
  i is labelled (``batch["labelled"]``, alpha), pooled over the batch. 0 if there is none.
* ``L_p = 1/T sum_i L_p/i``; ``L_p/i`` = sum of M_p * L_i(G', pseudo) over the pixels of the images
  where task i is NOT labelled, divided by the number of pixels of those images (the literal mean
  of M_p (.) L: masked-out pixels count in the denominator). 0 if every image labels task i.
  For depth / normals the regression target of a pseudo label is the centre of its bin / cluster
  (``quantiser.index_to_value``).
* ``L_f = 1/T sum_i L_f/i``; ``L_f/i`` = mean over images and pixels of w * MSE(F'_i, F~_i), the MSE
  averaged over the D channels at each pixel, w = 1 where task i is labelled and M_f_i where it
  is not. F'_i is resized bilinearly (align_corners=False) to F~_i's (h, w) if they differ.
* ``total = L_s (+ L_p) (+ L_f)``, unweighted as in the paper.

Masking never multiplies a possibly non-finite value by 0: every target of an unlabelled task,
every ignored pixel and every unused pseudo label / mask is replaced with ``torch.where`` BEFORE
any arithmetic, so NaN / inf in them reaches neither the loss nor its gradient. Everything is
vectorised over the batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from trainer.quantise import NORM_EPS, Quantiser
from trainer.tasks import IGNORE_LABEL, TaskSpec

AUTHORS_CE_WEIGHT = 0.1
"""Authors' code: L_i = L_reg + 0.1 x CE for depth / normals (the paper's Eq. 13: CE + 0.1 x L_reg)."""
AUTHORS_TASK_WEIGHTS = {"depth": 0.6}
"""Authors' NYUD config: task weights semseg 1, depth 0.6, normals 1 (the paper weighs every task 1)."""
LOSS_FORMS = ("paper", "authors")


def loss_weights(spec: TaskSpec, form: str = "paper") -> tuple[float, float, float]:
    """(CE weight, L_reg weight, task weight) of a task under the loss ``form`` ("paper" | "authors")."""
    if form not in LOSS_FORMS:
        raise ValueError(f"unknown loss form {form!r}; valid: {list(LOSS_FORMS)}")
    if form == "paper" or spec.reg_weight == 0:
        return 1.0, spec.reg_weight, 1.0 if form == "paper" else AUTHORS_TASK_WEIGHTS.get(spec.name, 1.0)
    return AUTHORS_CE_WEIGHT, 1.0, AUTHORS_TASK_WEIGHTS.get(spec.name, 1.0)


def _regression_loss(spec: TaskSpec, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel L_reg (B, H, W): L1 for depth, 1 - cosine for normals. ``target`` must be finite."""
    if spec.kind == "depth":
        return (pred - target).abs().mean(dim=1)
    unit = target / torch.sqrt((target * target).sum(dim=1, keepdim=True)).clamp_min(NORM_EPS)
    return 1.0 - (pred * unit).sum(dim=1)


def pixel_task_loss(
    spec: TaskSpec,
    logits: torch.Tensor,
    class_index: torch.Tensor,
    reg_target: torch.Tensor | None,
    quantiser: Quantiser,
    form: str = "paper",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel mixed loss L_i of one task (``form``: see ``loss_weights``; the task weight is not
    applied here).

    logits: G' (B, C_p, H, W).
    class_index: (B, H, W) int64 class / bin / centre index, -1 (or out of range) = no label.
    reg_target: depth (B, 1, H, W) / normals (B, 3, H, W) target for the regression part, or None
        (classification tasks, or to skip the regression term). Only read where ``class_index`` is
        valid; other pixels may hold anything (NaN included).
    Returns ``(loss (B, H, W), valid (B, H, W) bool)``; ``loss`` is exactly 0 where not valid.
    """
    if logits.shape[-2:] != class_index.shape[-2:]:
        raise ValueError(
            f"task {spec.name!r}: logits {tuple(logits.shape)} and target {tuple(class_index.shape)} differ in size"
        )
    valid = (class_index >= 0) & (class_index < logits.shape[1])
    safe_index = torch.where(valid, class_index, torch.zeros_like(class_index))
    ce_weight, reg_weight, _ = loss_weights(spec, form)
    loss = F.cross_entropy(logits, safe_index, reduction="none")  # (B, H, W)
    if ce_weight != 1.0:
        loss = ce_weight * loss
    if reg_weight > 0 and reg_target is not None:
        safe_target = torch.where(valid.unsqueeze(1), reg_target, torch.zeros_like(reg_target))
        pred = quantiser.decode(logits)  # (B, 1|3, H, W)
        loss = loss + reg_weight * _regression_loss(spec, pred, safe_target)
    return torch.where(valid, loss, torch.zeros_like(loss)), valid


def _ignore_where(keep: torch.Tensor, target: torch.Tensor, ignore_value: float | int) -> torch.Tensor:
    """``target`` where ``keep`` (B,) is True, else the task's ignore value (no arithmetic on target)."""
    keep = keep.view(-1, *([1] * (target.ndim - 1)))
    return torch.where(keep, target, torch.full_like(target, ignore_value))


def _ground_truth(
    spec: TaskSpec, target: torch.Tensor, labelled: torch.Tensor, quantiser: Quantiser, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(class index (B, H, W), regression target or None) of the ground truth, with the task's ignore
    value on the images that do not label it (no arithmetic on their targets)."""
    target = _ignore_where(labelled, target, quantiser.ignore_value)
    return quantiser.to_index(target), None if spec.is_classification else target.to(dtype)


def _supervised_term(
    spec: TaskSpec,
    logits: torch.Tensor,
    target: torch.Tensor,
    labelled: torch.Tensor,
    quantiser: Quantiser,
    form: str = "paper",
) -> torch.Tensor:
    """L_s/i: mean of L_i over the valid pixels of the labelled images (0 if none)."""
    index, reg_target = _ground_truth(spec, target, labelled, quantiser, logits.dtype)
    loss, valid = pixel_task_loss(spec, logits, index, reg_target, quantiser, form)
    # loss is exactly 0 off the valid pixels: with none, 0 / 1 = 0.0, still on the graph
    return loss.sum() / valid.sum().clamp_min(1)


def _supervised_and_pseudo_terms(
    spec: TaskSpec,
    logits: torch.Tensor,
    target: torch.Tensor,
    pseudo: torch.Tensor,
    pseudo_mask: torch.Tensor,
    labelled: torch.Tensor,
    quantiser: Quantiser,
    form: str = "paper",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_s/i, L_p/i) from one pass of L_i over the batch.

    An image either labels task i (its ground truth enters L_s/i) or does not (its pseudo label enters
    L_p/i), so the per-pixel loss is computed once, with each image's own target: the values of
    :func:`_supervised_term` and of a pass over the pseudo labels alone, bit for bit, at half the cost
    (L_i at full resolution is the larger part of a CPU training step's loss time).

    L_p/i: sum of M_p * L_i(G', pseudo) over the unlabelled images / their pixel count (0 if none).
    """
    gt_index, gt_value = _ground_truth(spec, target, labelled, quantiser, logits.dtype)
    pseudo_index = _ignore_where(~labelled, pseudo.long(), IGNORE_LABEL)
    per_image = labelled.view(-1, 1, 1)
    index = torch.where(per_image, gt_index, pseudo_index)
    reg_target = None
    if gt_value is not None:
        pseudo_value = quantiser.index_to_value(pseudo_index).to(logits.dtype)
        reg_target = torch.where(per_image.unsqueeze(1), gt_value, pseudo_value)
    loss, valid = pixel_task_loss(spec, logits, index, reg_target, quantiser, form)
    supervised = valid & per_image
    zero = torch.zeros_like(loss)
    l_s = torch.where(supervised, loss, zero).sum() / supervised.sum().clamp_min(1)
    mask = pseudo_mask.to(loss.dtype)
    mask = torch.where(valid & ~per_image & torch.isfinite(mask), mask, zero)  # 0 on labelled images
    # pixels of the unlabelled images, counted on the device (no host sync)
    num_pixels = ((~labelled).sum() * (loss.shape[-2] * loss.shape[-1])).clamp_min(1)
    return l_s, (mask * loss).sum() / num_pixels


def _feature_term(
    features: torch.Tensor, target: torch.Tensor, soft_mask: torch.Tensor, labelled: torch.Tensor
) -> torch.Tensor:
    """L_f/i: mean over (B, h, w) of w * mean_D (F' - F~)^2, w = 1 (labelled) or M_f (unlabelled)."""
    if features.shape[1] != target.shape[1]:
        raise ValueError(
            f"task features have {features.shape[1]} channels, feature targets {target.shape[1]}"
        )
    if features.shape[-2:] != target.shape[-2:]:
        features = F.interpolate(features, size=target.shape[-2:], mode="bilinear", align_corners=False)
    target = target.to(features.dtype)
    mse = ((features - target) ** 2).mean(dim=1)  # (B, h, w)
    weight = torch.where(labelled.view(-1, 1, 1), torch.ones_like(mse), soft_mask.to(mse.dtype))
    return (weight * mse).mean()


def _task_terms(
    spec: TaskSpec,
    outputs: Mapping[str, Any],
    batch: Mapping[str, Any],
    labelled: torch.Tensor,
    quantiser: Quantiser,
    use_pseudo: bool,
    use_features: bool,
    loss_form: str,
) -> dict[str, torch.Tensor]:
    """``L_s/<task>`` (and ``L_p/<task>``, ``L_f/<task>``) of one task; ``labelled`` (B,) bool."""
    name = spec.name
    logits = outputs["logits"][name]
    labelled = labelled.to(logits.device)
    task_weight = loss_weights(spec, loss_form)[2]

    def weighted(term: torch.Tensor) -> torch.Tensor:
        return term if task_weight == 1.0 else task_weight * term

    if use_pseudo:
        pseudo, pseudo_mask = batch[f"pseudo/{name}"], batch[f"pseudo_mask/{name}"]
        l_s, l_p = _supervised_and_pseudo_terms(
            spec, logits, batch[name], pseudo, pseudo_mask, labelled, quantiser, loss_form
        )
        terms = {f"L_s/{name}": weighted(l_s), f"L_p/{name}": weighted(l_p)}
    else:
        terms = {
            f"L_s/{name}": weighted(
                _supervised_term(spec, logits, batch[name], labelled, quantiser, loss_form)
            )
        }
    if use_features:
        target, mask = batch[f"feature_target/{name}"], batch[f"feature_mask/{name}"]
        terms[f"L_f/{name}"] = _feature_term(outputs["task_features"][name], target, mask, labelled)
    return terms


def compute_losses(
    outputs: Mapping[str, Any],
    batch: Mapping[str, Any],
    specs: Iterable[TaskSpec],
    quantisers: Mapping[str, Quantiser],
    use_pseudo: bool = False,
    use_features: bool = False,
    task_order: Sequence[str] | None = None,
    loss_form: str = "paper",
) -> dict[str, torch.Tensor]:
    """All loss terms of one batch (see the module docstring for each normaliser).

    outputs: the model output dict (``logits`` {task: (B, C_p, H, W)}; ``task_features`` {task:
        (B, D, h, w)} when ``use_features``).
    batch: collated samples: ``<task>`` targets, ``labelled`` (B, T) bool; for ``use_pseudo``
        ``pseudo/<task>`` (B, H, W) int and ``pseudo_mask/<task>`` (B, H, W) in {0, 1}; for
        ``use_features`` ``feature_target/<task>`` (B, D, h, w) and ``feature_mask/<task>`` (B, h, w).
    task_order: task names of the columns of ``batch["labelled"]`` (default: the ``specs`` order,
        i.e. ``DATASET_TASKS`` order).
    loss_form: "paper" or "authors" (``loss_weights``); the task weight scales L_s/<task> and L_p/<task>.
    Returns scalars: ``L_s/<task>``, ``L_s``, (``L_p/<task>``, ``L_p``), (``L_f/<task>``, ``L_f``),
    ``total``. A term with nothing to supervise is exactly 0.0.
    """
    specs = tuple(specs)
    order = list(task_order) if task_order is not None else [s.name for s in specs]
    labelled_all = torch.as_tensor(batch["labelled"]).bool()
    if labelled_all.ndim != 2 or labelled_all.shape[1] != len(order):
        raise ValueError(
            f"batch['labelled'] must be (B, {len(order)}) for tasks {order}, got {tuple(labelled_all.shape)}"
        )
    num_tasks = len(specs)
    losses: dict[str, torch.Tensor] = {}
    groups = ["L_s"] + (["L_p"] if use_pseudo else []) + (["L_f"] if use_features else [])
    for spec in specs:
        labelled = labelled_all[:, order.index(spec.name)]  # (B,) alpha_i
        losses.update(
            _task_terms(
                spec, outputs, batch, labelled, quantisers[spec.name], use_pseudo, use_features, loss_form
            )
        )
    total = None
    for group in groups:
        terms = [losses[f"{group}/{s.name}"] for s in specs]
        losses[group] = torch.stack(terms).sum() / num_tasks
        total = losses[group] if total is None else total + losses[group]
    losses["total"] = total
    return losses


__all__ = ["compute_losses", "loss_weights", "pixel_task_loss"]
