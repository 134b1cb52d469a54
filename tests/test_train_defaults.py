"""scripts/train_defaults.py's plan: the recipe each profile trains with and the epochs the budget allows."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("train_defaults", REPO / "scripts" / "train_defaults.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def plan(d, seconds: float, num_train: int = 2400, toy: bool = False):
    return d.Plan(Path("w"), Path("o"), time.time() + seconds, num_train, 654, 240, (288, 384), 6, 40, toy)


def test_each_profile_trains_with_its_photometric_mode_at_the_plan_size():
    d = load_script()
    wide, nyu = plan(d, 100).recipe("wide"), plan(d, 100).recipe("nyu")
    assert "data.photometric=wide" in wide and "data.photometric=basic" in nyu
    assert {"data.height=288", "data.width=384", "data.validation_images=240", "data.num_workers=6"} <= set(
        wide
    )
    assert sum(o.startswith("data.height=") for o in wide) == 1  # the plan's size replaces the recipe's


def test_epochs_fill_the_budget_at_the_slower_rate_within_the_range():
    d = load_script()
    fixed = d.DISCOVERY_S + d.CHAIN_FIXED_S + d.PACK_S
    rates = {"hitts": 100.0, "mtl": 200.0}
    per_epoch = ((2400 - 240) / 100.0 + d.EPOCH_OVERHEAD_S) * (1 + d.STAGE2_SLOWDOWN)
    got = d.choose_epochs(plan(d, fixed + 10.5 * per_epoch), rates)
    assert got == 10  # floor(10.5), set by HiTTs' 100 images/s, not MTL's 200
    assert d.choose_epochs(plan(d, fixed + 1.0), rates) == d.EPOCHS_RANGE[0]
    assert d.choose_epochs(plan(d, 1e6), rates) == d.EPOCHS_RANGE[1]
    assert d.choose_epochs(plan(d, 1e6, toy=True), rates) == 2
