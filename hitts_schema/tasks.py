"""Task and class names shared by the trainer and the dashboard (torch-free)."""

NYUD_CLASSES = (
    "bed",
    "books",
    "ceiling",
    "chair",
    "floor",
    "furniture",
    "objects",
    "picture",
    "sofa",
    "table",
    "tv",
    "wall",
    "window",
)
"""NYUD-v2 13 classes, in the label order of the 13-class mapping (Couprie et al.), labels 0..12."""
