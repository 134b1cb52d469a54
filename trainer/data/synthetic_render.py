"""Vectorised ray casting, texturing, shading and sensor models for the synthetic NYUD-v2 set.

Pure numpy. Every function works on whole pixel grids: one ray per pixel centre, through pixel
(row v, column u) the camera-frame direction ``((u - cx) / fx, (v - cy) / fy, 1)``, so that the ray
parameter of a hit is its z-depth. Camera frame: x right, y down, z forward (OpenCV / NYU).
World frame: Z up (see ``synthetic_layout``).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from trainer.data.synthetic_layout import (
    EMISSIVE_KINDS,
    NUM_KINDS,
    NUM_ROOM_PRIMS,
    P_BOX,
    P_CYL,
    P_ROOM,
    P_SPHERE,
    T_BOOK,
    T_CANVAS,
    T_CARPET,
    T_FABRIC,
    T_LAMP,
    T_LEAVES,
    T_OUTSIDE,
    T_PAINT,
    T_PLAIN,
    T_PLANKS,
    T_PRINT,
    T_SCREEN_OFF,
    T_SCREEN_ON,
    T_STRIPES,
    T_TILES,
    T_WOOD,
    Layout,
)
from trainer.data.synthetic_profile import NYU, Profile

NEAR = 0.05
"""Rays hit nothing closer than this (metres); bounds of primitives are clipped at this depth."""
RECT_PAD = 1
"""Pixels added around a primitive's projected bounding rectangle."""
BATCH_OVERHEAD_PX = 1500
"""Pixel count that costs as much as one extra numpy call: a group's boxes are cast together over
their union rectangle when that wastes less than this per box."""
NYU_INTRINSICS = (518.8579, 519.4696, 325.5824, 253.7362)
"""fx, fy, cx, cy of NYU's Kinect RGB camera at NYU_SIZE."""
NYU_SIZE = (480, 640)
NOISE_TILE_BITS = 8
NOISE_TILE = 1 << NOISE_TILE_BITS
"""Side of the shared square noise tiles (a power of two: lookups wrap with a bit mask)."""
NOISE_SEED = 20240611
"""Fixed seed of the shared noise tiles (constants of the generator, not of an image)."""
HASH_SIZE = 4096
"""Length of the table of random values hashed by integer cell (tile / plank tones)."""

# Texture structure (texture coordinates in metres; see ``_pattern``).
GROUT_WIDTH = 0.03
"""Grout lines of tiles, as a fraction of the tile size."""
PLANK_LENGTH = 8.0
"""Floor planks are this many plank widths long."""
PLANK_GAP, PLANK_GAP_DARKEN = 0.04, 0.55
"""Joint between planks (fraction of the plank width) and how much darker it is."""
BOOK_BANDS = ((0.7, 0.8), (0.1, 0.25))
"""Bands of the second colour on book spines, in normalised spine height |vn| (the second band
on half of the books)."""
HORIZON = -0.2
"""Outside views: the ground / skyline starts this far below the window's middle (normalised)."""
PRINT_INK = 0.3
"""Fraction of a printed line's pitch that is ink (``T_PRINT``: its scale is the line pitch)."""
PRINT_WORD = 4.0
"""Length of a printed word, in line pitches; PRINT_GAP of the words are left blank."""
PRINT_GAP = 0.35
PRINT_MARGIN = 0.85
"""Printed area: |normalised face coordinate| below this (the sheet's margins stay blank)."""
GAUSS_POOL = 1 << 22
"""Size of the shared pool of standard normal values that sensor noise is cut from."""

# Shading.
GAMMA_LINEAR = 2.0
"""Display colours are squared to linear light and square-rooted back (a cheap gamma 2)."""
LIGHT_FALLOFF = 0.25
"""Irradiance of a point light ~ I / (1 + LIGHT_FALLOFF * d^2)."""
EMISSION = 1.8
"""Linear radiance of emissive surfaces relative to the exposure target."""
CORNER_AO, CORNER_AO_RANGE = 0.35, 0.25
"""Darkening near room edges/corners: 1 - CORNER_AO * exp(-distance / CORNER_AO_RANGE) (metres)."""
CONTACT_AO, CONTACT_AO_RANGE = 0.45, 0.18
"""Darkening of the floor around an object's footprint (scaled by its height up to 1 m)."""
EXPOSURE_PERCENTILE = 96
"""Auto-exposure maps this percentile of non-emissive luminance to a display value drawn from the
profile's ``exposure_target`` (white balance: ``white_balance_std``; see ``synthetic_profile``)."""
SPECULAR_KINDS = (T_PLAIN, T_SCREEN_OFF, T_TILES, T_WOOD, T_PLANKS)
SPECULAR_STRENGTH = (0.0, 0.25)
"""Range of the per-image highlight strength on the smooth (specular) kinds."""
SPECULAR_LIGHTS = 1
"""Only the first (ceiling) light makes highlights."""
SPECULAR_SQUARINGS = 4
"""Highlight exponent 2^4 = 16 (repeated squaring is much cheaper than a power)."""
LIGHT_SCALE = 0.2
"""Irradiance per unit of a light's intensity at 1 m (before falloff)."""

# Image sensor (blur, noise and vignetting ranges: see ``synthetic_profile``).
QUANT_LEVELS = 255
"""8-bit quantisation of the image."""

# Depth sensor (Kinect v1-like).
KINECT_FOCAL = NYU_INTRINSICS[0]
KINECT_BASELINE = 0.075
"""Projector-camera baseline (metres) of the Kinect v1."""
KINECT_SUBPIXEL = 8
"""Disparity is measured in 1/8 pixel at the sensor's native focal length."""
DEPTH_NOISE = (0.0012, 0.0019, 0.4)
"""Axial noise std sigma(z) = a + b (z - c)^2 metres (Nguyen et al. 2012)."""
MAX_RANGE = 10.0
"""No depth beyond this many metres."""
DISCONTINUITY_REL = 0.05
"""A depth jump larger than this fraction of the depth between 4-neighbours is a discontinuity."""
SHADOW_WIDTH_PX = 2
"""Missing band width (pixels, at 384 px width) on the far side of a discontinuity."""
OBLIQUE_COS = 0.12
"""Surfaces seen at cos(incidence) below this return nothing."""
OBLIQUE_COS_SOFT = 0.3
"""Between OBLIQUE_COS and this, returns drop out at random (linearly more often)."""
SPECKLE_DROPOUT = 0.003
"""Fraction of pixels missing at random anywhere."""
EDGE_DEPTH_REL = 0.05
"""Edges also mark occlusion boundaries between different instances of the same class whose depth
differs by more than this fraction."""


# --------------------------------------------------------------------------- camera


def intrinsics(height: int, width: int, focal_scale: float = 1.0) -> tuple[float, float, float, float]:
    """NYU's Kinect RGB intrinsics (640x480) scaled to (height, width): (fx, fy, cx, cy); the focal
    lengths are further multiplied by ``focal_scale`` (a scene's ``Layout.focal_scale``; 1 in the
    "nyu" profile: x * 1.0 == x, so its intrinsics are unchanged)."""
    fx, fy, cx, cy = NYU_INTRINSICS
    sx, sy = width / NYU_SIZE[1], height / NYU_SIZE[0]
    return fx * sx * focal_scale, fy * sy * focal_scale, cx * sx, cy * sy


@lru_cache(maxsize=8)
def _pixel_slopes(height: int, width: int, focal_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    fx, fy, cx, cy = intrinsics(height, width, focal_scale)
    u = ((np.arange(width, dtype=np.float64) - cx) / fx).astype(np.float32)
    v = ((np.arange(height, dtype=np.float64) - cy) / fy).astype(np.float32)
    return np.broadcast_to(u[None, :], (height, width)), np.broadcast_to(v[:, None], (height, width))


def world_rays(layout: Layout, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World-frame ray directions (3 arrays (H, W) float32), with camera-frame z component 1."""
    su, sv = _pixel_slopes(height, width, layout.focal_scale)
    su, sv = su[:1], sv[:, :1]  # (1, W) and (H, 1): the products depend on one coordinate only
    r = layout.cam_to_world.astype(np.float32)
    return tuple(r[i, 0] * su + r[i, 1] * sv + r[i, 2] for i in range(3))  # type: ignore[return-value]


# --------------------------------------------------------------------------- ray casting


def _corners(centre: np.ndarray, half: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """World corners (B, 8, 3) of oriented boxes; corner bit 0/1/2 = +x/+y/+z side."""
    signs = np.array([[(i >> k & 1) * 2 - 1 for k in range(3)] for i in range(8)], np.float64)  # (8, 3)
    local = signs[None] * half[:, None, :]  # (B, 8, 3)
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    x = c * local[..., 0] - s * local[..., 1]
    y = s * local[..., 0] + c * local[..., 1]
    return np.stack([x, y, local[..., 2]], axis=-1) + centre[:, None, :]


_EDGES = np.array([(i, i | (1 << k)) for i in range(8) for k in range(3) if not i >> k & 1])  # (12, 2)


def _rects(layout: Layout, idx: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixel rectangles (B, 4) = (row0, row1, col0, col1), end-exclusive, of primitives ``idx``;
    empty rectangles (row0 >= row1) for primitives outside the view."""
    p = layout.prims
    return _rects_of_boxes(layout, p.centre[idx], p.half[idx], p.yaw[idx], height, width)


def _rects_of_boxes(layout: Layout, centre, half, yaw, height: int, width: int) -> np.ndarray:
    """Pixel rectangles (B, 4) bounding the projections of oriented boxes (B, 3), (B, 3), (B,)."""
    corners = _corners(centre, half, yaw)  # (B, 8, 3)
    cam = (corners - layout.cam_position) @ layout.cam_to_world  # (B, 8, 3) camera frame
    fx, fy, cx, cy = intrinsics(height, width, layout.focal_scale)
    z = cam[..., 2]
    front = z > NEAR
    n = len(centre)
    out = np.zeros((n, 4), np.int64)
    all_front = front.all(axis=1)
    pts_u = np.full((n, 2), np.nan)
    pts_v = np.full((n, 2), np.nan)
    if all_front.any():
        u = fx * cam[all_front, :, 0] / z[all_front] + cx
        v = fy * cam[all_front, :, 1] / z[all_front] + cy
        pts_u[all_front] = np.stack([u.min(1), u.max(1)], 1)
        pts_v[all_front] = np.stack([v.min(1), v.max(1)], 1)
    for b in np.flatnonzero(front.any(axis=1) & ~all_front):  # straddles the near plane: clip edges
        pts = [cam[b, front[b]]]
        a, e = cam[b, _EDGES[:, 0]], cam[b, _EDGES[:, 1]]
        cross = (a[:, 2] > NEAR) != (e[:, 2] > NEAR)
        if cross.any():
            t = (NEAR - a[cross, 2]) / (e[cross, 2] - a[cross, 2])
            pts.append(a[cross] + t[:, None] * (e[cross] - a[cross]))
        q = np.concatenate(pts)
        u, v = fx * q[:, 0] / q[:, 2] + cx, fy * q[:, 1] / q[:, 2] + cy
        pts_u[b] = (u.min(), u.max())
        pts_v[b] = (v.min(), v.max())
    ok = ~np.isnan(pts_u[:, 0])
    out[ok, 0] = np.clip(np.floor(pts_v[ok, 0]) - RECT_PAD, 0, height)
    out[ok, 1] = np.clip(np.ceil(pts_v[ok, 1]) + 1 + RECT_PAD, 0, height)
    out[ok, 2] = np.clip(np.floor(pts_u[ok, 0]) - RECT_PAD, 0, width)
    out[ok, 3] = np.clip(np.ceil(pts_u[ok, 1]) + 1 + RECT_PAD, 0, width)
    out[~ok] = 0
    return out


def _cast_room(layout: Layout, inv_d: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Exit distance of every ray from the room box and the room primitive it hits (0..5):
    floor 0 / ceiling 1 (z), wall0 y=0 (2), wall1 x=Lx (3), wall2 y=Ly (4), wall3 x=0 (5)."""
    o = layout.cam_position
    size = layout.room
    tmp = np.empty_like(inv_d[0])
    ts = []
    for a in range(3):
        t_a = np.multiply(np.float32(-o[a]), inv_d[a])
        ts.append(np.maximum(t_a, np.multiply(np.float32(size[a] - o[a]), inv_d[a], out=tmp), out=t_a))
    t = np.minimum(ts[0], ts[1])
    np.minimum(t, ts[2], out=t)
    pid = np.where(inv_d[0] > 0, np.intp(3), np.intp(5))
    np.copyto(pid, np.where(inv_d[1] > 0, np.intp(4), np.intp(2)), where=ts[1] <= t)
    np.copyto(pid, inv_d[2] > 0, where=ts[2] <= t)
    return t, pid


def _update(zbuf, pid, rect, best, ids, k) -> None:
    """Write a rectangle's nearest hits into the z-buffer / primitive ids where they are closer."""
    r0, r1, c0, c1 = rect
    zb = zbuf[r0:r1, c0:c1]
    closer = best < zb
    np.copyto(zb, best, where=closer)
    np.copyto(pid[r0:r1, c0:c1], ids[0] if k is None else np.asarray(ids).take(k), where=closer)


_AXIS_PERM = {
    0: ((0, 1.0), (1, 1.0)),
    1: ((1, 1.0), (0, -1.0)),
    2: ((0, -1.0), (1, -1.0)),
    3: ((1, -1.0), (0, 1.0)),
}
"""For yaw = k * 90 deg: (world axis, sign) giving the box's local x and y ray components."""
YAW_EPS = 1e-9


def _slabs(layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Slab bounds of every primitive relative to the camera in its own frame: lo, hi (P, 3)
    float32, such that a ray (local direction l) is inside slab a for t in [lo_a / l_a, hi_a / l_a]."""
    p = layout.prims
    rel = layout.cam_position[None, :] - p.centre
    c, s = np.cos(p.yaw), np.sin(p.yaw)
    o_local = np.stack([c * rel[:, 0] + s * rel[:, 1], c * rel[:, 1] - s * rel[:, 0], rel[:, 2]], 1)
    return (-p.half - o_local).astype(np.float32), (p.half - o_local).astype(np.float32)


def _uniform_sign(x: np.ndarray) -> int:
    """+1 / -1 when every value of a rectangle of (inverse) ray components has that sign, else 0.

    Ray components are affine in the pixel coordinates, so the four corners decide (inverse
    components have the same sign)."""
    lo_hi = (x[0, 0], x[0, -1], x[-1, 0], x[-1, -1])
    low, high = float(min(lo_hi)), float(max(lo_hi))
    if 0.0 < low and high < math.inf:
        return 1
    if -math.inf < low and high < 0.0:
        return -1
    return 0


def _cast_boxes(layout, ids, rect, d, inv_d, slabs, zbuf, pid) -> None:
    """Cast the rays of a rectangle against K boxes of one yaw at once (slab test in the boxes'
    frame); update the z-buffer and primitive ids in place."""
    r0, r1, c0, c1 = rect
    yaw = float(layout.prims.yaw[ids[0]])  # all boxes of a group share their object's yaw
    quarter = round(yaw / (math.pi / 2))
    lo_k, hi_k = slabs[0][ids], slabs[1][ids]  # (K, 3)
    if abs(yaw - quarter * math.pi / 2) < YAW_EPS:
        # axis-aligned in the world's xy: the local inverse directions are signed world ones
        (ax_x, sg_x), (ax_y, sg_y) = _AXIS_PERM[quarter % 4]
        inv = (inv_d[ax_x][r0:r1, c0:c1], inv_d[ax_y][r0:r1, c0:c1], inv_d[2][r0:r1, c0:c1])
        signs = np.array([sg_x, sg_y, 1.0], np.float32)
        lo_k, hi_k = lo_k * signs, hi_k * signs
        lo_k, hi_k = np.minimum(lo_k, hi_k), np.maximum(lo_k, hi_k)  # a negated axis swaps its faces
    else:
        c, s = np.float32(math.cos(yaw)), np.float32(math.sin(yaw))
        dx, dy = d[0][r0:r1, c0:c1], d[1][r0:r1, c0:c1]
        with np.errstate(divide="ignore"):
            inv = (1.0 / (c * dx + s * dy), 1.0 / (c * dy - s * dx), inv_d[2][r0:r1, c0:c1])
    tnear = tfar = None
    for a in range(3):
        sign = _uniform_sign(inv[a])
        if sign > 0:  # entering through the low slab face on every ray of the rectangle
            t0, t1 = lo_k[:, a, None, None] * inv[a], hi_k[:, a, None, None] * inv[a]  # (K, h, w)
        elif sign < 0:
            t0, t1 = hi_k[:, a, None, None] * inv[a], lo_k[:, a, None, None] * inv[a]
        else:
            lo, hi = lo_k[:, a, None, None] * inv[a], hi_k[:, a, None, None] * inv[a]
            t0, t1 = np.minimum(lo, hi), np.maximum(lo, hi)
        tnear = t0 if tnear is None else np.maximum(tnear, t0, out=tnear)
        tfar = t1 if tfar is None else np.minimum(tfar, t1, out=tfar)
    miss = (tnear > tfar) | (tnear <= NEAR)
    np.copyto(tnear, np.float32(np.inf), where=miss)
    if len(ids) == 1:
        _update(zbuf, pid, rect, tnear[0], ids, None)
        return
    best = tnear.min(axis=0)
    k = np.zeros(best.shape, np.intp)
    for j in range(1, len(ids)):
        np.copyto(k, j, where=tnear[j] == best)
    _update(zbuf, pid, rect, best, ids, k)


def _cast_cylinder(layout, i, rect, d, zbuf, pid) -> None:
    """Vertical cylinder: side and the cap facing the camera."""
    r0, r1, c0, c1 = rect
    p = layout.prims
    dx, dy, dz = (a[r0:r1, c0:c1] for a in d)
    o = (layout.cam_position - p.centre[i]).astype(np.float32)
    rad, hh = np.float32(p.half[i, 0]), np.float32(p.half[i, 2])
    a = dx * dx + dy * dy
    b = o[0] * dx + o[1] * dy
    cc = o[0] * o[0] + o[1] * o[1] - rad * rad
    disc = b * b - a * cc
    inf = np.float32(np.inf)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_side = (-b - np.sqrt(disc)) / a
        z_side = o[2] + t_side * dz
        ok = (disc >= 0) & (np.abs(z_side) <= hh) & (t_side > NEAR)
        t_side = np.where(ok, t_side, inf)
        cap = hh if o[2] > 0 else -hh
        t_cap = (cap - o[2]) / dz
        xc, yc = o[0] + t_cap * dx, o[1] + t_cap * dy
        t_cap = np.where((xc * xc + yc * yc <= rad * rad) & (t_cap > NEAR), t_cap, inf)
    _update(zbuf, pid, rect, np.minimum(t_side, t_cap), (i,), None)


def _cast_sphere(layout, i, rect, d, zbuf, pid) -> None:
    r0, r1, c0, c1 = rect
    p = layout.prims
    dx, dy, dz = (a[r0:r1, c0:c1] for a in d)
    o = (layout.cam_position - p.centre[i]).astype(np.float32)
    a = dx * dx + dy * dy + dz * dz
    b = o[0] * dx + o[1] * dy + o[2] * dz
    cc = np.float32(o @ o - p.half[i, 0] ** 2)
    disc = b * b - a * cc
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / a
    _update(zbuf, pid, rect, np.where((disc >= 0) & (t > NEAR), t, np.float32(np.inf)), (i,), None)


def cast(layout: Layout, d: tuple[np.ndarray, ...], height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit of every pixel ray: z-depth (H, W) float32 and primitive index (H, W) intp."""
    with np.errstate(divide="ignore"):
        inv_d = [np.float32(1.0) / a for a in d]
    zbuf, pid = _cast_room(layout, inv_d)
    p = layout.prims
    ids = np.arange(NUM_ROOM_PRIMS, len(p.ptype))
    if len(ids) == 0:
        return zbuf, pid
    rects = _rects(layout, ids, height, width)
    slabs = _slabs(layout)
    area = (rects[:, 1] - rects[:, 0]).clip(0) * (rects[:, 3] - rects[:, 2]).clip(0)
    visible = area > 0
    ids, rects, area = ids[visible], rects[visible], area[visible]
    is_box = p.ptype[ids] == P_BOX
    # boxes: per cast group, batched over the union rectangle when that is cheap enough
    groups = p.group[ids[is_box]]
    box_ids, box_rects, box_area = ids[is_box], rects[is_box], area[is_box]
    bounds = np.flatnonzero(np.diff(groups)) + 1  # primitives of a group are consecutive
    rect_list, area_list = box_rects.tolist(), box_area.tolist()  # python ints: cheaper per group
    for start, stop in zip([0, *bounds.tolist()], [*bounds.tolist(), len(groups)]):
        if stop == start:  # no visible box at all
            continue
        if stop == start + 1:
            _cast_boxes(layout, box_ids[start:stop], rect_list[start], d, inv_d, slabs, zbuf, pid)
            continue
        rs = rect_list[start:stop]
        union = (min(r[0] for r in rs), max(r[1] for r in rs), min(r[2] for r in rs), max(r[3] for r in rs))
        union_area = (union[1] - union[0]) * (union[3] - union[2])
        n = stop - start
        if n * union_area <= sum(area_list[start:stop]) + n * BATCH_OVERHEAD_PX:
            _cast_boxes(layout, box_ids[start:stop], union, d, inv_d, slabs, zbuf, pid)
        else:
            for j in range(start, stop):
                _cast_boxes(layout, box_ids[j : j + 1], rect_list[j], d, inv_d, slabs, zbuf, pid)
    for i, rect in zip(ids[~is_box], rects[~is_box]):
        (_cast_cylinder if p.ptype[i] == P_CYL else _cast_sphere)(layout, i, rect, d, zbuf, pid)
    return zbuf, pid


# --------------------------------------------------------------------------- surface attributes

# rows of the per-primitive table gathered by ``surface`` (one row per attribute: each gathered
# attribute is a contiguous (H, W) plane, about twice as fast downstream as strided columns)
_CX, _CY, _CZ, _COS, _SIN, _HX, _HY, _HZ, _OFFU, _OFFV, _SIGN = range(11)


def surface(layout: Layout, d, z: np.ndarray, pid: np.ndarray) -> dict[str, np.ndarray]:
    """Hit points, local coordinates, world normals and texture coordinates of every pixel.

    Returns (all (H, W) float32 unless noted): ``px, py, pz`` world hit point; ``nx, ny, nz``
    world unit normal facing the camera; ``u_face, v_face`` coordinates on the hit face in metres
    (from the primitive's centre) and ``u, v`` the same plus a per-primitive texture offset;
    ``hx, hy, hz`` the primitive's half sizes; ``fx, fz`` (bool) whether the face's normal is
    the local x / z axis.
    """
    p = layout.prims
    o = layout.cam_position.astype(np.float32)
    px, py, pz = (o[a] + z * d[a] for a in range(3))
    n_prims = len(p.ptype)
    tab = np.empty((11, n_prims), np.float32)
    tab[_CX : _CZ + 1] = p.centre.T
    tab[_COS], tab[_SIN] = np.cos(p.yaw), np.sin(p.yaw)
    tab[_HX : _HZ + 1] = p.half.T
    tab[_OFFU : _OFFV + 1] = p.tex_offset.T
    tab[_SIGN] = np.where(p.ptype == P_ROOM, -1.0, 1.0)  # the room is seen from inside
    g = np.take(tab, pid, axis=1)  # (11, H, W)
    cos_y, sin_y = g[_COS], g[_SIN]
    qx, qy = px - g[_CX], py - g[_CY]
    lx, ly, lz = cos_y * qx + sin_y * qy, cos_y * qy - sin_y * qx, pz - g[_CZ]
    hx, hy, hz = g[_HX], g[_HY], g[_HZ]
    ax, ay, az = np.abs(lx) / hx, np.abs(ly) / hy, np.abs(lz) / hz
    # box / room: the face is the axis where the point lies on the slab boundary (ratio ~ 1)
    fx = (ax >= ay) & (ax >= az)
    fy = ~fx & (ay >= az)
    fz = ~fx & ~fy
    sign, one = g[_SIGN], np.float32(1.0)
    nlx = np.copysign(one, lx) * sign * fx
    nly = np.copysign(one, ly) * sign * fy
    nlz = np.copysign(one, lz) * sign * fz
    curved = np.flatnonzero((p.ptype >= P_CYL).take(pid.ravel()))
    if len(curved):
        ptype = p.ptype.take(pid.ravel()[curved])
        fl = [a.reshape(-1) for a in (nlx, nly, nlz, fx, fy, fz)]
        clx, cly, clz = (a.reshape(-1)[curved] for a in (lx, ly, lz))
        rho = np.sqrt(clx * clx + cly * cly)
        is_sphere = ptype == P_SPHERE
        hr, hh = hx.reshape(-1)[curved], hz.reshape(-1)[curved]
        cap = ~is_sphere & (np.abs(clz) / hh > rho / hr)
        norm = np.where(is_sphere, np.sqrt(rho * rho + clz * clz), np.where(cap, 1, rho)).astype(np.float32)
        norm = np.maximum(norm, np.float32(1e-6))
        fl[0][curved] = np.where(cap, 0, clx / norm)
        fl[1][curved] = np.where(cap, 0, cly / norm)
        fl[2][curved] = np.where(cap, np.copysign(np.float32(1), clz), np.where(is_sphere, clz / norm, 0))
        side_x = np.abs(clx) > np.abs(cly)
        fl[3][curved], fl[4][curved], fl[5][curved] = ~cap & side_x, ~cap & ~side_x, cap
    nx, ny = cos_y * nlx - sin_y * nly, sin_y * nlx + cos_y * nly
    # texture coordinates on the face: the two local axes other than the normal's
    u = lx + (ly - lx) * fx
    v = lz + (ly - lz) * fz
    return {
        "px": px, "py": py, "pz": pz, "nx": nx, "ny": ny, "nz": nlz, "u_face": u, "v_face": v,
        "u": u + g[_OFFU], "v": v + g[_OFFV], "hx": hx, "hy": hy, "hz": hz, "fx": fx, "fz": fz,
    }  # fmt: skip


_FACE_COORDS = {"un": ("u_face", "fx", "hy", "hx"), "vn": ("v_face", "fz", "hy", "hz")}
"""Normalised face coordinate -> (coordinate, face flag, half size where the flag is set, else)."""


def face_coordinate(surf: dict[str, np.ndarray], sel: np.ndarray, name: str) -> np.ndarray:
    """One of ``face_normalised``'s coordinates ("un" or "vn") on the flat pixel indices ``sel``."""
    coord, flag, if_set, otherwise = (surf[k].reshape(-1).take(sel) for k in _FACE_COORDS[name])
    return coord / np.where(flag, if_set, otherwise)


# --------------------------------------------------------------------------- textures


@lru_cache(maxsize=1)
def _tiles() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shared tileable noise, flattened: smooth (1/f^2 spectrum) and fine (1/f), each NOISE_TILE^2
    float32 values with zero mean and unit std, and a hash table of uniform [0, 1) values."""
    rng = np.random.default_rng(NOISE_SEED)
    n = NOISE_TILE
    f = np.fft.fftfreq(n)
    radius = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    radius[0, 0] = 1.0
    out = []
    for power in (2.0, 1.0):
        spec = np.fft.fft2(rng.standard_normal((n, n))) / radius**power
        spec[0, 0] = 0.0
        t = np.real(np.fft.ifft2(spec))
        out.append(((t - t.mean()) / t.std()).astype(np.float32).ravel())
    return out[0], out[1], rng.random(HASH_SIZE).astype(np.float32)


@lru_cache(maxsize=1)
def _gauss_pool() -> np.ndarray:
    """GAUSS_POOL standard normal float32 values (fixed seed); sensor noise of an image is a window
    of it at a random offset (drawing fresh normals costs more than the rest of the sensor model)."""
    return np.random.default_rng(NOISE_SEED + 1).standard_normal(GAUSS_POOL, dtype=np.float32)


def gaussian(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 noise of ``shape``: a window of the shared pool at a random offset
    and sign (fresh draws when the pool is too small)."""
    n = math.prod(shape)
    pool = _gauss_pool()
    if n > len(pool) // 2:
        return rng.standard_normal(shape, dtype=np.float32)
    start = int(rng.integers(len(pool) - n))
    return pool[start : start + n].reshape(shape) * np.float32(rng.choice([-1.0, 1.0]))


def _noise(tile: np.ndarray, u: np.ndarray, v: np.ndarray, scale) -> np.ndarray:
    """Nearest lookup of a flattened tile at (u, v) * scale texels (u, v positive).

    Texel indices are int32 (texture coordinates are below ~200 m and scales below ~1000 texels
    per metre, far inside its range), about twice as fast as intp with the same values."""
    iu = (u * scale).astype(np.int32)
    iu &= NOISE_TILE - 1
    iv = (v * scale).astype(np.int32)
    iv &= NOISE_TILE - 1
    iv <<= NOISE_TILE_BITS
    iv |= iu
    return tile.take(iv)


def _hash(table: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    return table.take((i * 73 + j * 179) & (HASH_SIZE - 1))


def _material_tables(layout: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per material: kind (M,) int8, colours (9, M) float32 (c1 rgb, c2 rgb, c3 rgb), scale (M,)."""
    mats = layout.prims.materials
    kinds = np.array([m.kind for m in mats], np.int8)
    colours = np.array([m.c1 + m.c2 + m.c3 for m in mats], np.float32).T.copy()
    return kinds, colours, np.array([m.scale for m in mats], np.float32)


def _pattern_scene(k: int, get, u, v, sc, m, tiles) -> tuple:
    """The patterns of :func:`_pattern` that draw a scene: the view out of a window, book spines."""
    smooth, fine, table = tiles
    if k == T_OUTSIDE:
        vn = get("vn")
        skyline = 0.3 * _noise(smooth, u, u, 15.0 * sc) + 0.1 * _noise(fine, u, v, 40.0)
        ground = vn < skyline + HORIZON
        land = np.clip(0.5 + 0.5 * _noise(smooth, u, v, 30.0), 0, 1)
        return ground.astype(np.float32), land * ground, np.where(ground, 1.0, 1.0 - 0.15 * (vn + 1.0))
    if k == T_BOOK:
        avn = np.abs(get("vn"))
        (a0, a1), (b0, b1) = BOOK_BANDS
        band = ((avn > a0) & (avn < a1)) | ((avn > b0) & (avn < b1) & (_hash(table, m, m) > 0.5))
        return band.astype(np.float32), 0.0, 1 + 0.04 * _noise(fine, u, v, 200.0)
    raise ValueError(f"unknown scene texture kind {k}")


def _pattern(k: int, get, sc, m, tiles) -> tuple:
    """Texture pattern of kind ``k`` on n pixels: (t, t3, mult), each (n,) float32 or a scalar.

    ``get(name)`` gathers a surface attribute (u, v, un, vn) on the n pixels; ``sc`` (n,) is the
    material's scale, ``m`` (n,) its index. The albedo is ``mult * lerp(lerp(c1, c2, t), c3, t3)``
    with the material's colours. Inline numbers are appearance only: ``a * _noise(tile, u, v, f)``
    is a brightness variation of relative amplitude ``a`` at ``f`` texels per metre.
    """
    smooth, fine, table = tiles
    two_pi = np.float32(2 * np.pi)
    if k == T_LAMP:
        return 0.0, 0.0, 1.0
    u, v = get("u"), get("v")
    if k in (T_OUTSIDE, T_BOOK):
        return _pattern_scene(k, get, u, v, sc, m, tiles)
    if k == T_PLAIN:
        return 0.0, 0.0, 1 + 0.03 * _noise(fine, u, v, 150.0)
    if k == T_PAINT:
        return 0.0, 0.0, 1 + 0.05 * _noise(smooth, u, v, 40.0 * sc) + 0.015 * _noise(fine, u, v, 300.0)
    if k == T_STRIPES:
        return (np.sin(u * two_pi / sc) > 0.0).astype(np.float32), 0.0, 1 + 0.03 * _noise(smooth, u, v, 60.0)
    if k == T_WOOD:
        g = 0.5 + 0.5 * np.sin((v * sc * 6.0 + 0.6 * _noise(smooth, u * 0.25, v, 120.0)) * two_pi)
        return g * g * g * 0.7, 0.0, 1 + 0.05 * _noise(fine, u, v, 200.0)
    if k == T_PLANKS:
        fv = v / sc
        plank = fv.astype(np.int32)
        seg = (u / (sc * PLANK_LENGTH) + _hash(table, plank, plank * 7)).astype(np.int32)
        tone = 0.8 + 0.4 * _hash(table, plank, seg)
        g = 0.5 + 0.5 * np.sin((v * 40.0 + 0.6 * _noise(smooth, u * 0.25, v, 150.0)) * two_pi)
        return g * g * g * 0.6, 0.0, tone * (1.0 - PLANK_GAP_DARKEN * ((fv - plank) < PLANK_GAP))
    if k == T_TILES:
        fu, fv = u / sc, v / sc
        iu, iv = fu.astype(np.int32), fv.astype(np.int32)
        grout = ((fu - iu) < GROUT_WIDTH) | ((fv - iv) < GROUT_WIDTH)
        tone = 0.9 + 0.2 * _hash(table, iu, iv)
        return grout.astype(np.float32), 0.0, tone * (1 + 0.04 * _noise(smooth, u, v, 50.0))
    if k == T_CARPET:
        return 0.0, 0.0, 1 + 0.22 * _noise(fine, u, v, sc) + 0.1 * _noise(smooth, u, v, 30.0)
    if k == T_FABRIC:
        weave = np.sin(u * sc) * np.sin(v * sc)
        return 0.0, 0.0, 1 + 0.08 * _noise(fine, u, v, sc) + 0.06 * weave + 0.08 * _noise(smooth, u, v, 20.0)
    if k in (T_CANVAS, T_SCREEN_ON):
        a = np.clip(0.5 + 0.6 * _noise(smooth, u, v, 25.0 * sc), 0, 1)
        b = np.clip(0.5 + 0.6 * _noise(smooth, v + 3.0, u + 7.0, 40.0 * sc), 0, 1)
        return a, b, 1.0
    if k == T_SCREEN_OFF:  # dark glass with a diagonal reflection
        reflection = 0.5 - 0.5 * (get("un") + get("vn")) + 0.2 * _noise(smooth, u, v, 10.0 * sc)
        return 0.0, 0.0, 1.0 + 1.5 * np.clip(reflection, 0, 2)
    if k == T_PRINT:  # lines of words inside the margins: printed text, writing on a whiteboard
        line = v / sc
        row = line.astype(np.int32)
        ink = (line - row) < PRINT_INK
        word = _hash(table, (u / (sc * PRINT_WORD)).astype(np.int32), row) > PRINT_GAP
        inside = (np.abs(get("un")) < PRINT_MARGIN) & (np.abs(get("vn")) < PRINT_MARGIN)
        return (ink & word & inside).astype(np.float32), 0.0, 1 + 0.02 * _noise(fine, u, v, 200.0)
    if k == T_LEAVES:
        return 0.0, 0.0, 0.55 + 0.45 * np.clip(_noise(fine, u, v, sc), -1, 2)
    raise ValueError(f"unknown texture kind {k}")


def albedo(
    layout: Layout, surf: dict[str, np.ndarray], pid: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray]:
    """Display-space albedo of every pixel as three (H, W) float32 planes (r, g, b) in [0, 1], and an
    emissive mask (H, W) bool.

    Emissive surfaces (windows' outside view, screens that are on, lamp fittings) store their
    radiance in the albedo. Each texture kind is evaluated once on all its pixels.
    """
    tiles = _tiles()
    kinds, colours, scales = _material_tables(layout)
    h, w = pid.shape
    mat = layout.prims.material.astype(np.intp).take(pid.ravel())  # (N,)
    kind = kinds.take(mat)
    planes = [np.empty(h * w, np.float32) for _ in range(3)]
    order = np.argsort(kind, kind="stable")
    counts = np.bincount(kind, minlength=NUM_KINDS)
    starts = np.concatenate([[0], np.cumsum(counts)])
    for k in np.flatnonzero(counts):
        sel = order[starts[k] : starts[k + 1]]
        m = mat.take(sel)

        def get(name, sel=sel):
            if name in ("un", "vn"):
                return face_coordinate(surf, sel, name)
            return surf[name].reshape(-1).take(sel)

        t, t3, mult = _pattern(int(k), get, scales.take(m), m, tiles)
        for c in range(3):
            col = colours[c].take(m)
            if not (np.isscalar(t) and t == 0.0):
                col += (colours[3 + c].take(m) - col) * t
            if not (np.isscalar(t3) and t3 == 0.0):
                col += (colours[6 + c].take(m) - col) * t3
            if not (np.isscalar(mult) and mult == 1.0):
                col *= mult
            planes[c][sel] = col
    for x in planes:
        np.clip(x, 0.0, 1.0, out=x)
    planes = [x.reshape(h, w) for x in planes]
    emissive_kind = np.zeros(NUM_KINDS, bool)
    emissive_kind[list(EMISSIVE_KINDS)] = True
    return planes, emissive_kind.take(kind).reshape(h, w)


# --------------------------------------------------------------------------- shading


def shade(layout: Layout, surf, alb: list[np.ndarray], emissive: np.ndarray, pid, d, rng) -> list[np.ndarray]:
    """Linear radiance, three (H, W) float32 planes: Lambertian point lights with distance falloff,
    ambient, a Blinn-Phong highlight on smooth kinds, room-corner and contact darkening, emission.

    Irradiance is computed grey; the lights' mean colour tints the whole image (a light's colour
    only matters relative to the others, and the camera's white balance varies anyway). Written
    with in-place operations on a few (H, W) buffers, in the same order as the plain formulas."""
    nz = surf["nz"]
    # hemispherical ambient: surfaces facing up get a little more
    irr = nz * np.float32(0.15)
    irr += 1.0
    irr *= np.float32(layout.ambient)
    kinds = np.array([m.kind for m in layout.prims.materials], np.int8)  # (M,) as in _material_tables
    glossy_kind = np.zeros(NUM_KINDS, np.float32)
    glossy_kind[list(SPECULAR_KINDS)] = rng.uniform(*SPECULAR_STRENGTH)
    gloss = glossy_kind.take(kinds.take(layout.prims.material.astype(np.intp))).take(pid)
    spec = None
    tmp = np.empty_like(irr)
    for i, light in enumerate(layout.lights):
        ndl, fall, half = _light(light, surf, d if i < SPECULAR_LIGHTS else None, tmp)
        ndl *= fall
        irr += ndl
        if half is not None:
            half *= fall
            half *= gloss
            spec = half
    irr *= _occlusion(layout, surf, pid)
    total = np.sum([light.intensity for light in layout.lights], axis=0)
    tint = total / total.mean()
    lin = []
    for c in range(3):
        sq = alb[c] * alb[c]
        lin_c = sq * irr
        lin_c *= np.float32(tint[c])
        if spec is not None:
            lin_c += spec
        np.multiply(sq, np.float32(EMISSION), out=lin_c, where=emissive)
        lin.append(lin_c)
    return lin


def _dot3(a, b, out: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """a0 b0 + a1 b1 + a2 b2 of three (H, W) planes each, into ``out`` (``tmp``: scratch)."""
    np.multiply(a[0], b[0], out=out)
    out += np.multiply(a[1], b[1], out=tmp)
    out += np.multiply(a[2], b[2], out=tmp)
    return out


def _light(light, surf, d, tmp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """One point light: (cos of incidence clamped at 0, falloff, and with view rays ``d`` the
    Blinn-Phong term n.h ** 16 before falloff and gloss), each (H, W) float32."""
    n = (surf["nx"], surf["ny"], surf["nz"])
    ld = [np.float32(light.position[a]) - q for a, q in enumerate((surf["px"], surf["py"], surf["pz"]))]
    d2 = _dot3(ld, ld, np.empty_like(tmp), tmp)
    inv = np.sqrt(d2)
    np.divide(1.0, inv, out=inv)
    ndl = _dot3(n, ld, np.empty_like(tmp), tmp)
    ndl *= inv
    np.maximum(ndl, 0.0, out=ndl)
    d2 *= np.float32(LIGHT_FALLOFF)
    d2 += 1.0
    fall = np.divide(np.float32(sum(light.intensity) / 3 * LIGHT_SCALE), d2, out=d2)
    if d is None:
        return ndl, fall, None
    # Blinn-Phong: half vector of the light and view directions
    inv_dn = np.sqrt(_dot3(d, d, np.empty_like(tmp), tmp))
    np.divide(1.0, inv_dn, out=inv_dn)
    for a in range(3):
        ld[a] *= inv
        ld[a] -= np.multiply(d[a], inv_dn, out=tmp)
    ndh = _dot3(n, ld, inv, tmp)
    np.maximum(ndh, 0.0, out=ndh)
    ndh /= np.sqrt(_dot3(ld, ld, inv_dn, tmp), out=inv_dn)
    for _ in range(SPECULAR_SQUARINGS):
        ndh *= ndh
    return ndl, fall, ndh


def _occlusion(layout: Layout, surf, pid) -> np.ndarray:
    """Ambient darkening (H, W) in (0, 1]: near room corners/edges and on the floor around objects."""
    px, py, pz = surf["px"], surf["py"], surf["pz"]
    lx, ly, lz = layout.room
    # distance to the nearest room plane, ignoring the plane a room pixel lies on (its smallest)
    m1 = m2 = None
    for dist in (px, np.float32(lx) - px, py, np.float32(ly) - py, pz, np.float32(lz) - pz):
        if m1 is None:
            m1, m2 = dist, np.full(dist.shape, np.inf, np.float32)
            continue
        m2 = np.minimum(m2, np.maximum(m1, dist))
        m1 = np.minimum(m1, dist)
    dmin = np.where(pid < NUM_ROOM_PRIMS, m2, m1)
    occ = 1.0 - np.float32(CORNER_AO) * np.exp(dmin * np.float32(-1.0 / CORNER_AO_RANGE))
    if not layout.footprints:
        return occ
    # contact darkening on the floor around each floor-standing footprint, within its screen rectangle
    h, w = pid.shape
    reach = CONTACT_AO_RANGE * 3
    cen = np.array([[f[0][0], f[0][1], 0.0] for f in layout.footprints])
    half = np.array([[f[1] + reach, f[2] + reach, 0.01] for f in layout.footprints])
    yaw = np.array([f[3] for f in layout.footprints])
    rects = _rects_of_boxes(layout, cen, half, yaw, h, w)
    floor = pid == 0
    for (centre, hx, hy, a, height), (r0, r1, c0, c1) in zip(layout.footprints, rects):
        # only floor pixels darken (elsewhere the factor is exactly 1): compute on those alone
        on_floor = floor[r0:r1, c0:c1]
        if r0 >= r1 or c0 >= c1 or not on_floor.any():
            continue
        c, s = np.float32(math.cos(a)), np.float32(math.sin(a))
        qx = px[r0:r1, c0:c1][on_floor] - np.float32(centre[0])
        qy = py[r0:r1, c0:c1][on_floor] - np.float32(centre[1])
        ax = np.maximum(np.abs(c * qx + s * qy) - np.float32(hx), 0.0)
        ay = np.maximum(np.abs(c * qy - s * qx) - np.float32(hy), 0.0)
        dist = np.sqrt(ax * ax + ay * ay)
        dark = np.float32(CONTACT_AO * min(height, 1.0)) * np.exp(dist * np.float32(-1.0 / CONTACT_AO_RANGE))
        occ[r0:r1, c0:c1][on_floor] *= 1.0 - dark
    return occ


def expose(
    lin: list[np.ndarray], emissive: np.ndarray, rng: np.random.Generator, profile: Profile = NYU
) -> list[np.ndarray]:
    """Auto-exposure on the non-emissive pixels, white balance, gamma and (profiles with a
    ``tone_gamma`` range) a tone curve x -> x ** g: display planes (r, g, b), each (H, W) float32."""
    lum = ((lin[0][::4, ::4] + lin[1][::4, ::4] + lin[2][::4, ::4]) / 3)[~emissive[::4, ::4]]
    ref = np.percentile(lum, EXPOSURE_PERCENTILE) if lum.size else 1.0
    gain = rng.uniform(*profile.exposure_target) ** GAMMA_LINEAR / max(float(ref), 1e-6)
    wb = np.exp(rng.normal(0.0, profile.white_balance_std, size=3)) * gain
    tone = None if profile.tone_gamma == (1.0, 1.0) else np.float32(rng.uniform(*profile.tone_gamma) / 2)
    out = []
    for c in range(3):
        x = lin[c] * np.float32(wb[c])
        np.clip(x, 0.0, 1.0, out=x)
        out.append(np.sqrt(x, out=x) if tone is None else np.power(x, tone, out=x))
    return out


# --------------------------------------------------------------------------- sensors


def _blur(x: np.ndarray, wgt: np.float32) -> np.ndarray:
    """Slight blur of an (H, W) plane: each pixel keeps 1 - 4 wgt and takes wgt from each of its
    4-neighbours (edges replicated)."""
    out = x * (np.float32(1.0) - 4 * wgt)
    xw = x * wgt
    out[:, 1:] += xw[:, :-1]
    out[:, :-1] += xw[:, 1:]
    out[1:] += xw[:-1]
    out[:-1] += xw[1:]
    out[:, 0] += xw[:, 0]
    out[:, -1] += xw[:, -1]
    out[0] += xw[0]
    out[-1] += xw[-1]
    return out


def _vignette(height: int, width: int, strength: float) -> np.ndarray:
    """(H, W) float32 gain 1 - strength * r^2, r = 1 at the image corners."""
    y = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    return np.float32(1.0) - np.float32(strength / 2) * (x * x + y * y)


def _wide_sensor(planes, wgt, noise, std, rng: np.random.Generator, profile: Profile) -> list[np.ndarray]:
    """Blur (repeated), vignetting, read + shot noise of profiles beyond "nyu": planes (H, W) each;
    ``noise`` (3, H, W) standard normal; draws passes, shot noise k and vignetting from ``rng``."""
    passes = int(rng.integers(*profile.blur_passes))
    shot = np.float32(rng.uniform(*profile.shot_noise))
    vignette = _vignette(*planes[0].shape, float(rng.uniform(*profile.vignetting)))
    out = []
    for c, x in enumerate(planes):
        for _ in range(passes):
            x = _blur(x, wgt)
        x *= vignette
        sigma = std + shot * np.sqrt(np.maximum(x, 0.0))
        out.append(x + noise[c] * sigma)
    return out


def image_sensor(planes: list[np.ndarray], rng: np.random.Generator, profile: Profile = NYU) -> np.ndarray:
    """Camera model on display planes (r, g, b): slight 5-point blur, Gaussian noise, 2x2 chroma
    subsampling (even sizes) and 8-bit quantisation, like a JPEG-compressed Kinect frame; profiles
    beyond "nyu" add repeated blur, vignetting and shot noise (``_wide_sensor``).
    Returns the image (H, W, 3) float32 in [0, 1]."""
    wgt = np.float32(rng.uniform(*profile.blur_weight))
    std = np.float32(rng.uniform(*profile.image_noise_std))
    h, w = planes[0].shape
    if (
        profile.blur_passes == (1, 2)
        and profile.shot_noise == (0.0, 0.0)
        and profile.vignetting == (0.0, 0.0)
    ):
        noise = gaussian(rng, (3, h, w)) * std
        planes = [_blur(x, wgt) + noise[c] for c, x in enumerate(planes)]
    else:
        planes = _wide_sensor(planes, wgt, gaussian(rng, (3, h, w)), std, rng, profile)
    if h % 2 == 0 and w % 2 == 0:
        # replace each 2x2 block's chroma (colour - luma) by the block mean
        luma = np.float32(0.299) * planes[0] + np.float32(0.587) * planes[1] + np.float32(0.114) * planes[2]
        for c in range(3):
            chroma = planes[c] - luma
            pairs = chroma[0::2] + chroma[1::2]
            block = (pairs[:, 0::2] + pairs[:, 1::2]) * np.float32(0.25)  # (h/2, w/2)
            # widened to (h/2, w) first: broadcasting over a contiguous last axis is much faster
            x = luma.reshape(h // 2, 2, w) + np.repeat(block, 2, axis=1)[:, None, :]
            planes[c] = x.reshape(h, w)
    img = np.stack(planes, axis=-1)
    np.clip(img, 0.0, 1.0, out=img)
    img *= np.float32(QUANT_LEVELS)
    np.round(img, out=img)
    img *= np.float32(1.0 / QUANT_LEVELS)
    return img


def depth_sensor(
    z: np.ndarray, cos_inc: np.ndarray, hole: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Kinect-like depth (H, W) float32 from the clean z-depth: axial noise growing with depth,
    1/8-pixel disparity quantisation, and 0 (missing) on glass / black screens (``hole``), on the
    far side of depth discontinuities, on grazing surfaces, beyond ``MAX_RANGE`` and as speckles."""
    h, w = z.shape
    a, b, c = DEPTH_NOISE
    # in place, in the order of: sigma = a + b (z - c)^2; noisy = z + N(0, 1) sigma;
    # out = fb / max(round(fb / max(noisy, NEAR)), 1)
    sigma = np.subtract(z, np.float32(c))
    sigma_b = np.multiply(np.float32(b), sigma)
    sigma_b *= sigma
    sigma_b += np.float32(a)
    noisy = np.multiply(gaussian(rng, z.shape), sigma_b, out=sigma)
    noisy += z
    fb = np.float32(KINECT_FOCAL * KINECT_BASELINE * KINECT_SUBPIXEL)
    out = np.maximum(noisy, np.float32(NEAR), out=noisy)
    np.divide(fb, out, out=out)
    np.round(out, out=out)
    np.maximum(out, np.float32(1.0), out=out)
    np.divide(fb, out, out=out)
    missing = hole | (z > MAX_RANGE)
    # far side of discontinuities (the projector's shadow), widened horizontally
    rel = np.float32(DISCONTINUITY_REL)
    dzx = z[:, 1:] - z[:, :-1]
    dzy = z[1:] - z[:-1]
    jump_x = np.abs(dzx) > rel * np.minimum(z[:, 1:], z[:, :-1])
    jump_y = np.abs(dzy) > rel * np.minimum(z[1:], z[:-1])
    far = np.zeros((h, w), bool)
    far[:, 1:] |= jump_x & (dzx > 0)
    far[:, :-1] |= jump_x & (dzx < 0)
    far[1:] |= jump_y & (dzy > 0)
    far[:-1] |= jump_y & (dzy < 0)
    missing |= far
    for s in range(1, max(1, round(SHADOW_WIDTH_PX * w / 384))):
        missing[:, s:] |= far[:, :-s]
    # grazing surfaces: always missing below OBLIQUE_COS, randomly up to OBLIQUE_COS_SOFT
    p_drop = (np.float32(OBLIQUE_COS_SOFT) - cos_inc) * np.float32(1.0 / (OBLIQUE_COS_SOFT - OBLIQUE_COS))
    missing |= rng.random((h, w), dtype=np.float32) < np.maximum(p_drop, np.float32(SPECKLE_DROPOUT))
    np.copyto(out, np.float32(0.0), where=missing)
    return out


def edges(label: np.ndarray, inst: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Semantic edges (H, W) uint8: for every pair of 4-neighbours whose class differs (or whose
    instance differs with a depth jump above ``EDGE_DEPTH_REL``), the nearer pixel of the pair is 1."""
    h, w = label.shape
    out = np.zeros((h, w), bool)
    for ax in (0, 1):
        a = (slice(None), slice(None, -1)) if ax == 1 else (slice(None, -1), slice(None))
        b = (slice(None), slice(1, None)) if ax == 1 else (slice(1, None), slice(None))
        za, zb = z[a], z[b]
        diff = (label[a] != label[b]) | (
            (inst[a] != inst[b]) & (np.abs(za - zb) > EDGE_DEPTH_REL * np.minimum(za, zb))
        )
        a_near = za <= zb
        out[a] |= diff & a_near
        out[b] |= diff & ~a_near
    return out.astype(np.uint8)
