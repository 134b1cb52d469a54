"""3D view: the predicted depth back-projected to a point cloud (GLB for ``gr.Model3D``, PLY to
download), coloured by class or RGB, with the focal length from the upload's EXIF when it has one
(else NYU's, scaled to the image width; the user may type another), keeping only the pixels whose
depth confidence is above a threshold."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hitts_demo import visualize as vis
from hitts_demo.pointcloud import back_project, default_focal, write_glb, write_ply
from hitts_demo.predictor import Prediction
from hitts_demo.preprocess import InputError
from hitts_demo.service import Analysis

COLOUR_BY = ("class", "rgb")


@dataclass(frozen=True)
class CloudView:
    glb: Path
    ply: Path
    markdown: str
    points: int
    focal_px: float


def focal_in_use(analysis: Analysis, typed: float | None) -> tuple[float, str]:
    """(focal length in pixels, where it comes from): typed > EXIF > NYU's scaled to the width."""
    width = analysis.image.shape[1]
    if typed and typed > 0:
        return float(typed), "typed"
    if analysis.focal_px:
        return float(analysis.focal_px), "EXIF of the upload"
    return default_focal(width), "NYU default scaled to the image width"


def depth_task(pred: Prediction):
    task = next((t for t in pred.tasks if t.kind == "depth"), None)
    if task is None:
        raise InputError(f"model {pred.model!r} predicts no depth")
    return task


def cloud_view(
    analysis: Analysis,
    model: str | None,
    focal_px: float | None,
    colour_by: str,
    folder: Path,
    min_confidence: float = 0.0,
) -> CloudView:
    """GLB and PLY files of the predicted depth, back-projected with the focal length in use."""
    pred = analysis.prediction(model)
    depth_name = depth_task(pred).name
    seg = next((t for t in pred.tasks if t.is_classification), None)
    focal, source = focal_in_use(analysis, focal_px)
    labels = pred.pred(seg.name) if seg else None
    colours = (
        vis.colorize_labels(labels, vis.task_palette(seg)) if colour_by == "class" and seg else pred.image
    )
    depth = pred.pred(depth_name)
    if min_confidence > 0:
        depth = np.where(pred.confidence(depth_name) > min_confidence, depth, 0.0)
    cloud = back_project(depth, colours, focal, labels)
    comment = (
        f"HiTTs Studio point cloud, model {pred.model}, focal {focal:.2f} px, OpenCV camera frame, metres"
    )
    glb = write_glb(cloud, folder / f"{pred.model}_points.glb")
    ply = write_ply(cloud, folder / f"{pred.model}_points.ply", comment)
    kept = f", depth confidence > {min_confidence:.2f}" if min_confidence > 0 else ""
    md = (
        f"{len(cloud):,} points from **{pred.model}** depth{kept}, focal length {focal:.1f} px ({source}), "
        f"coloured by {colour_by}. PLY: x right, y down, z forward (metres)."
    )
    return CloudView(glb, ply, md, len(cloud), focal)
