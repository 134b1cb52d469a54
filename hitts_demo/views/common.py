"""Names shared by several views: what each of a task's C_p outputs is called."""

from __future__ import annotations

import numpy as np

from hitts_demo.manifest import TaskInfo

MAX_RETENTION_ROWS = 8


def token_labels(task: TaskInfo) -> list[str]:
    """Human names of a task's C_p outputs (classes, depth bins in metres, normal centres)."""
    if task.is_classification:
        return list(task.class_names)
    if task.kind == "depth" and task.bin_centres:
        return [f"bin {i}: {c:.2f} m" for i, c in enumerate(task.bin_centres)]
    if task.normal_centres:
        return [
            f"centre {i}: ({x:+.2f}, {y:+.2f}, {z:+.2f})" for i, (x, y, z) in enumerate(task.normal_centres)
        ]
    return [f"{task.name} {i}" for i in range(task.num_outputs)]


def retention_text(label: np.ndarray, kept: np.ndarray, task: TaskInfo) -> str:
    """Share of each predicted class's pixels that survive the threshold (largest classes first)."""
    counts = np.bincount(label.ravel(), minlength=task.num_outputs)
    kept_counts = np.bincount(label[kept].ravel(), minlength=task.num_outputs)
    names = token_labels(task)
    order = [int(i) for i in np.argsort(-counts) if counts[i] > 0][:MAX_RETENTION_ROWS]
    return ", ".join(f"{names[i].split(':')[0]} {100 * kept_counts[i] / counts[i]:.0f}%" for i in order)
