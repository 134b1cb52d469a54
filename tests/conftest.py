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


from pipeline_fixtures import data_root, pipeline_run, synthetic_root  # noqa: E402,F401  (session fixtures)
