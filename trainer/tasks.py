"""Every task described once: what it predicts, how it is quantised, how it is scored.

Nothing else in the package branches on a task's name: code reads the ``TaskSpec``.

Target conventions (the tensors a dataset sample carries, after transforms):

* classification tasks (``kind`` "segmentation" or "binary"): ``(H, W)`` int64 class index,
  ``IGNORE_LABEL`` (-1) where the pixel has no label (or the task is unlabelled for the image).
* ``depth``: ``(1, H, W)`` float32 in metres (disparity for Cityscapes), 0 = missing.
* ``normals``: ``(3, H, W)`` float32 unit vectors, the zero vector = missing.

Every task is also trained as pixel classification over ``num_outputs`` classes (Appendix A.1):
segmentation classes, depth bins or normal cluster centres. ``num_outputs`` is C_p.
"""

from __future__ import annotations

from dataclasses import dataclass

from hitts_schema import HIGHER_IS_BETTER
from hitts_schema.tasks import NYUD_CLASSES  # one list for the trainer and the dashboard

IGNORE_LABEL = -1
"""Class index of an unlabelled pixel in classification targets."""

MISSING_DEPTH = 0.0
"""Depth value of a pixel without a measurement."""

KINDS = ("segmentation", "binary", "depth", "normals")


@dataclass(frozen=True)
class Metric:
    """One scalar metric of a task: its key in metric dicts and whether higher is better."""

    name: str
    higher_is_better: bool


def _metrics(*names: str) -> tuple[Metric, ...]:
    """Metrics with their directions from the one shared table (``hitts_schema.HIGHER_IS_BETTER``)."""
    return tuple(Metric(n, HIGHER_IS_BETTER[n]) for n in names)


SEG_METRICS = _metrics("miou", "pacc")
DEPTH_METRICS = _metrics("abs_err", "rel_err", "rmse")
NORMAL_METRICS = _metrics(
    "mean_angle", "median_angle", "rmse_angle", "within_11_25", "within_22_5", "within_30"
)
EDGE_METRICS = _metrics("odsf")
SAL_METRICS = _metrics("miou", "max_f")


@dataclass(frozen=True)
class TaskSpec:
    """One dense task.

    name: key of the task in samples, model outputs, losses and metrics.
    kind: one of ``KINDS``.
    num_outputs: C_p, the number of pixel classes the head predicts (classes, depth bins or
        normal centres).
    class_names: names of the classes for segmentation-like tasks (empty for depth/normals).
    reg_weight: lambda_i of the mixed loss (0.1 for regression tasks, 0 otherwise).
    metrics: what the task is scored by, with directions (for Delta_MTL).
    tau: default pseudo-label confidence threshold (overridden per data set and setting).
    """

    name: str
    kind: str
    num_outputs: int
    class_names: tuple[str, ...] = ()
    reg_weight: float = 0.0
    metrics: tuple[Metric, ...] = ()
    tau: float = 0.9

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name!r}: unknown kind {self.kind!r}, expected one of {KINDS}")
        if self.num_outputs < 2:
            raise ValueError(f"task {self.name!r}: num_outputs must be >= 2, got {self.num_outputs}")

    @property
    def is_classification(self) -> bool:
        return self.kind in ("segmentation", "binary")

    @property
    def target_channels(self) -> int:
        """Channels of the regression target and prediction: 1 (depth), 3 (normals), 0 (classes)."""
        return {"depth": 1, "normals": 3}.get(self.kind, 0)


# Cityscapes 7 categories (the MTAN / XTC 7-class setting).
CITYSCAPES_CLASSES = ("flat", "construction", "object", "nature", "sky", "human", "vehicle")
PASCAL_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
HUMAN_PART_CLASSES = ("background", "head", "torso", "upper_arm", "lower_arm", "upper_leg", "lower_leg")

REGRESSION_WEIGHT = 0.1
"""lambda_i of the mixed regression + bin classification loss (Appendix A.1)."""

NYUD_DEPTH_BINS = 30
CITYSCAPES_DEPTH_BINS = 100
NYUD_NORMAL_CENTRES = 20
PASCAL_NORMAL_CENTRES = 40


def _seg(name: str, classes: tuple[str, ...], tau: float) -> TaskSpec:
    return TaskSpec(name, "segmentation", len(classes), classes, 0.0, SEG_METRICS, tau)


DATASET_TASKS: dict[str, tuple[TaskSpec, ...]] = {
    "nyud": (
        _seg("semseg", NYUD_CLASSES, 0.9),
        TaskSpec("depth", "depth", NYUD_DEPTH_BINS, (), REGRESSION_WEIGHT, DEPTH_METRICS, 0.45),
        TaskSpec("normals", "normals", NYUD_NORMAL_CENTRES, (), REGRESSION_WEIGHT, NORMAL_METRICS, 0.6),
    ),
    "cityscapes": (
        _seg("semseg", CITYSCAPES_CLASSES, 0.9),
        TaskSpec("depth", "depth", CITYSCAPES_DEPTH_BINS, (), REGRESSION_WEIGHT, DEPTH_METRICS, 0.5),
    ),
    "pascal": (
        _seg("semseg", PASCAL_CLASSES, 0.9),
        _seg("human_parts", HUMAN_PART_CLASSES, 0.85),
        TaskSpec("normals", "normals", PASCAL_NORMAL_CENTRES, (), REGRESSION_WEIGHT, NORMAL_METRICS, 0.7),
        TaskSpec("sal", "binary", 2, ("background", "salient"), 0.0, SAL_METRICS, 0.7),
        TaskSpec("edge", "binary", 2, ("non-edge", "edge"), 0.0, EDGE_METRICS, 0.9),
    ),
}
"""The tasks of each data set, in the order used by label masks, affinity matrices and exports.
The synthetic set and nyuv2-mini use the "nyud" tasks."""

# Pseudo-label thresholds tau per data set and setting (paper, Appendix B).
TAU: dict[tuple[str, str], dict[str, float]] = {
    ("nyud", "one-label"): {"semseg": 0.9, "depth": 0.45, "normals": 0.6},
    ("nyud", "random-labels"): {"semseg": 0.9, "depth": 0.7, "normals": 0.7},
    ("cityscapes", "one-label"): {"semseg": 0.9, "depth": 0.5},
    ("pascal", "one-label"): {"semseg": 0.9, "human_parts": 0.85, "normals": 0.7, "sal": 0.7, "edge": 0.9},
    ("pascal", "random-labels"): {
        "semseg": 0.9,
        "human_parts": 0.85,
        "normals": 0.7,
        "sal": 0.7,
        "edge": 0.9,
    },
}


def tasks_for(dataset: str, names: tuple[str, ...] | list[str] | None = None) -> tuple[TaskSpec, ...]:
    """The TaskSpecs of ``dataset`` (optionally only ``names``), failing with the valid choices."""
    if dataset not in DATASET_TASKS:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {sorted(DATASET_TASKS)}")
    specs = DATASET_TASKS[dataset]
    if names is None:
        return specs
    by_name = {s.name: s for s in specs}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown} for dataset {dataset!r}; valid: {list(by_name)}")
    return tuple(by_name[n] for n in names)


def tau_for(dataset: str, setting: str, specs: tuple[TaskSpec, ...]) -> dict[str, float]:
    """Pseudo-label thresholds for a data set and setting; the task default where the paper gives none."""
    table = TAU.get((dataset, setting), {})
    return {s.name: table.get(s.name, s.tau) for s in specs}
