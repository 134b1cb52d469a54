"""A slim checkpoint with its floating-point weights stored as fp16 (half the bytes), for carrying a
stage-1 teacher to the GPU machine, whose working-tree limit is 64 MiB.

    python scripts/half_checkpoint.py IN.pt OUT.pt

Loading it into a model casts the weights back to fp32; rounding to fp16 changes them by at most
one part in 2048 (relative), far below what moves a discovered pseudo label.
"""

from __future__ import annotations

import sys

import torch


def main(src: str, dst: str) -> None:
    state = torch.load(src, map_location="cpu", weights_only=False)
    model = state["model"]
    state["model"] = {k: v.half() if v.is_floating_point() else v for k, v in model.items()}
    torch.save(state, dst)


if __name__ == "__main__":
    main(*sys.argv[1:3])
