"""Point clouds from predicted depth: back-projection, and minimal GLB / PLY writers (numpy + struct).

Why not trimesh (what the depth demos use): measured here, ``import trimesh`` takes 1.25 s of the
app's start-up and its point-cloud PLY export cannot carry the per-point class label written below;
these two writers are ~60 lines. The tests read both files back with trimesh, an independent parser.

Back-projection with a pinhole camera at the image centre: for pixel (u, v) with depth Z (metres,
along the optical axis), ``X = (u + 0.5 - cx) Z / f``, ``Y = (v + 0.5 - cy) Z / f`` (OpenCV camera
frame: x right, y down, z forward). The default focal length is NYU's (fx = 518.858 px at 640 px
wide) scaled to the image width; the app lets the user edit it.

Files:
* GLB (glTF 2.0 binary): one mesh primitive with mode POINTS, POSITION (float32) and COLOR_0 (RGBA
  uint8, normalised). glTF is y-up with the camera looking down -z, so points are written as
  (X, -Y, -Z); ``gr.Model3D`` shows it as the camera saw it.
* PLY (binary little-endian): x, y, z float32 in the OpenCV camera frame (metres), red, green, blue
  uint8 and label uint8/uint16 (class index, or 255/65535 where there is none).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NYU_FX_PX = 518.858
NYU_WIDTH_PX = 640
DEFAULT_MAX_POINTS = 200_000
GLB_MAGIC = 0x46546C67  # "glTF"
GLB_VERSION = 2
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942
GL_FLOAT = 5126
GL_UNSIGNED_BYTE = 5121
GL_ARRAY_BUFFER = 34962
MODE_POINTS = 0


def default_focal(width: int) -> float:
    """NYU's fx scaled to an image ``width`` pixels wide."""
    return NYU_FX_PX * width / NYU_WIDTH_PX


@dataclass
class PointCloud:
    """N points: ``xyz`` (N, 3) float32 metres in the OpenCV camera frame, ``rgb`` (N, 3) uint8,
    ``label`` (N,) int64 class index (-1 if none)."""

    xyz: np.ndarray
    rgb: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return len(self.xyz)


def back_project(
    depth: np.ndarray,
    colours: np.ndarray,
    focal_px: float,
    labels: np.ndarray | None = None,
    max_points: int = DEFAULT_MAX_POINTS,
) -> PointCloud:
    """Depth (H, W) metres + colours (H, W, 3) -> a point cloud, subsampled on a regular grid to at
    most ``max_points`` points; pixels without a valid depth are skipped."""
    if focal_px <= 0 or not np.isfinite(focal_px):
        raise ValueError(f"focal length must be a positive number of pixels, got {focal_px}")
    h, w = depth.shape
    step = max(1, int(np.ceil(np.sqrt(h * w / max(max_points, 1)))))
    vs, us = np.mgrid[0:h:step, 0:w:step]
    z = depth[vs, us]
    valid = np.isfinite(z) & (z > 0)
    z = z[valid].astype(np.float32)
    u = us[valid].astype(np.float32)
    v = vs[valid].astype(np.float32)
    x = (u + 0.5 - w / 2.0) * z / focal_px
    y = (v + 0.5 - h / 2.0) * z / focal_px
    lab = labels[vs, us][valid].astype(np.int64) if labels is not None else np.full(z.shape, -1, np.int64)
    return PointCloud(
        np.stack([x, y, z], -1).astype(np.float32), colours[vs, us][valid].astype(np.uint8), lab
    )


def _pad4(data: bytes, fill: bytes) -> bytes:
    return data + fill * ((4 - len(data) % 4) % 4)


def write_glb(cloud: PointCloud, path: str | Path) -> Path:
    """Write a glTF 2.0 binary point cloud (see module docstring for the axes)."""
    path = Path(path)
    n = len(cloud)
    gl_xyz = (
        (cloud.xyz * np.array([1.0, -1.0, -1.0], np.float32)).astype("<f4") if n else np.zeros((1, 3), "<f4")
    )
    rgba = (
        np.concatenate([cloud.rgb, np.full((len(cloud.rgb), 1), 255, np.uint8)], 1)
        if n
        else np.zeros((1, 4), np.uint8)
    )
    count = max(n, 1)  # glTF accessors need count >= 1; an empty cloud becomes one point at the origin
    pos_bytes = gl_xyz.tobytes()
    col_bytes = rgba.astype(np.uint8).tobytes()
    binary = _pad4(pos_bytes + col_bytes, b"\x00")
    gltf = {
        "asset": {"version": "2.0", "generator": "hitts_demo.pointcloud"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "COLOR_0": 1}, "mode": MODE_POINTS}]}],
        "buffers": [{"byteLength": len(binary)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": len(pos_bytes), "target": GL_ARRAY_BUFFER},
            {
                "buffer": 0,
                "byteOffset": len(pos_bytes),
                "byteLength": len(col_bytes),
                "target": GL_ARRAY_BUFFER,
            },
        ],
        "accessors": [
            {
                "bufferView": 0,
                "componentType": GL_FLOAT,
                "count": count,
                "type": "VEC3",
                "min": gl_xyz.min(0).tolist(),
                "max": gl_xyz.max(0).tolist(),
            },
            {
                "bufferView": 1,
                "componentType": GL_UNSIGNED_BYTE,
                "normalized": True,
                "count": count,
                "type": "VEC4",
            },
        ],
    }
    json_bytes = _pad4(json.dumps(gltf, separators=(",", ":")).encode(), b" ")
    total = 12 + 8 + len(json_bytes) + 8 + len(binary)
    with path.open("wb") as fh:
        fh.write(struct.pack("<III", GLB_MAGIC, GLB_VERSION, total))
        fh.write(struct.pack("<II", len(json_bytes), CHUNK_JSON) + json_bytes)
        fh.write(struct.pack("<II", len(binary), CHUNK_BIN) + binary)
    return path


def write_ply(cloud: PointCloud, path: str | Path, comment: str = "") -> Path:
    """Write a binary little-endian PLY (OpenCV camera frame, metres; see module docstring)."""
    path = Path(path)
    n = len(cloud)
    wide = bool(n) and int(cloud.label.max()) >= 255
    label_type, label_dtype, none = ("ushort", "<u2", 65535) if wide else ("uchar", "u1", 255)
    dtype = np.dtype(
        [
            ("x", "<f4"),
            ("y", "<f4"),
            ("z", "<f4"),
            ("red", "u1"),
            ("green", "u1"),
            ("blue", "u1"),
            ("label", label_dtype),
        ]
    )
    rec = np.empty(n, dtype)
    rec["x"], rec["y"], rec["z"] = cloud.xyz[:, 0], cloud.xyz[:, 1], cloud.xyz[:, 2]
    rec["red"], rec["green"], rec["blue"] = cloud.rgb[:, 0], cloud.rgb[:, 1], cloud.rgb[:, 2]
    rec["label"] = np.where(cloud.label >= 0, cloud.label, none)
    header = ["ply", "format binary_little_endian 1.0"]
    header += [f"comment {line}" for line in comment.splitlines() if line]
    header += [
        f"element vertex {n}",
        "property float x",
        "property float y",
        "property float z",
        "property uchar red",
        "property uchar green",
        "property uchar blue",
        f"property {label_type} label",
        "end_header",
    ]
    with path.open("wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(rec.tobytes())
    return path
