"""Cross-task consistency: what only a multi-task model can show.

* Normals derived from the predicted depth against the predicted normals. Each pixel is
  back-projected with the focal length in use, P = ((u + 0.5 - cx) Z / f, (v + 0.5 - cy) Z / f, Z);
  the derived normal is the unit cross product dP/dv x dP/du (central differences), which faces the
  camera (z < 0), the convention of the predicted normals. The angle map is the angle between the two.
* Segmentation boundaries (a pixel whose class differs from its right or lower neighbour) against
  depth edges (a relative depth jump |dZ| / Z above ``EDGE_REL_JUMP`` between a pixel and the one
  ``span`` pixels to its right or below; ``span`` = the upsampling factor from the model's input to
  the image, since a jump in the model's output is spread over that many pixels by the resize), with
  the share of each found within ``EDGE_TOLERANCE_PX`` of the other.
* Per-class geometry from one image: each predicted class's share of the image, its frontal area
  sum (Z / f)^2 in m^2, its depth range (5th, 50th, 95th percentile) and its dominant normal (the
  normalised mean of its predicted normals) with the mean angle to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hitts_demo import visualize as vis
from hitts_demo.predictor import Prediction
from hitts_demo.preprocess import InputError
from hitts_demo.service import Analysis
from hitts_demo.views.cloud import focal_in_use

EDGE_REL_JUMP = 0.05
EDGE_TOLERANCE_PX = 2
MAX_ANGLE_DEG = 90.0
SEG_COLOUR, DEPTH_COLOUR, BOTH_COLOUR = (255, 0, 255), (0, 200, 255), (255, 255, 255)
ANGLE_THRESHOLDS = (11.25, 22.5, 30.0)


@dataclass(frozen=True)
class ConsistencyView:
    angle_map: np.ndarray
    boundaries: np.ndarray
    table: pd.DataFrame
    markdown: str


def normals_from_depth(depth: np.ndarray, focal_px: float) -> np.ndarray:
    """(H, W) metres -> (H, W, 3) unit normals facing the camera; zero where depth is missing."""
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    z = depth.astype(np.float64)
    points = np.stack([(u + 0.5 - w / 2) * z / focal_px, (v + 0.5 - h / 2) * z / focal_px, z], -1)
    d_v, d_u = np.gradient(points, axis=(0, 1))
    n = np.cross(d_v, d_u)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    valid = (z > 0)[..., None] & (norm > 1e-12)
    return np.where(valid, n / np.maximum(norm, 1e-12), 0.0).astype(np.float32)


def angle_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel angle in degrees between two (H, W, 3) unit-vector maps; NaN where either is zero."""
    dot = np.clip((a * b).sum(-1), -1.0, 1.0)
    valid = (np.abs(a).sum(-1) > 0) & (np.abs(b).sum(-1) > 0)
    return np.where(valid, np.degrees(np.arccos(dot)), np.nan).astype(np.float32)


def label_boundaries(label: np.ndarray) -> np.ndarray:
    """True where the class differs from the right or lower neighbour."""
    edge = np.zeros(label.shape, bool)
    edge[:, :-1] |= label[:, :-1] != label[:, 1:]
    edge[:-1, :] |= label[:-1, :] != label[1:, :]
    return edge


def depth_edges(depth: np.ndarray, rel_jump: float = EDGE_REL_JUMP, span: int = 1) -> np.ndarray:
    """True where depth changes by more than ``rel_jump`` of the nearer value between a pixel and the
    one ``span`` pixels to its right or below."""
    z = np.maximum(depth.astype(np.float64), 1e-6)
    edge = np.zeros(depth.shape, bool)
    s = max(1, int(span))
    edge[:, :-s] |= np.abs(z[:, s:] - z[:, :-s]) / np.minimum(z[:, :-s], z[:, s:]) > rel_jump
    edge[:-s, :] |= np.abs(z[s:, :] - z[:-s, :]) / np.minimum(z[:-s, :], z[s:, :]) > rel_jump
    return edge


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a (2r + 1)^2 square."""
    padded = np.pad(mask, radius)
    out = np.zeros_like(mask)
    h, w = mask.shape
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy : dy + h, dx : dx + w]
    return out


def edge_agreement(
    seg: np.ndarray, depth: np.ndarray, radius: int = EDGE_TOLERANCE_PX
) -> tuple[float, float]:
    """(share of seg boundary pixels near a depth edge, share of depth edge pixels near a seg boundary)."""
    near_depth, near_seg = dilate(depth, radius), dilate(seg, radius)
    share = lambda a, near: float((a & near).sum() / a.sum()) if a.any() else float("nan")  # noqa: E731
    return share(seg, near_depth), share(depth, near_seg)


def class_geometry(pred: Prediction, focal_px: float) -> pd.DataFrame:
    """One row per predicted class: share, frontal area, depth percentiles, dominant normal."""
    seg = next((t for t in pred.tasks if t.is_classification), None)
    depth_t = next((t for t in pred.tasks if t.kind == "depth"), None)
    if seg is None or depth_t is None:
        return pd.DataFrame()
    label, depth = pred.pred(seg.name), pred.pred(depth_t.name)
    normals_t = next((t for t in pred.tasks if t.kind == "normals"), None)
    normals = pred.pred(normals_t.name) if normals_t else None
    rows = []
    for k in np.unique(label):
        sel = label == k
        z = depth[sel]
        row = {
            "class": seg.class_names[int(k)],
            "pixels %": round(100 * sel.mean(), 2),
            "area m^2": round(float(((z / focal_px) ** 2).sum()), 3),
            "depth p5 m": round(float(np.percentile(z, 5)), 3),
            "depth median m": round(float(np.median(z)), 3),
            "depth p95 m": round(float(np.percentile(z, 95)), 3),
        }
        if normals is not None:
            mean = normals[sel].mean(0)
            unit = mean / max(float(np.linalg.norm(mean)), 1e-12)
            spread = np.degrees(np.arccos(np.clip(normals[sel] @ unit, -1, 1))).mean()
            row.update(
                {
                    "normal x": round(float(unit[0]), 3),
                    "normal y": round(float(unit[1]), 3),
                    "normal z": round(float(unit[2]), 3),
                    "normal spread deg": round(float(spread), 1),
                }
            )
        rows.append(row)
    return pd.DataFrame(rows).sort_values("pixels %", ascending=False, ignore_index=True)


def _boundary_picture(image: np.ndarray, seg_edge: np.ndarray, depth_edge: np.ndarray) -> np.ndarray:
    out = (image.astype(np.float32) * 0.45).astype(np.uint8)
    out[seg_edge] = SEG_COLOUR
    out[depth_edge] = DEPTH_COLOUR
    out[seg_edge & depth_edge] = BOTH_COLOUR
    return out


def _share(value: float) -> str:
    return "n/a (none found)" if not np.isfinite(value) else f"{100 * value:.0f}%"


def consistency_view(analysis: Analysis, model: str | None, focal_px: float | None = None) -> ConsistencyView:
    """The angle map, the boundary picture, the per-class table and their summary."""
    pred = analysis.prediction(model)
    kinds = {t.kind: t for t in pred.tasks}
    seg = next((t for t in pred.tasks if t.is_classification), None)
    if "depth" not in kinds or "normals" not in kinds or seg is None:
        raise InputError(f"model {pred.model!r} lacks segmentation, depth or normals: no consistency to show")
    focal, source = focal_in_use(analysis, focal_px)
    depth = pred.pred(kinds["depth"].name)
    angle = angle_between(normals_from_depth(depth, focal), pred.pred(kinds["normals"].name))
    span = int(np.ceil(pred.size[0] / pred.manifest.input.width))
    seg_edge, depth_edge = label_boundaries(pred.pred(seg.name)), depth_edges(depth, span=span)
    seg_near, depth_near = edge_agreement(seg_edge, depth_edge)
    finite = angle[np.isfinite(angle)]
    within = ", ".join(f"{100 * (finite < t).mean():.0f}% under {t:g} deg" for t in ANGLE_THRESHOLDS)
    md = (
        f"**{pred.model}**, focal length {focal:.1f} px ({source}). Normals derived from the predicted depth vs "
        f"the predicted normals: median angle **{np.median(finite):.1f} deg**, {within}. Segmentation boundaries "
        f"(magenta) near a depth edge (cyan; both: white) within {EDGE_TOLERANCE_PX} px: **{_share(seg_near)}**; "
        f"depth edges (a jump over {100 * EDGE_REL_JUMP:.0f}% across {span} px) near a boundary: "
        f"**{_share(depth_near)}**."
    )
    angle_panel = vis.heatmap_panel(np.nan_to_num(angle, nan=0.0), 0.0, MAX_ANGLE_DEG, "deg")[1]
    return ConsistencyView(
        angle_panel, _boundary_picture(pred.image, seg_edge, depth_edge), class_geometry(pred, focal), md
    )
