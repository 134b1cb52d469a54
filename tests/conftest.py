"""Shared fixtures. Tests are CPU-only, seeded and small."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
NYUV2_MINI = SHARED / "data" / "nyuv2-mini"


@pytest.fixture
def nyuv2_mini_root() -> Path:
    if not (NYUV2_MINI / "rgb_0001.png").exists():
        pytest.skip("../shared/data/nyuv2-mini is not present")
    return NYUV2_MINI


try:  # the training stack; the dashboard's tests (tests/demo) also run in the app's torch-free venv
    import torch  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    from pipeline_fixtures import data_root, pipeline_run, synthetic_root  # noqa: F401  (session fixtures)
