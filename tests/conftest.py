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


# Test tiers: `pytest` runs everything (CI, scripts/test.sh); `pytest -m "not slow"` is the quick tier
# for the edit-test loop. A test is slow when it takes more than a few seconds on a 2-core machine:
# whole pipeline or training runs, ONNX exports, subprocesses that start torch, a Gradio server or a
# browser. Mark it in its file with @pytest.mark.slow. The dashboard's tests below are marked here.
SLOW_DASHBOARD_MODULES = ("test_app_browser.py", "test_app_client.py")  # start a Gradio server / a browser
SLOW_DASHBOARD_TESTS = (
    "test_importing_and_running_the_app_never_loads_torch",
)  # a fresh interpreter runs the app


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in SLOW_DASHBOARD_MODULES or item.originalname in SLOW_DASHBOARD_TESTS:
            item.add_marker(pytest.mark.slow)


try:  # the training stack; the dashboard's tests (tests/demo) also run in the app's torch-free venv
    import torch  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    from pipeline_fixtures import data_root, pipeline_run, synthetic_root  # noqa: F401  (session fixtures)
