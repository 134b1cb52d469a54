"""Counting host reads of tensors (``item``, ``float``, ``bool``, ``tolist`` ...): on a GPU each one
waits for the device, so the training step must make none. Only reads made by the code of the
given source files are counted (torch's own CPU-only reads, e.g. Adam's step counter, are not)."""

from __future__ import annotations

import sys

import pytest
import torch

HOST_READS = ("item", "tolist", "numpy", "__float__", "__bool__", "__int__", "__index__")


def record_host_reads(monkeypatch: pytest.MonkeyPatch, *source_files: str) -> list[tuple[str, str]]:
    """Patch ``torch.Tensor`` so that every host read made by code in ``source_files`` is appended,
    as (method, calling function), to the returned list."""
    reads: list[tuple[str, str]] = []
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            caller = sys._getframe(1).f_code
            if caller.co_filename in source_files:
                reads.append((_name, caller.co_name))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return reads
