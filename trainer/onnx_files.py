"""Saving ONNX models as files a Hugging Face Space accepts: every file below ``MAX_FILE_BYTES``.

A model below the limit is one file. A larger one keeps its graph in ``<name>.onnx`` and its weights
(the initializers, byte for byte) in shards ``<name>.onnx.data-0``, ``-1``, ... of at most
``ONNX_SHARD_BYTES`` each: ONNX external data, which ``onnx.load`` and ONNX Runtime read from the
model's folder when given the model's path. Torch-free (onnx only), so a script can re-shard an
existing export without the training stack.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
from onnx import external_data_helper

from hitts_schema.manifest import (
    MAX_FILE_BYTES,
    ONNX_SHARD_BYTES,
    ONNX_SHARD_SUFFIX,
    model_files,
    shard_files,
)

SMALL_TENSOR_BYTES = 1024
"""Initializers smaller than this stay inside the graph file (scalars, shapes)."""
WEIGHT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16})
"""Only floating-point weights move to shards: integer initializers (axes, shapes, indices) stay in the
graph, where shape inference must read them (ONNX Runtime refuses e.g. Squeeze axes stored outside)."""
FILE_MODE_BITS = 0o777


__all__ = ["ShardError", "model_files", "reshard", "save_onnx", "shard_files"]


class ShardError(ValueError):
    """The model cannot be saved with every file below the limit."""


def _assign_shards(model: onnx.ModelProto, base_name: str, shard_bytes: int) -> int:
    """Mark every large initializer as external data in shard ``base_name.data-k``; returns the count.
    A tensor larger than ``shard_bytes`` (a ResNet-18 layer4 conv: 9.4 MB) gets a shard of its own."""
    shard, used = 0, 0
    for tensor in model.graph.initializer:
        size = len(tensor.raw_data) if tensor.HasField("raw_data") else 0
        if size < SMALL_TENSOR_BYTES or tensor.data_type not in WEIGHT_TYPES:
            continue
        if used and used + size > shard_bytes:
            shard, used = shard + 1, 0
        external_data_helper.set_external_data(tensor, f"{base_name}{ONNX_SHARD_SUFFIX}{shard}")
        used += size
    return shard + 1 if used else shard


def save_onnx(
    model: onnx.ModelProto,
    path: str | Path,
    max_file_bytes: int = MAX_FILE_BYTES,
    shard_bytes: int = ONNX_SHARD_BYTES,
    strict: bool = True,
) -> list[Path]:
    """Save ``model`` to ``path`` with every file below ``max_file_bytes``; returns the files written.

    The model must hold its weights in memory (load it with external data). Stale shards of an earlier
    save at ``path`` are removed first. ``model`` is not modified. A tensor at or over the limit (the
    authors' ResNet-18 multi-scale network has a 28 MB one) leaves a file over it: ``strict`` raises
    ``ShardError``, else a warning says so (the export of any model must work; the shipped ones are
    held to the limit by a test).
    """
    path = Path(path)
    for stale in shard_files(path):
        stale.unlink()
    if model.ByteSize() < max_file_bytes:
        onnx.save(model, str(path))
        return [path]
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    _assign_shards(copy, path.name, min(shard_bytes, max_file_bytes - 1))
    onnx.save_model(copy, str(path))  # writes the raw data of external tensors to their shards
    files = model_files(path)
    for shard in files[1:]:  # onnx creates them owner-only; give them the graph file's permissions
        shard.chmod(path.stat().st_mode & FILE_MODE_BITS)
    too_big = [f"{f.name} ({f.stat().st_size} bytes)" for f in files if f.stat().st_size >= max_file_bytes]
    if too_big:
        message = f"files at or over {max_file_bytes} bytes after sharding (one tensor is larger): {too_big}"
        if strict:
            raise ShardError(message)
        warnings.warn(
            f"{message}; the model loads, but a Hugging Face Space would refuse these files", stacklevel=2
        )
    return files


def reshard(onnx_path: str | Path, max_file_bytes: int = MAX_FILE_BYTES, strict: bool = False) -> list[Path]:
    """Re-save an existing model file (inline or sharded) with ``save_onnx``; weights byte-identical."""
    model = onnx.load(str(onnx_path))  # reads external data from the model's folder
    return save_onnx(model, onnx_path, max_file_bytes, strict=strict)
