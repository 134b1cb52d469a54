"""A stage-2 training step of the shipped HiTTs on a CPU: what the one-pass L_s + L_p and the
channels-last model (``TrainConfig.channels_last_on_cpu``) each save.

The step is the real one at the shipped size (EfficientNet-Lite0, width 64, 288x384, batch 16, the
NYUD-v2 task set): forward, ``compute_losses`` with pseudo labels and feature targets on one-label
images (random, one task labelled per image), backward, Adam. Three forms, steps interleaved so
that load from other processes hits them alike:

* ``two passes, NCHW``: the loss as it was computed before the one-pass form: L_s (and L_f) by
  ``compute_losses``, then L_p from a second pass of ``pixel_task_loss`` over the pseudo labels;
* ``one pass, NCHW``: ``compute_losses`` today (``use_pseudo=True``);
* ``one pass, channels-last``: the model in channels-last memory, its outputs back to NCHW before
  the losses (what ``trainer.engine.train_step`` does with ``channels_last_on_cpu``).

Printed: the median step of each form and its speed-up over the first, measured in this one run.

    python benchmarks/bench_cpu_stage2_step.py [--threads 2] [--batch 16] [--steps 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from trainer.config import ModelConfig  # noqa: E402
from trainer.engine import fp32_outputs  # noqa: E402
from trainer.losses import compute_losses, pixel_task_loss  # noqa: E402
from trainer.models import build_model  # noqa: E402
from trainer.quantise import ClassQuantiser, DepthBins, NormalCentres  # noqa: E402
from trainer.tasks import IGNORE_LABEL, tasks_for  # noqa: E402

SHIPPED_MODEL = ModelConfig(
    arch="hitts", backbone="efficientnet_lite0", pretrained=False, width=64, gate_channel_scale=True
)
"""The shipped HiTTs' network (scripts/train_defaults.py with HITTS_SWITCHES); weights do not change the cost."""
DEPTH_RANGE_M = (0.5, 10.0)


def quantisers(specs) -> dict:
    def make(spec):
        if spec.kind == "depth":
            return DepthBins(*DEPTH_RANGE_M, spec.num_outputs)
        if spec.kind == "normals":
            return NormalCentres.uniform(spec.num_outputs)
        return ClassQuantiser(spec.num_outputs)

    return {s.name: make(s) for s in specs}


def stage2_batch(model, specs, batch: int, height: int, width: int) -> dict:
    """Random images and targets of a one-label stage-2 batch: ground truth, pseudo labels with
    masks and feature targets with soft masks, shaped as the model's outputs."""
    g = torch.Generator().manual_seed(0)
    image = torch.randn(batch, 3, height, width, generator=g)
    with torch.no_grad():
        features = model(image[:1])["task_features"]
    labelled = torch.zeros(batch, len(specs), dtype=torch.bool)
    labelled[torch.arange(batch), torch.randint(0, len(specs), (batch,), generator=g)] = True
    out = {"image": image, "labelled": labelled}
    for s in specs:
        if s.kind == "depth":
            out[s.name] = torch.rand(batch, 1, height, width, generator=g) * 5 + 0.5
        elif s.kind == "normals":
            out[s.name] = torch.nn.functional.normalize(
                torch.randn(batch, 3, height, width, generator=g), dim=1
            )
        else:
            out[s.name] = torch.randint(0, s.num_outputs, (batch, height, width), generator=g)
        out[f"pseudo/{s.name}"] = torch.randint(0, s.num_outputs, (batch, height, width), generator=g)
        out[f"pseudo_mask/{s.name}"] = (torch.rand(batch, height, width, generator=g) > 0.4).float()
        shape = (batch, *features[s.name].shape[1:])
        out[f"feature_target/{s.name}"] = torch.randn(shape, generator=g)
        out[f"feature_mask/{s.name}"] = torch.rand(batch, *shape[2:], generator=g)
    return out


def two_pass_losses(outputs: dict, batch: dict, specs, qs: dict) -> dict:
    """The earlier form: L_s and L_f as ``compute_losses``, then a second full-batch pass of L_i over
    the pseudo labels of the images that do not label the task."""
    losses = compute_losses(outputs, batch, specs, qs, use_features=True)
    pseudo_terms = []
    for i, s in enumerate(specs):
        unlabelled = ~batch["labelled"][:, i]
        pseudo = torch.where(unlabelled.view(-1, 1, 1), batch[f"pseudo/{s.name}"], IGNORE_LABEL)
        centre = None if s.is_classification else qs[s.name].index_to_value(pseudo)
        loss, valid = pixel_task_loss(s, outputs["logits"][s.name], pseudo, centre, qs[s.name])
        mask = torch.where(valid, batch[f"pseudo_mask/{s.name}"], 0.0)
        pseudo_terms.append((mask * loss).sum() / (unlabelled.sum() * loss[0].numel()).clamp_min(1))
    losses["total"] = losses["total"] + torch.stack(pseudo_terms).sum() / len(specs)
    return losses


def make_step(form: str, specs, qs: dict, batch: dict):
    torch.manual_seed(0)
    model = build_model(SHIPPED_MODEL, specs).train()
    channels_last = form == "one pass, channels-last"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    image = batch["image"].contiguous(
        memory_format=torch.channels_last if channels_last else torch.contiguous_format
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        outputs = fp32_outputs(model(image), contiguous=channels_last)
        if form == "two passes, NCHW":
            losses = two_pass_losses(outputs, batch, specs, qs)
        else:
            losses = compute_losses(outputs, batch, specs, qs, use_pseudo=True, use_features=True)
        optimiser.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimiser.step()

    return step


FORMS = ("two passes, NCHW", "one pass, NCHW", "one pass, channels-last")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--height", type=int, default=288)
    p.add_argument("--width", type=int, default=384)
    p.add_argument("--steps", type=int, default=3, help="timed steps per form (after one warm-up)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    specs = tasks_for("nyud")
    qs = quantisers(specs)
    batch = stage2_batch(build_model(SHIPPED_MODEL, specs).eval(), specs, args.batch, args.height, args.width)
    steps = {form: make_step(form, specs, qs, batch) for form in FORMS}
    times: dict[str, list[float]] = {form: [] for form in FORMS}
    for r in range(1 + args.steps):
        for form, step in steps.items():
            t0 = time.perf_counter()
            step()
            if r:
                times[form].append(time.perf_counter() - t0)
    base = statistics.median(times[FORMS[0]])
    print(f"stage-2 step, batch {args.batch}, {args.height}x{args.width}, {args.threads} threads:")
    for form in FORMS:
        median = statistics.median(times[form])
        print(f"  {form:26s} {median:6.2f} s  ({base / median:.2f}x)")


if __name__ == "__main__":
    main()
