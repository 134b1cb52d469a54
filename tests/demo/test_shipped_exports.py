"""The shipped default models: valid ONNX files (the checker, not only ONNX Runtime, accepts them), and
every file of ``exports/`` small enough for a Hugging Face Space without Git LFS."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from hitts_demo.manifest import load_manifest
from hitts_demo.predictor import Predictor
from hitts_schema.manifest import MAX_EXPORTS_BYTES, MAX_FILE_BYTES

EXPORTS = Path(__file__).parents[2] / "exports"
SHIPPED = sorted(EXPORTS.glob("*/model*.onnx"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_model_passes_the_onnx_checker(path: Path) -> None:
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)  # external data read from the folder
    onnx.checker.check_model(str(path), full_check=True)


def test_there_are_shipped_models() -> None:
    assert {p.parent.name for p in SHIPPED} >= {"hitts", "mtl"}


def test_every_shipped_file_is_below_the_space_file_limit() -> None:
    files = [p for p in EXPORTS.rglob("*") if p.is_file()]
    too_big = {
        str(p.relative_to(EXPORTS)): p.stat().st_size for p in files if p.stat().st_size >= MAX_FILE_BYTES
    }
    assert files and not too_big, f"files at or over {MAX_FILE_BYTES} bytes: {too_big}"
    total = sum(p.stat().st_size for p in files)
    assert total < MAX_EXPORTS_BYTES, f"exports/ holds {total} bytes"


@pytest.mark.parametrize("name", ["hitts", "mtl"])
def test_the_app_loads_the_shipped_fp32_model_with_its_shards(name: str) -> None:
    """A sharded model (graph + model.onnx.data-k) loads through the app's own checks and session."""
    manifest = load_manifest(EXPORTS / name)
    predictor = Predictor(EXPORTS / name, providers=["CPUExecutionProvider"])
    assert predictor.checker_note is None
    if not list(manifest.onnx_path.parent.glob(manifest.onnx_path.name + ".data-*")):
        return  # a model below the limit is one file
    stored = onnx.load(str(manifest.onnx_path), load_external_data=False)
    on_disk = sum(t.ByteSize() for t in stored.graph.initializer)
    loaded = sum(t.ByteSize() for t in onnx.load(str(manifest.onnx_path)).graph.initializer)
    assert loaded > on_disk  # the weights really come from the shards beside the graph
