"""Names shared by the trainer and the dashboard, torch-free: one source of truth.

* ``metrics``: metric directions, the paper's Delta_MTL metric set of each data set and setting, and
  Delta_MTL itself (plain Python).
* ``methods``: every method (baselines, HiTTs, ablations, stage-2 variants) as a frozen description.
* ``manifest``: the export manifest's schema version and file names.

Nothing here imports torch, numpy or the ``trainer`` package, so ``hitts_demo`` can import it.
"""

from .manifest import MANIFEST_FILE, MANIFEST_FORMAT_VERSION
from .methods import DEFAULT_METHODS, METHODS, Method, get_method, method_label
from .metrics import (
    ALL_METRICS,
    DELTA_ALL_KEY,
    DELTA_KEY,
    HIGHER_IS_BETTER,
    PAPER_METRIC_SETS,
    delta_mtl,
    gain_over,
    is_lower_better,
    metric_set_for,
    val_metrics,
)

__all__ = [
    "ALL_METRICS",
    "DEFAULT_METHODS",
    "DELTA_ALL_KEY",
    "DELTA_KEY",
    "HIGHER_IS_BETTER",
    "MANIFEST_FILE",
    "MANIFEST_FORMAT_VERSION",
    "METHODS",
    "Method",
    "PAPER_METRIC_SETS",
    "delta_mtl",
    "gain_over",
    "get_method",
    "is_lower_better",
    "method_label",
    "metric_set_for",
    "val_metrics",
]
