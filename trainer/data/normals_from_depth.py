"""Surface normals derived from a depth map and pinhole intrinsics (torch-free).

Camera convention: x right, y down, z forward (along the optical axis), as in image coordinates.
Normals are oriented towards the camera: ``n . P <= 0`` for the back-projected point P, so a wall
facing the camera has n = (0, 0, -1) and the floor (below the camera) has n ~ (0, -1, 0).

Derived normals are an approximation (noisy at depth discontinuities and on in-painted depth); they
must be labelled as derived, never called ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layouts import unit_normals


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics in pixels for an image of ``height`` x ``width`` (pixel centres at integers)."""

    fx: float
    fy: float
    cx: float
    cy: float
    height: int
    width: int

    def resized(self, height: int, width: int) -> CameraIntrinsics:
        """The intrinsics of the same camera after resizing the image to ``height`` x ``width``.

        Focal lengths scale with the size; the principal point maps through pixel-centre
        coordinates: c' = (c + 0.5) * s - 0.5.
        """
        sy, sx = height / self.height, width / self.width
        return CameraIntrinsics(
            self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5, height, width
        )


def backproject(depth: np.ndarray, intrinsics: CameraIntrinsics) -> np.ndarray:
    """(H, W) depth in metres -> (3, H, W) float64 camera-space points (x right, y down, z forward)."""
    height, width = depth.shape
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    z = depth.astype(np.float64)
    return np.stack([(u - intrinsics.cx) / intrinsics.fx * z, (v - intrinsics.cy) / intrinsics.fy * z, z])


def _box_sum(a: np.ndarray, radius: int) -> np.ndarray:
    """(H, W) sums over (2r+1) x (2r+1) windows (edge-replicated), via a summed-area table."""
    k = 2 * radius + 1
    padded = np.pad(a, radius, mode="edge")
    table = np.pad(padded, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    return table[k:, k:] - table[:-k, k:] - table[k:, :-k] + table[:-k, :-k]


def smooth_depth(depth: np.ndarray, radius: int) -> np.ndarray:
    """(H, W) depth -> mean over the valid (> 0) pixels of each (2r+1)^2 window; missing stays 0."""
    if radius <= 0:
        return depth
    valid = (depth > 0).astype(np.float64)
    total, count = _box_sum(depth * valid, radius), _box_sum(valid, radius)
    return np.where(valid > 0, total / np.maximum(count, 1.0), 0.0)


def normals_from_depth(depth: np.ndarray, intrinsics: CameraIntrinsics, smooth_radius: int = 0) -> np.ndarray:
    """(H, W) depth in metres (0 = missing) -> (3, H, W) float32 unit normals facing the camera.

    The depth is first averaged over (2 * smooth_radius + 1)^2 windows of valid pixels (0: none;
    suppresses sensor quantisation). Then n = (P(u+1, v) - P(u-1, v)) x (P(u, v+1) - P(u, v-1)) of
    the back-projected points (one-sided at the image border), normalised and flipped where
    ``n . P > 0``. A pixel whose depth or any neighbour's depth used by the differences is missing
    gets the zero vector.
    """
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got {depth.shape}")
    if depth.shape != (intrinsics.height, intrinsics.width):
        raise ValueError(
            f"depth is {depth.shape}, intrinsics are for {(intrinsics.height, intrinsics.width)}"
        )
    valid = np.pad(depth > 0, 1, mode="edge")  # (H+2, W+2)
    depth = smooth_depth(depth, smooth_radius)
    points = np.pad(backproject(depth, intrinsics), ((0, 0), (1, 1), (1, 1)), mode="edge")  # (3, H+2, W+2)
    du = points[:, 1:-1, 2:] - points[:, 1:-1, :-2]  # (3, H, W)
    dv = points[:, 2:, 1:-1] - points[:, :-2, 1:-1]
    normals = np.cross(du, dv, axis=0)
    centre = points[:, 1:-1, 1:-1]
    normals *= np.where((normals * centre).sum(0) > 0, -1.0, 1.0)
    ok = valid[1:-1, 1:-1] & valid[1:-1, 2:] & valid[1:-1, :-2] & valid[2:, 1:-1] & valid[:-2, 1:-1]
    return unit_normals(np.where(ok, normals, 0.0))
