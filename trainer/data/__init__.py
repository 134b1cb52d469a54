"""Datasets, joint transforms and partial-label masks.

``build_dataset(name, root, split, specs, **kw)`` maps a data-set name to its reader:

=============  ===========================================  ==========================
name           class                                        layout documented in
=============  ===========================================  ==========================
"nyud"         ``trainer.data.nyud.NYUDDataset``            ``trainer/data/nyud.py``
"synthetic"    ``NYUDDataset`` (the generator writes it)    ``trainer/data/nyud.py``
"cityscapes"   ``trainer.data.cityscapes.CityscapesDataset``  ``trainer/data/cityscapes.py``
"pascal"       ``trainer.data.pascal.PascalContextDataset``   ``trainer/data/pascal.py``
"nyuv2-mini"   ``trainer.data.nyud.NYUv2MiniDataset``       ``trainer/data/nyuv2_mini.py``
=============  ===========================================  ==========================

Importing this package does not import torch or scipy (the dashboard reads ``trainer.data.nyuv2_mini``
and ``trainer.data.layouts`` without them); the dataset modules are imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..tasks import TaskSpec
    from .nyud import DenseTaskDataset

DATASET_CLASSES: dict[str, tuple[str, str]] = {
    "nyud": ("trainer.data.nyud", "NYUDDataset"),
    "synthetic": ("trainer.data.nyud", "NYUDDataset"),
    "cityscapes": ("trainer.data.cityscapes", "CityscapesDataset"),
    "pascal": ("trainer.data.pascal", "PascalContextDataset"),
    "nyuv2-mini": ("trainer.data.nyud", "NYUv2MiniDataset"),
}
"""Data-set name -> (module, class) of its reader."""


def dataset_class(name: str) -> type[DenseTaskDataset]:
    """The dataset class of ``name`` (see the module table)."""
    if name not in DATASET_CLASSES:
        raise ValueError(f"unknown dataset {name!r}; valid: {list(DATASET_CLASSES)}")
    module, cls = DATASET_CLASSES[name]
    return getattr(importlib.import_module(module), cls)


def build_dataset(
    name: str, root: str | Path, split: str, specs: Sequence[TaskSpec], **kw: Any
) -> DenseTaskDataset:
    """``dataset_class(name)(root, split, specs, **kw)``.

    kw: ``labelled_mask``, ``augment``, ``extra_targets``, ``max_images``, ``size`` (H, W), ``seed``,
    and for "pascal" ``normals_valid_classes``.
    """
    return dataset_class(name)(root, split, specs, **kw)
