"""Cityscapes in the MTAN / XTC preprocessed ``.npy`` layout (7 classes, disparity as depth).

Layout::

    <root>/{train,val}/image/<i>.npy    (128, 256, 3) float32 in [0, 1] (uint8 0..255 accepted)
    <root>/{train,val}/label/<i>.npy    (128, 256) float or int: 0..6 = 7 classes, -1 = ignore (255 accepted);
                                        the folder may also be named label_7 (MTAN's name)
    <root>/{train,val}/depth/<i>.npy    (128, 256) or (128, 256, 1) float32 disparity, 0 = missing

with i = 0..N-1 in every folder (2975 train / 500 val in the real data). The ``depth`` task carries
the disparity values unchanged (the paper's "depth" for Cityscapes). Arrays are resized to ``size``
when it differs from the stored size (bilinear image, nearest targets).
"""

from __future__ import annotations

from .nyud import NpyLayoutDataset


class CityscapesDataset(NpyLayoutDataset):
    """Cityscapes, MTAN / XTC ``.npy`` layout (module docstring); tasks semseg and depth (disparity)."""

    layout_name = "Cityscapes"
    supported_tasks = ("semseg", "depth")
    task_folders = {"semseg": ("label", "label_7"), "depth": ("depth",)}
