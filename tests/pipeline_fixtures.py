"""Session-wide tiny pipeline run shared by the pipeline, export and app tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures_data import write_nyud_fixture

from trainer.config import RunConfig, apply_overrides, preset_config
from trainer.pipeline import DEFAULT_METHODS, run_pipeline

H, W = 64, 96
TINY = [
    f"data.height={H}",
    f"data.width={W}",
    "train.epochs=2",
    "train.batch_size=4",
    'train.device="cpu"',
    "model.width=16",
    "model.fine_mlp_hidden=16",
    "data.max_train_images=null",
    "data.max_eval_images=null",
]


def tiny_config(setting: str = "one-label", epochs: int = 2) -> RunConfig:
    cfg = preset_config("smoke", "nyud", setting)
    return apply_overrides(cfg, [*TINY, f"train.epochs={epochs}"])


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_nyud_fixture(tmp_path_factory.mktemp("nyud"), n_train=8, n_val=4, height=H, width=W)


@pytest.fixture(scope="session")
def pipeline_run(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run")
    summary = run_pipeline(tiny_config(), data_root, out, DEFAULT_METHODS)
    return out, summary


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 train / 8 test synthetic indoor scenes at the tiny test size (learnable, unlike noise)."""
    from trainer.data.synthetic import write_dataset

    return write_dataset(
        tmp_path_factory.mktemp("synthetic"),
        num_train=16,
        num_test=8,
        seed=0,
        height=H,
        width=W,
        progress=False,
    )
