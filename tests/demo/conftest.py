"""The dashboard's tests: they run in the app's own environment (``requirements.txt`` plus
``tests/demo/requirements.txt``), without torch. The fake exports are built with ``onnx.helper``
(``fake_export.py``); this folder is put on ``sys.path`` by pytest (no ``__init__.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_export import cached_fake_exports_root

H, W = 64, 96  # the fake export's input size


@pytest.fixture(scope="session")
def exports_root() -> Path:
    """hitts/ (with an fp16 variant), mtl/, one gallery item and one run record, built once."""
    return cached_fake_exports_root(H, W)
