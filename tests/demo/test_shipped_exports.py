"""The shipped default models are valid ONNX files (the checker, not only ONNX Runtime, accepts them)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

EXPORTS = Path(__file__).parents[2] / "exports"
SHIPPED = sorted(EXPORTS.glob("*/model*.onnx"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_model_passes_the_onnx_checker(path: Path) -> None:
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def test_there_are_shipped_models() -> None:
    assert {p.parent.name for p in SHIPPED} >= {"hitts", "mtl"}
