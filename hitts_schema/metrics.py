"""Metric directions, the paper's Delta_MTL metric sets, and Delta_MTL.

Delta_MTL (Vandenhende et al., the paper's Eq. 9) is the mean over a set of metrics of the signed
relative change against the single-task (STL) model, in percent. The paper prints the *mean*, not the
sum of Eq. 9: its MTL row of Table 1 (+0.11) is the mean over the table's nine metrics.

Which metrics enter is part of the data set's description: each paper table averages over the
columns it prints (``PAPER_METRIC_SETS``). The mean over every metric a run records is kept as a
secondary figure (``DELTA_ALL_KEY``), never in place of the paper's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

PERCENT = 100.0
DELTA_KEY = "delta_mtl"
"""Delta_MTL on the paper's metric set of the run's data set and setting."""
DELTA_ALL_KEY = "delta_mtl_all"
"""Secondary: Delta_MTL over every metric recorded (the project's figure before issue 10)."""

HIGHER_IS_BETTER: dict[str, bool] = {
    "miou": True,
    "pacc": True,
    "abs_err": False,
    "rel_err": False,
    "rmse": False,
    "mean_angle": False,
    "median_angle": False,
    "rmse_angle": False,
    "within_11_25": True,
    "within_22_5": True,
    "within_30": True,
    "odsf": True,
    "max_f": True,
}
"""Every metric the trainer computes, with its direction (l_t = 0 where higher is better)."""

ALL_METRICS = tuple(HIGHER_IS_BETTER)

MetricSet = tuple[tuple[str, str], ...]
"""(task, metric) pairs in the order of the paper's table columns."""

NYUD_TABLE1: MetricSet = (
    ("semseg", "miou"),
    ("semseg", "pacc"),
    ("depth", "abs_err"),
    ("depth", "rmse"),
    ("normals", "mean_angle"),
    ("normals", "rmse_angle"),
    ("normals", "within_11_25"),
    ("normals", "within_22_5"),
    ("normals", "within_30"),
)
NYUD_TABLE2: MetricSet = (("semseg", "miou"), ("depth", "abs_err"), ("normals", "mean_angle"))
CITYSCAPES_TABLE3: MetricSet = (
    ("semseg", "miou"),
    ("semseg", "pacc"),
    ("depth", "abs_err"),
    ("depth", "rmse"),
)
PASCAL_TABLE4: MetricSet = (
    ("semseg", "miou"),
    ("human_parts", "miou"),
    ("normals", "mean_angle"),
    ("sal", "miou"),
    ("edge", "odsf"),
)

PAPER_METRIC_SETS: dict[tuple[str, str], MetricSet] = {
    ("nyud", "one-label"): NYUD_TABLE1,
    ("nyud", "random-labels"): NYUD_TABLE1,
    ("nyud", "few-shot"): NYUD_TABLE1,  # Table 7 prints the same nine columns
    ("nyud", "full-labels"): NYUD_TABLE2,
    ("cityscapes", "one-label"): CITYSCAPES_TABLE3,
    ("cityscapes", "random-labels"): CITYSCAPES_TABLE3,
    ("cityscapes", "few-shot"): CITYSCAPES_TABLE3,
    ("cityscapes", "full-labels"): CITYSCAPES_TABLE3,
    ("pascal", "one-label"): PASCAL_TABLE4,
    ("pascal", "random-labels"): PASCAL_TABLE4,
    ("pascal", "few-shot"): PASCAL_TABLE4,
    ("pascal", "full-labels"): PASCAL_TABLE4,
}
"""(task set, setting) -> the metrics the paper's table averages Delta_MTL over.
Task sets: "nyud" (also the synthetic set and nyuv2-mini), "cityscapes", "pascal"."""

TASK_SET_OF_DATASET = {
    "nyud": "nyud",
    "synthetic": "nyud",
    "nyuv2-mini": "nyud",
    "cityscapes": "cityscapes",
    "pascal": "pascal",
}


VAL_PREFIX = "val/"
"""Training-log keys of the per-epoch validation figures: ``val/<task>/<metric>``."""


def val_metrics(record: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """The ``val/<task>/<metric>`` entries of one training-log record, as {task: {metric: value}}."""
    metrics: dict[str, dict[str, float]] = {}
    for key, value in record.items():
        if key.startswith(VAL_PREFIX):
            task, metric = key[len(VAL_PREFIX) :].split("/", 1)
            metrics.setdefault(task, {})[metric] = value
    return metrics


def gain_over(
    metrics: Mapping[str, Mapping[str, float]],
    reference: Mapping[str, Mapping[str, float]],
    metric_set: Iterable[tuple[str, str]],
) -> dict:
    """Mean relative gain (percent, higher = better; ``delta_mtl``) of ``metrics`` over ``reference``,
    on the (task, metric) pairs of ``metric_set`` that both hold (finite value, nonzero reference).

    Returns {"gain_percent": float, or None when no pair is held, "metrics": ["task/metric", ...]}.
    """
    pairs = [
        (t, m)
        for t, m in metric_set
        if m in metrics.get(t, {})
        and reference.get(t, {}).get(m) not in (None, 0)
        and metrics[t][m] == metrics[t][m]  # not NaN
    ]
    if not pairs:
        return {"gain_percent": None, "metrics": []}
    return {"gain_percent": delta_mtl(metrics, reference, pairs), "metrics": [f"{t}/{m}" for t, m in pairs]}


def is_lower_better(metric: str) -> bool:
    """True where a lower value is better; raises on a metric nobody declared."""
    if metric not in HIGHER_IS_BETTER:
        raise KeyError(f"unknown metric {metric!r}; known: {list(HIGHER_IS_BETTER)}")
    return not HIGHER_IS_BETTER[metric]


def metric_set_for(dataset: str, setting: str) -> MetricSet:
    """The paper's Delta_MTL metric set of a data set (or task set) and setting."""
    task_set = TASK_SET_OF_DATASET.get(dataset, dataset)
    key = (task_set, setting)
    if key not in PAPER_METRIC_SETS:
        raise KeyError(
            f"no metric set for data set {dataset!r}, setting {setting!r}; known: {sorted(PAPER_METRIC_SETS)}"
        )
    return PAPER_METRIC_SETS[key]


def delta_mtl(
    metrics: Mapping[str, Mapping[str, float]],
    reference: Mapping[str, Mapping[str, float]],
    metric_set: Iterable[tuple[str, str]] | None = None,
) -> float:
    """Delta_MTL in percent: (1/N) sum_m (-1)^l_m (M_m - M_s) / M_s * 100.

    metrics, reference: {task: {metric: value}} of the model and of the STL model.
    metric_set: the (task, metric) pairs to average over (``metric_set_for``); every one must be
        present in both dicts. ``None``: every known metric present in both (the secondary figure).
    Raises ValueError on a missing metric of the set, an empty set, or a zero reference value.
    """
    if metric_set is None:
        pairs = [
            (task, m)
            for task, values in reference.items()
            if isinstance(values, Mapping)
            for m in values
            if m in HIGHER_IS_BETTER and m in metrics.get(task, {})
        ]
    else:
        pairs = list(metric_set)
        missing = [
            f"{t}/{m}" for t, m in pairs if m not in metrics.get(t, {}) or m not in reference.get(t, {})
        ]
        if missing:
            raise ValueError(f"Delta_MTL: metric(s) {missing} missing from the results or the reference")
    if not pairs:
        raise ValueError("Delta_MTL: no metric is present in both the results and the reference")
    terms = []
    for task, metric in pairs:
        m, s = float(metrics[task][metric]), float(reference[task][metric])
        if s == 0:
            raise ValueError(f"reference {task}/{metric} is 0: Delta_MTL is undefined")
        sign = -1.0 if is_lower_better(metric) else 1.0
        terms.append(sign * (m - s) / s)
    return sum(terms) / len(terms) * PERCENT
