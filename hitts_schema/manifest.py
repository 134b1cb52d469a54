"""The export manifest's schema: its version, the file names of an export folder, and file sizes."""

from __future__ import annotations

from pathlib import Path

MANIFEST_FORMAT_VERSION = 1
"""``format_version`` written by the trainer's export and required by the dashboard."""

MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
MODEL_FP16_FILE = "model_fp16.onnx"

MAX_FILE_BYTES = 10_000_000
"""Every shipped file stays below 10 MB: a Hugging Face Space refuses a file of 10 MB or more that is
not stored with Git LFS (and this repository keeps its models as plain git files, so that a clone
without git-lfs still runs the app and the tests)."""
MAX_EXPORTS_BYTES = 50_000_000
"""The whole ``exports/`` folder (models, gallery, run records) stays below 50 MB."""
ONNX_SHARD_BYTES = 8 * 2**20
"""An ONNX model at or over ``MAX_FILE_BYTES`` keeps its graph in ``model.onnx`` and its weights in
shards of at most this many bytes (ONNX external data, next to the model)."""
ONNX_SHARD_SUFFIX = ".data-"
"""Shard ``k`` of ``model.onnx`` is ``model.onnx.data-k`` (k = 0, 1, ...)."""


def shard_files(onnx_path: str | Path) -> list[Path]:
    """The weight shards beside an ONNX file (``model.onnx.data-0``, ``-1``, ...), in order."""
    onnx_path = Path(onnx_path)
    prefix = onnx_path.name + ONNX_SHARD_SUFFIX
    found = [p for p in onnx_path.parent.glob(prefix + "*") if p.name[len(prefix) :].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(prefix) :]))


def model_files(onnx_path: str | Path) -> list[Path]:
    """An ONNX model's files: the graph file, then its weight shards."""
    return [Path(onnx_path), *shard_files(onnx_path)]
