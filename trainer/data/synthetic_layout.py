"""Procedural indoor-scene layouts for the synthetic NYUD-v2 set: rooms, furniture, materials, camera.

Pure numpy. A layout is a list of primitives (oriented boxes, vertical cylinders, spheres) in a
world frame in metres with **Z up**; the room is the box ``[0, Lx] x [0, Ly] x [0, Hz]`` seen from
inside. Every primitive carries its NYUD-v2 class (``trainer.tasks.NYUD_CLASSES`` order), an
instance id, a cast group (boxes cast together in one batched ray test) and a material.

Walls are numbered 0..3: wall 0 is ``y = 0``, 1 is ``x = Lx``, 2 is ``y = Ly``, 3 is ``x = 0``.
An object's local frame has its origin at the centre of its footprint on its base, x along its
width, y towards its front, z up; an object standing against wall ``w`` has yaw ``w * 90 deg`` so
that its front faces the inside of the room.

Class choices worth knowing (all labels come from these, never from pixels): curtains are
labelled ``window``; pillows and blankets ``bed``; sofa cushions ``sofa``; armchairs and office
chairs ``chair``; monitors ``tv``; counters, cabinets, shelves, fridges and drawers
``furniture``; lamps, plants, bottles, boxes, balls, bins and ceiling light fittings
``objects``; framed pictures and posters ``picture``.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from trainer.data.synthetic_profile import NYU, Profile
from trainer.tasks import NYUD_CLASSES

CLASS_ID = {name: i for i, name in enumerate(NYUD_CLASSES)}
BED, BOOKS, CEILING, CHAIR, FLOOR = (CLASS_ID[c] for c in ("bed", "books", "ceiling", "chair", "floor"))
FURNITURE, OBJECTS, PICTURE, SOFA = (CLASS_ID[c] for c in ("furniture", "objects", "picture", "sofa"))
TABLE, TV, WALL, WINDOW = (CLASS_ID[c] for c in ("table", "tv", "wall", "window"))

# Primitive types.
P_ROOM, P_BOX, P_CYL, P_SPHERE = 0, 1, 2, 3
# Room primitive ids (the first six primitives of every scene, in this order).
ROOM_FLOOR, ROOM_CEILING, ROOM_WALL0, ROOM_WALL1, ROOM_WALL2, ROOM_WALL3 = range(6)
NUM_ROOM_PRIMS = 6

# Texture kinds (see ``synthetic_render.albedo``).
(T_PLAIN, T_PAINT, T_STRIPES, T_WOOD, T_PLANKS, T_TILES, T_CARPET, T_FABRIC, T_CANVAS, T_SCREEN_OFF,
 T_SCREEN_ON, T_OUTSIDE, T_BOOK, T_LEAVES, T_LAMP, T_PRINT) = range(16)  # fmt: skip
NUM_KINDS = 16
EMISSIVE_KINDS = (T_SCREEN_ON, T_OUTSIDE, T_LAMP)

ROOM_SIZE_X = (3.0, 6.5)
ROOM_SIZE_Y = (3.0, 6.0)
ROOM_HEIGHT = (2.4, 3.0)
CAMERA_WALL_DISTANCE = (0.25, 1.1)
CAMERA_YAW_JITTER_DEG = 40.0
# camera height, pitch and roll, light and clutter ranges: see ``synthetic_profile``
CAMERA_CLEARANCE = 0.45
"""No floor object's footprint comes within this distance (metres) of the camera."""
FOOTPRINT_MARGIN = 0.03
WALL_GAP = 0.01
"""Gap between a wall and the back of an object standing against it (metres)."""
ROOM_TYPES = ("bedroom", "living_room", "office", "kitchen", "study")
ROOM_TYPE_PROBS = (0.24, 0.24, 0.18, 0.18, 0.16)
VIEW_WALL_WEIGHTS = (0.1, 0.28, 0.34, 0.28)
"""Chance of each wall relative to the camera's (0: behind the camera, 2: opposite, 1/3: sides)."""
PLACE_TRIES = 25
SUPPORT_TRIES = 6
AIM_CANDIDATES = 6
BOOK_THICKNESS = (0.015, 0.06)
TEX_OFFSET = (10.0, 100.0)
"""Range of the random per-primitive texture offset (metres; keeps texture coordinates positive)."""
OFF_VIEW_KEEP = 0.2
"""Chance of keeping a candidate position whose centre is outside the camera's view."""
VIEW_HALF_TAN = (0.62, 0.46)
"""tan of the half field of view (x, y) of NYU's camera: 320/518.9, 240/519.5."""


@dataclass(frozen=True)
class Material:
    """Surface appearance: texture kind, two colours (display RGB in [0, 1]), texture scale.

    ``depth_hole``: the depth sensor returns nothing on this surface (glass, black glossy screen).
    ``c3`` is a third colour used by multi-colour kinds (canvas, screen content).
    """

    kind: int
    c1: tuple[float, float, float]
    c2: tuple[float, float, float] = (0.0, 0.0, 0.0)
    c3: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0
    depth_hole: bool = False


@dataclass
class Primitives:
    """All primitives of a scene as arrays, one row per primitive (P rows).

    ptype (P,) int8 in P_*; centre (P, 3) world centre (cylinders: centre of the axis);
    half (P, 3) half sizes in the local frame (cylinders: (r, r, h/2); spheres: (r, r, r);
    room: half the room); yaw (P,) radians about Z; cls (P,) int16 class; inst (P,) int32
    instance; group (P,) int32 cast group; material (P,) int32 index into ``materials``;
    tex_offset (P, 2) per-primitive texture offset in metres.
    """

    ptype: np.ndarray
    centre: np.ndarray
    half: np.ndarray
    yaw: np.ndarray
    cls: np.ndarray
    inst: np.ndarray
    group: np.ndarray
    material: np.ndarray
    tex_offset: np.ndarray
    materials: list[Material]


@dataclass
class Light:
    """A point light: world position (m), linear RGB intensity (arbitrary units, ~1 at 1 m)."""

    position: tuple[float, float, float]
    intensity: tuple[float, float, float]


@dataclass
class Layout:
    """A scene: room size (Lx, Ly, Hz), camera pose, primitives, lights, room type."""

    room: tuple[float, float, float]
    cam_position: np.ndarray
    cam_to_world: np.ndarray
    prims: Primitives
    lights: list[Light]
    ambient: float
    room_type: str
    footprints: list[tuple[np.ndarray, float, float, float, float]] = field(default_factory=list)
    """Floor-standing footprints for contact shadows: (centre xy, half x, half y, yaw, height)."""
    focal_scale: float = 1.0
    """Factor on NYU's focal lengths (``synthetic_render.intrinsics``); 1 in the "nyu" profile."""


# --------------------------------------------------------------------------- colours and materials


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return (r, g, b)


def _shade(c: tuple[float, float, float], f: float) -> tuple[float, float, float]:
    return (min(c[0] * f, 1.0), min(c[1] * f, 1.0), min(c[2] * f, 1.0))


def _any_colour(rng: np.random.Generator, s=(0.0, 0.8), v=(0.15, 0.9)) -> tuple[float, float, float]:
    return _hsv(rng.random(), rng.uniform(*s), rng.uniform(*v))


def _light_colour(rng: np.random.Generator) -> tuple[float, float, float]:
    """Pale paint: any hue, low saturation, bright."""
    return _hsv(rng.random(), rng.uniform(0.0, 0.3) ** 1.3, rng.uniform(0.62, 0.95))


def _wood_colour(rng: np.random.Generator) -> tuple[float, float, float]:
    return _hsv(rng.uniform(0.04, 0.11), rng.uniform(0.3, 0.75), rng.uniform(0.2, 0.8))


def wood(rng: np.random.Generator) -> Material:
    c1 = _wood_colour(rng)
    return Material(T_WOOD, c1, _shade(c1, rng.uniform(0.55, 0.8)), scale=rng.uniform(3.0, 9.0))


def laminate(rng: np.random.Generator) -> Material:
    """White, grey, black or pastel smooth surfaces (painted furniture, plastic, metal)."""
    r = rng.random()
    if r < 0.4:
        c = _hsv(rng.random(), rng.uniform(0, 0.1), rng.uniform(0.7, 0.95))
    elif r < 0.65:
        c = _hsv(rng.random(), rng.uniform(0, 0.08), rng.uniform(0.05, 0.3))
    elif r < 0.85:
        c = _hsv(rng.uniform(0.5, 0.7), rng.uniform(0, 0.15), rng.uniform(0.35, 0.7))
    else:
        c = _light_colour(rng)
    return Material(T_PLAIN, c)


def fabric(rng: np.random.Generator, v=(0.15, 0.85)) -> Material:
    c1 = _any_colour(rng, s=(0.0, 0.7), v=v)
    return Material(T_FABRIC, c1, _shade(c1, 0.8), scale=rng.uniform(150.0, 300.0))


def leather(rng: np.random.Generator) -> Material:
    c = _hsv(rng.uniform(0.02, 0.1), rng.uniform(0.2, 0.7), rng.uniform(0.06, 0.45))
    return Material(T_PAINT, c, scale=rng.uniform(2.0, 6.0))


def any_surface(rng: np.random.Generator) -> Material:
    """A material from the shared pool: wood, laminate or fabric (colour alone says little)."""
    r = rng.random()
    return wood(rng) if r < 0.4 else laminate(rng) if r < 0.75 else fabric(rng)


def wall_material(rng: np.random.Generator) -> Material:
    r = rng.random()
    c1 = _light_colour(rng)
    if r < 0.7:
        return Material(T_PAINT, c1, scale=rng.uniform(0.5, 2.0))
    if r < 0.87:
        c2 = _shade(c1, rng.uniform(0.8, 0.95)) if rng.random() < 0.6 else _light_colour(rng)
        return Material(T_STRIPES, c1, c2, scale=rng.uniform(0.05, 0.3))
    return Material(T_PAINT, _any_colour(rng, s=(0.2, 0.6), v=(0.35, 0.85)), scale=1.0)


def ceiling_material(rng: np.random.Generator, tiles: bool) -> Material:
    c1 = _hsv(rng.random(), rng.uniform(0, 0.08), rng.uniform(0.75, 0.95))
    if tiles:
        return Material(T_TILES, c1, _shade(c1, 0.75), scale=rng.choice([0.6, 0.61]))
    return Material(T_PAINT, c1, scale=0.5)


def floor_material(rng: np.random.Generator, room_type: str) -> Material:
    r = rng.random()
    if room_type == "kitchen":
        r = r * 0.3 + 0.4  # tiles more likely
    if r < 0.4:
        c1 = _wood_colour(rng)
        return Material(T_PLANKS, c1, _shade(c1, rng.uniform(0.55, 0.8)), scale=rng.uniform(0.08, 0.2))
    if r < 0.65:
        c1 = _any_colour(rng, s=(0.0, 0.35), v=(0.3, 0.9))
        return Material(T_TILES, c1, _shade(c1, rng.uniform(0.5, 0.85)), scale=rng.uniform(0.25, 0.6))
    return Material(T_CARPET, _any_colour(rng, s=(0.0, 0.55), v=(0.15, 0.7)), scale=rng.uniform(100, 250))


def book_material(rng: np.random.Generator) -> Material:
    c1 = _any_colour(rng, s=(0.1, 0.9), v=(0.15, 0.9))
    c2 = _any_colour(rng, s=(0.0, 0.5), v=(0.1, 0.95))
    return Material(T_BOOK, c1, c2)


def canvas_material(rng: np.random.Generator) -> Material:
    cs = [_any_colour(rng, s=(0.0, 1.0), v=(0.05, 1.0)) for _ in range(3)]
    return Material(T_CANVAS, cs[0], cs[1], cs[2], scale=rng.uniform(0.5, 4.0))


def object_material(rng: np.random.Generator) -> Material:
    r = rng.random()
    if r < 0.5:
        return Material(T_PLAIN, _any_colour(rng, s=(0.0, 1.0), v=(0.1, 0.95)))
    if r < 0.7:
        return any_surface(rng)
    if r < 0.85:
        return canvas_material(rng)
    c1 = _hsv(rng.uniform(0.07, 0.1), rng.uniform(0.35, 0.55), rng.uniform(0.4, 0.7))  # cardboard
    return Material(T_PAINT, c1, scale=4.0)


def screen_material(rng: np.random.Generator) -> Material:
    if rng.random() < 0.35:
        m = canvas_material(rng)
        return Material(T_SCREEN_ON, m.c1, m.c2, m.c3, scale=m.scale)
    c = _hsv(rng.uniform(0.5, 0.7), rng.uniform(0.0, 0.3), rng.uniform(0.02, 0.08))
    return Material(T_SCREEN_OFF, c, scale=rng.uniform(0.5, 1.5), depth_hole=rng.random() < 0.5)


def outside_material(rng: np.random.Generator) -> Material:
    sky = _hsv(rng.uniform(0.55, 0.65), rng.uniform(0.05, 0.45), rng.uniform(0.8, 1.0))
    ground = _any_colour(rng, s=(0.1, 0.5), v=(0.3, 0.8))
    far = _hsv(rng.uniform(0.0, 1.0), rng.uniform(0.0, 0.3), rng.uniform(0.5, 0.95))
    return Material(T_OUTSIDE, sky, ground, far, scale=rng.uniform(0.5, 2.0), depth_hole=True)


# --------------------------------------------------------------------------- object parts


@dataclass
class Part:
    """One primitive in an object's local frame: box (lo, hi corners), cylinder or sphere.

    For a box ``a`` and ``b`` are its low and high corners; for a cylinder ``a`` is the centre of
    its base and ``b`` = (radius, height, 0); for a sphere ``a`` is its centre and ``b`` = (r, 0, 0).
    ``sub`` names a cast group inside the object (parts with the same ``sub`` are cast together).
    """

    ptype: int
    a: tuple[float, float, float]
    b: tuple[float, float, float]
    cls: int
    mat: Material
    sub: int = 0


def _box(x0, x1, y0, y1, z0, z1, cls, mat, sub=0) -> Part:
    return Part(P_BOX, (x0, y0, z0), (x1, y1, z1), cls, mat, sub)


def _cyl(x, y, z0, r, h, cls, mat, sub=0) -> Part:
    return Part(P_CYL, (x, y, z0), (r, h, 0.0), cls, mat, sub)


def _sphere(x, y, z, r, cls, mat, sub=0) -> Part:
    return Part(P_SPHERE, (x, y, z), (r, 0.0, 0.0), cls, mat, sub)


def _legs(w, d, h, t, cls, mat, inset=0.02, sub=0) -> list[Part]:
    """Four square legs of side ``t`` under a w x d top, from the floor to height h."""
    xs, ys = (-w / 2 + inset, w / 2 - inset - t), (-d / 2 + inset, d / 2 - inset - t)
    return [_box(x, x + t, y, y + t, 0.0, h, cls, mat, sub) for x in xs for y in ys]


@dataclass
class Support:
    """A horizontal surface that can carry clutter, in world coordinates."""

    centre: tuple[float, float]
    half: tuple[float, float]
    yaw: float
    z: float
    clearance: float = 0.5
    items: list[tuple[float, float, float]] = field(default_factory=list)
    """Objects already standing on it: (x, y, radius) in its local frame."""


@dataclass
class Obj:
    """An object: parts in its local frame, footprint size, and support surfaces (local)."""

    parts: list[Part]
    width: float
    depth: float
    height: float
    supports: list[tuple[float, float, float, float, float, float]] = field(default_factory=list)
    """(x, y, half x, half y, z, clearance) in the local frame."""


def make_bed(rng: np.random.Generator) -> Obj:
    w, length = rng.uniform(0.95, 1.8), rng.uniform(1.9, 2.15)
    fh, mt = rng.uniform(0.2, 0.35), rng.uniform(0.18, 0.28)
    frame = wood(rng) if rng.random() < 0.7 else laminate(rng)
    sheet = fabric(rng, v=(0.4, 0.95))
    blanket = fabric(rng)
    hb_h = rng.uniform(0.8, 1.25)
    y0 = -length / 2
    parts = [
        _box(-w / 2, w / 2, y0, length / 2, 0.0, fh, BED, frame),
        _box(-w / 2, w / 2, y0, y0 + 0.07, 0.0, hb_h, BED, frame),
        _box(-w / 2 + 0.02, w / 2 - 0.02, y0 + 0.07, length / 2 - 0.02, fh, fh + mt, BED, sheet),
    ]
    blanket_start = y0 + rng.uniform(0.45, 0.9)
    parts.append(
        _box(
            -w / 2 - 0.03,
            w / 2 + 0.03,
            blanket_start,
            length / 2 + 0.03,
            fh * 0.5,
            fh + mt + 0.04,
            BED,
            blanket,
        )
    )
    n_pillows = 1 if w < 1.3 else 2
    pw = (w - 0.15) / n_pillows
    pillow = fabric(rng, v=(0.5, 0.95))
    for i in range(n_pillows):
        x0 = -w / 2 + 0.07 + i * pw
        parts.append(
            _box(x0 + 0.02, x0 + pw - 0.02, y0 + 0.1, y0 + 0.45, fh + mt, fh + mt + 0.13, BED, pillow, sub=1)
        )
    if rng.random() < 0.4:
        parts.append(_box(-w / 2, w / 2, length / 2 - 0.05, length / 2, 0.0, fh + mt + 0.1, BED, frame))
    return Obj(parts, w, length, hb_h)


def _drawer_fronts(w, d, z0, z1, n, mat, handle, sub=1) -> list[Part]:
    """n drawer fronts stacked between z0 and z1 on the front (y = d/2), each with a handle."""
    parts = []
    dh = (z1 - z0) / n
    for i in range(n):
        a, b = z0 + i * dh + 0.01, z0 + (i + 1) * dh - 0.01
        parts.append(_box(-w / 2 + 0.015, w / 2 - 0.015, d / 2, d / 2 + 0.015, a, b, FURNITURE, mat, sub))
        hz = (a + b) / 2
        parts.append(
            _box(-0.06, 0.06, d / 2 + 0.015, d / 2 + 0.035, hz - 0.012, hz + 0.012, FURNITURE, handle, sub)
        )
    return parts


def make_cabinet(rng: np.random.Generator, kind: str) -> Obj:
    """Furniture: nightstand, dresser, wardrobe, filing cabinet, tv stand, fridge."""
    dims = {
        "nightstand": ((0.4, 0.55), (0.35, 0.45), (0.45, 0.65), (1, 3)),
        "dresser": ((0.8, 1.4), (0.45, 0.55), (0.75, 1.05), (3, 4)),
        "wardrobe": ((0.8, 1.6), (0.5, 0.62), (1.8, 2.2), (0, 0)),
        "filing": ((0.4, 0.5), (0.5, 0.65), (0.7, 1.35), (2, 4)),
        "tv_stand": ((1.0, 1.8), (0.38, 0.5), (0.4, 0.6), (1, 2)),
        "fridge": ((0.6, 0.8), (0.6, 0.72), (1.65, 1.95), (0, 0)),
    }[kind]
    w, d, h = (rng.uniform(*r) for r in dims[:3])
    body = laminate(rng) if kind in ("filing", "fridge") or rng.random() < 0.35 else wood(rng)
    front = body if rng.random() < 0.6 else any_surface(rng)
    handle = laminate(rng)
    parts = [_box(-w / 2, w / 2, -d / 2, d / 2, 0.0, h, FURNITURE, body)]
    if kind in ("wardrobe", "fridge"):
        split = 0.0 if kind == "wardrobe" else h * rng.uniform(0.0, 0.35)
        if kind == "wardrobe":
            for x0, x1 in ((-w / 2, 0.0), (0.0, w / 2)):
                parts.append(
                    _box(x0 + 0.01, x1 - 0.01, d / 2, d / 2 + 0.02, 0.05, h - 0.04, FURNITURE, front, 1)
                )
            for x in (-0.05, 0.03):
                parts.append(
                    _box(x, x + 0.02, d / 2 + 0.02, d / 2 + 0.04, h * 0.45, h * 0.6, FURNITURE, handle, 1)
                )
        else:
            parts.append(
                _box(
                    -w / 2 + 0.01,
                    w / 2 - 0.01,
                    d / 2,
                    d / 2 + 0.02,
                    h * 0.6 + split * 0.1,
                    h - 0.02,
                    FURNITURE,
                    front,
                    1,
                )
            )
            parts.append(
                _box(
                    w / 2 - 0.1,
                    w / 2 - 0.07,
                    d / 2 + 0.02,
                    d / 2 + 0.06,
                    h * 0.65,
                    h * 0.85,
                    FURNITURE,
                    handle,
                    1,
                )
            )
    else:
        n = int(rng.integers(dims[3][0], dims[3][1] + 1))
        parts += _drawer_fronts(w, d, 0.06, h - 0.04, n, front, handle)
    supports = [] if kind in ("wardrobe", "fridge") else [(0.0, 0.0, w / 2 - 0.05, d / 2 - 0.05, h, 0.6)]
    return Obj(parts, w, d, h, supports)


def _book_row(rng, x0, x1, y_back, depth_max, z, height_max, sub) -> list[Part]:
    """Books standing side by side from x0 towards x1 on a board at height z (all random numbers
    of a row drawn at once: rows of books are most of a scene's primitives)."""
    n = int((x1 - x0) / BOOK_THICKNESS[0]) + 1
    t = rng.uniform(*BOOK_THICKNESS, size=n)
    gap = np.where(rng.random(n) < 0.8, rng.uniform(0.0, 0.01, size=n), rng.uniform(0.05, 0.2, size=n))
    heights = np.minimum(rng.uniform(0.15, 0.32, size=n), height_max)
    depths = np.minimum(rng.uniform(0.12, 0.24, size=n), depth_max)
    hsv = rng.random((n, 6))
    start = x0 + rng.uniform(0.0, 0.1)
    fill_to = x0 + (x1 - x0) * rng.uniform(0.3, 1.0)
    left = start + np.concatenate([[0.0], np.cumsum(t + gap)[:-1]])
    keep = np.flatnonzero((left < fill_to) & (left + t <= x1))
    # python floats from here on: the same IEEE arithmetic as numpy scalars, several times faster
    left, t, heights, depths, hsv = (a[keep].tolist() for a in (left, t, heights, depths, hsv))
    parts = []
    for i in range(len(keep)):
        h1, s1, v1, h2, s2, v2 = hsv[i]
        mat = Material(
            T_BOOK, _hsv(h1, 0.1 + 0.8 * s1, 0.15 + 0.75 * v1), _hsv(h2, 0.5 * s2, 0.1 + 0.85 * v2)
        )
        parts.append(
            _box(left[i], left[i] + t[i], y_back, y_back + depths[i], z, z + heights[i], BOOKS, mat, sub)
        )
    return parts


def make_bookshelf(rng: np.random.Generator, wall_mounted: bool = False) -> Obj:
    w, d = rng.uniform(0.6, 1.3), rng.uniform(0.25, 0.4)
    h = rng.uniform(0.6, 0.9) if wall_mounted else rng.uniform(1.0, 2.1)
    mat = wood(rng) if rng.random() < 0.6 else laminate(rng)
    t = rng.uniform(0.015, 0.03)
    parts = [
        _box(-w / 2, -w / 2 + t, -d / 2, d / 2, 0.0, h, FURNITURE, mat),
        _box(w / 2 - t, w / 2, -d / 2, d / 2, 0.0, h, FURNITURE, mat),
        _box(-w / 2, w / 2, -d / 2, -d / 2 + 0.01, 0.0, h, FURNITURE, mat),
    ]
    spacing = rng.uniform(0.28, 0.4)
    n = max(1, int(round(h / spacing)))
    zs = np.linspace(0.0, h - t, n + 1)
    supports = []
    for i, z in enumerate(zs):
        parts.append(_box(-w / 2 + t, w / 2 - t, -d / 2 + 0.01, d / 2, z, z + t, FURNITURE, mat))
        if i < n:
            gap = zs[i + 1] - z - t
            if rng.random() < 0.85:
                parts += _book_row(
                    rng, -w / 2 + t, w / 2 - t, -d / 2 + 0.01, d - 0.02, z + t, gap - 0.02, sub=2 + i
                )
            else:
                supports.append((0.0, 0.0, w / 2 - t - 0.05, d / 2 - 0.05, z + t, gap - 0.02))
    supports.append((0.0, 0.0, w / 2 - 0.05, d / 2 - 0.05, h, 0.4))
    return Obj(parts, w, d, h, supports)


def make_table(rng: np.random.Generator, kind: str) -> Obj:
    """Table: desk, dining table, coffee table, or round table."""
    dims = {
        "desk": ((1.0, 1.8), (0.6, 0.8), (0.72, 0.77)),
        "dining": ((1.1, 2.0), (0.8, 1.05), (0.72, 0.77)),
        "coffee": ((0.8, 1.3), (0.5, 0.75), (0.35, 0.5)),
        "round": ((0.8, 1.2), (0.0, 0.0), (0.7, 0.76)),
    }[kind]
    w, d, h = (rng.uniform(*r) for r in dims)
    mat = wood(rng) if rng.random() < 0.6 else laminate(rng)
    leg_mat = mat if rng.random() < 0.6 else laminate(rng)
    top_t = rng.uniform(0.025, 0.05)
    if kind == "round":
        r = w / 2
        parts = [
            _cyl(0.0, 0.0, h - top_t, r, top_t, TABLE, mat),
            _cyl(0.0, 0.0, 0.0, 0.04, h - top_t, TABLE, leg_mat),
            _cyl(0.0, 0.0, 0.0, r * 0.45, 0.03, TABLE, leg_mat),
        ]
        return Obj(parts, w, w, h, [(0.0, 0.0, r * 0.6, r * 0.6, h, 0.5)])
    parts = [_box(-w / 2, w / 2, -d / 2, d / 2, h - top_t, h, TABLE, mat)]
    if kind == "coffee" and rng.random() < 0.4:
        parts.append(
            _box(-w / 2 + 0.05, w / 2 - 0.05, -d / 2 + 0.05, d / 2 - 0.05, 0.0, h - top_t, TABLE, leg_mat)
        )
    elif kind == "desk" and rng.random() < 0.5:
        for x0 in (-w / 2, w / 2 - 0.03):
            parts.append(_box(x0, x0 + 0.03, -d / 2, d / 2, 0.0, h - top_t, TABLE, leg_mat, 1))
        parts.append(
            _box(-w / 2 + 0.03, w / 2 - 0.03, -d / 2, -d / 2 + 0.02, 0.3, h - top_t, TABLE, leg_mat, 1)
        )
    else:
        parts += _legs(w, d, h - top_t, rng.uniform(0.035, 0.07), TABLE, leg_mat, sub=1)
    return Obj(parts, w, d, h, [(0.0, 0.0, w / 2 - 0.08, d / 2 - 0.08, h, 0.6)])


def _make_armchair(rng: np.random.Generator) -> Obj:
    w, d = rng.uniform(0.7, 0.9), rng.uniform(0.7, 0.9)
    mat = fabric(rng) if rng.random() < 0.7 else leather(rng)
    sh = rng.uniform(0.4, 0.46)
    arm_h = sh + rng.uniform(0.15, 0.25)
    parts = [
        _box(-w / 2, w / 2, -d / 2, d / 2, 0.08, sh, CHAIR, mat),
        _box(-w / 2, w / 2, -d / 2, -d / 2 + 0.18, sh, sh + rng.uniform(0.35, 0.5), CHAIR, mat),
        _box(-w / 2, -w / 2 + 0.13, -d / 2, d / 2, sh, arm_h, CHAIR, mat),
        _box(w / 2 - 0.13, w / 2, -d / 2, d / 2, sh, arm_h, CHAIR, mat),
    ]
    parts += _legs(w, d, 0.08, 0.04, CHAIR, wood(rng), inset=0.03, sub=1)
    return Obj(parts, w, d, parts[1].b[2])


def make_chair(rng: np.random.Generator, kind: str = "chair") -> Obj:
    """Chair (front = +y, the sitter faces +y): plain, office or armchair."""
    if kind == "armchair":
        return _make_armchair(rng)
    w = rng.uniform(0.4, 0.5)
    d = w * rng.uniform(0.9, 1.1)
    sh = rng.uniform(0.42, 0.48)
    back_h = rng.uniform(0.35, 0.5)
    if kind == "office":
        mat = fabric(rng, v=(0.05, 0.5)) if rng.random() < 0.7 else laminate(rng)
        metal = laminate(rng)
        parts = [
            _cyl(0.0, 0.0, 0.0, rng.uniform(0.22, 0.3), 0.05, CHAIR, metal),
            _cyl(0.0, 0.0, 0.05, 0.025, sh - 0.12, CHAIR, metal),
            _box(-w / 2, w / 2, -d / 2, d / 2, sh - 0.08, sh, CHAIR, mat),
            _box(
                -w / 2 + 0.02, w / 2 - 0.02, -d / 2, -d / 2 + 0.06, sh + 0.05, sh + back_h + 0.1, CHAIR, mat
            ),
            _box(-0.03, 0.03, -d / 2 - 0.01, -d / 2 + 0.02, sh - 0.02, sh + 0.1, CHAIR, metal),
        ]
        return Obj(parts, w, d, sh + back_h + 0.1)
    mat = wood(rng) if rng.random() < 0.55 else any_surface(rng)
    seat = mat if rng.random() < 0.6 else fabric(rng)
    t = rng.uniform(0.025, 0.045)
    st = rng.uniform(0.03, 0.06)
    parts = [_box(-w / 2, w / 2, -d / 2, d / 2, sh - st, sh, CHAIR, seat)]
    parts += _legs(w, d, sh - st, t, CHAIR, mat, inset=0.01, sub=1)
    if rng.random() < 0.6:
        parts.append(
            _box(
                -w / 2 + 0.01, w / 2 - 0.01, -d / 2 + 0.01, -d / 2 + 0.01 + t, sh, sh + back_h, CHAIR, mat, 2
            )
        )
    else:
        for x in (-w / 2 + 0.01, w / 2 - 0.01 - t):
            parts.append(_box(x, x + t, -d / 2 + 0.01, -d / 2 + 0.01 + t, sh, sh + back_h, CHAIR, mat, 2))
        parts.append(
            _box(
                -w / 2 + 0.01,
                w / 2 - 0.01,
                -d / 2 + 0.01,
                -d / 2 + 0.01 + t,
                sh + back_h * 0.6,
                sh + back_h,
                CHAIR,
                mat,
                2,
            )
        )
    return Obj(parts, w, d, sh + back_h)


def make_sofa(rng: np.random.Generator) -> Obj:
    seats = int(rng.integers(2, 4))
    w, d = seats * rng.uniform(0.6, 0.75) + 0.4, rng.uniform(0.8, 0.95)
    mat = fabric(rng) if rng.random() < 0.75 else leather(rng)
    cushion = mat if rng.random() < 0.7 else fabric(rng)
    base_top, seat_top = rng.uniform(0.3, 0.38), rng.uniform(0.43, 0.5)
    back_top, arm_top, arm_w = rng.uniform(0.75, 0.95), rng.uniform(0.55, 0.68), rng.uniform(0.12, 0.24)
    back_d = rng.uniform(0.18, 0.26)
    parts = [
        _box(-w / 2, w / 2, -d / 2, d / 2, 0.08, base_top, SOFA, mat),
        _box(-w / 2, w / 2, -d / 2, -d / 2 + back_d, base_top, back_top, SOFA, mat),
        _box(-w / 2, -w / 2 + arm_w, -d / 2, d / 2, base_top, arm_top, SOFA, mat),
        _box(w / 2 - arm_w, w / 2, -d / 2, d / 2, base_top, arm_top, SOFA, mat),
    ]
    cw = (w - 2 * arm_w) / seats
    for i in range(seats):
        x0 = -w / 2 + arm_w + i * cw
        parts.append(
            _box(
                x0 + 0.005,
                x0 + cw - 0.005,
                -d / 2 + back_d,
                d / 2 - 0.01,
                base_top,
                seat_top,
                SOFA,
                cushion,
                1,
            )
        )
    for _ in range(int(rng.integers(0, 3))):
        x = rng.uniform(-w / 2 + arm_w + 0.25, w / 2 - arm_w - 0.25)
        cm = fabric(rng)
        parts.append(
            _box(
                x - 0.2,
                x + 0.2,
                -d / 2 + back_d,
                -d / 2 + back_d + 0.12,
                seat_top,
                seat_top + 0.38,
                SOFA,
                cm,
                2,
            )
        )
    parts += _legs(w, d, 0.08, 0.05, SOFA, wood(rng), inset=0.04, sub=3)
    return Obj(parts, w, d, back_top)


def make_tv(rng: np.random.Generator, kind: str) -> Obj:
    """A tv or monitor standing on its base (kind "stand"/"monitor") or flat on a wall ("wall")."""
    w = rng.uniform(0.45, 0.65) if kind == "monitor" else rng.uniform(0.7, 1.3)
    h = w * rng.uniform(0.56, 0.65)
    t = rng.uniform(0.03, 0.07)
    body = Material(T_PLAIN, _hsv(rng.random(), rng.uniform(0, 0.1), rng.uniform(0.03, 0.25)))
    screen = screen_material(rng)
    lift = 0.0 if kind == "wall" else rng.uniform(0.06, 0.15)
    y0 = -t / 2
    parts = [
        _box(-w / 2, w / 2, y0, y0 + t, lift, lift + h, TV, body),
        _box(
            -w / 2 + 0.015, w / 2 - 0.015, y0 + t, y0 + t + 0.004, lift + 0.015, lift + h - 0.015, TV, screen
        ),
    ]
    if kind != "wall":
        parts.append(_box(-0.03, 0.03, y0 - 0.03, y0, 0.0, lift + h * 0.5, TV, body, 1))
        parts.append(_box(-w * 0.2, w * 0.2, -0.12, 0.08, 0.0, 0.015, TV, body, 1))
    return Obj(parts, w, max(t, 0.2), lift + h)


def make_counter(rng: np.random.Generator) -> Obj:
    w, d, h = rng.uniform(1.2, 2.8), rng.uniform(0.58, 0.65), rng.uniform(0.86, 0.92)
    body = laminate(rng) if rng.random() < 0.6 else wood(rng)
    top = Material(T_PAINT, _any_colour(rng, s=(0.0, 0.3), v=(0.1, 0.9)), scale=rng.uniform(3, 10))
    handle = laminate(rng)
    parts = [
        _box(-w / 2, w / 2, -d / 2, d / 2 - 0.03, 0.1, h - 0.04, FURNITURE, body),
        _box(-w / 2, w / 2, -d / 2, d / 2 - 0.08, 0.0, 0.1, FURNITURE, laminate(rng)),
        _box(-w / 2, w / 2, -d / 2, d / 2 + 0.02, h - 0.04, h, FURNITURE, top),
    ]
    n = max(1, int(w / rng.uniform(0.4, 0.6)))
    dw = w / n
    for i in range(n):
        x0 = -w / 2 + i * dw
        parts.append(
            _box(x0 + 0.005, x0 + dw - 0.005, d / 2 - 0.03, d / 2 - 0.01, 0.12, h - 0.06, FURNITURE, body, 1)
        )
        parts.append(
            _box(
                x0 + dw / 2 - 0.06,
                x0 + dw / 2 + 0.06,
                d / 2 - 0.01,
                d / 2 + 0.01,
                h - 0.2,
                h - 0.18,
                FURNITURE,
                handle,
                1,
            )
        )
    return Obj(parts, w, d, h, [(0.0, 0.0, w / 2 - 0.05, d / 2 - 0.08, h, 0.45)])


def make_upper_cabinet(rng: np.random.Generator, w: float) -> Obj:
    d, h = rng.uniform(0.3, 0.38), rng.uniform(0.6, 0.8)
    body = laminate(rng) if rng.random() < 0.6 else wood(rng)
    parts = [_box(-w / 2, w / 2, -d / 2, d / 2, 0.0, h, FURNITURE, body)]
    n = max(1, int(w / rng.uniform(0.4, 0.6)))
    dw = w / n
    for i in range(n):
        x0 = -w / 2 + i * dw
        parts.append(
            _box(x0 + 0.005, x0 + dw - 0.005, d / 2, d / 2 + 0.02, 0.01, h - 0.01, FURNITURE, body, 1)
        )
    return Obj(parts, w, d, h)


def make_picture(rng: np.random.Generator) -> Obj:
    w, h = rng.uniform(0.3, 1.2), rng.uniform(0.25, 0.9)
    framed = rng.random() < 0.75
    canvas = canvas_material(rng)
    if not framed:
        return Obj([_box(-w / 2, w / 2, 0.0, 0.004, 0.0, h, PICTURE, canvas)], w, 0.004, h)
    b, t = rng.uniform(0.015, 0.07), rng.uniform(0.015, 0.04)
    frame = wood(rng) if rng.random() < 0.5 else laminate(rng)
    parts = [
        _box(-w / 2, w / 2, 0.0, t, 0.0, h, PICTURE, frame),
        _box(-w / 2 + b, w / 2 - b, t, t + 0.003, b, h - b, PICTURE, canvas),
    ]
    return Obj(parts, w, t, h)


def make_window(rng: np.random.Generator, room_h: float) -> tuple[Obj, float]:
    """Window (glass pane showing the outside, frame bars, sill, optional curtains); returns its sill height."""
    w = rng.uniform(0.7, 1.8)
    sill = rng.uniform(0.6, 1.0)
    h = min(rng.uniform(1.0, 1.6), room_h - sill - 0.2)
    frame = laminate(rng) if rng.random() < 0.7 else wood(rng)
    pane = outside_material(rng)
    f, t = rng.uniform(0.04, 0.08), rng.uniform(0.03, 0.06)
    parts = [
        _box(-w / 2, w / 2, 0.0, 0.01, 0.0, h, WINDOW, pane),
        _box(-w / 2, w / 2, 0.0, t, 0.0, f, WINDOW, frame, 1),
        _box(-w / 2, w / 2, 0.0, t, h - f, h, WINDOW, frame, 1),
        _box(-w / 2, -w / 2 + f, 0.0, t, 0.0, h, WINDOW, frame, 1),
        _box(w / 2 - f, w / 2, 0.0, t, 0.0, h, WINDOW, frame, 1),
        _box(-w / 2 - 0.05, w / 2 + 0.05, 0.0, rng.uniform(0.08, 0.2), -0.03, 0.0, WINDOW, frame, 1),
    ]
    if w > 1.0 or rng.random() < 0.5:
        parts.append(_box(-f / 3, f / 3, 0.0, t * 0.8, 0.0, h, WINDOW, frame, 1))
    if rng.random() < 0.5:
        zt = h * rng.uniform(0.55, 0.75)
        parts.append(_box(-w / 2, w / 2, 0.0, t * 0.8, zt - f / 3, zt + f / 3, WINDOW, frame, 1))
    depth = 0.2
    if rng.random() < 0.45:
        cm = fabric(rng)
        cm = Material(T_STRIPES, cm.c1, _shade(cm.c1, 0.75), scale=rng.uniform(0.06, 0.12))
        cw = rng.uniform(0.25, 0.5)
        ct = min(h + 0.15, room_h - sill - 0.02)
        bottom = -sill + 0.02 if rng.random() < 0.5 else -0.1
        for x0 in (-w / 2 - cw * 0.6, w / 2 - cw * 0.4):
            parts.append(_box(x0, x0 + cw, 0.06, 0.06 + rng.uniform(0.04, 0.1), bottom, ct, WINDOW, cm, 2))
        depth = 0.25
    return Obj(parts, w, depth, h), sill


def make_clutter(rng: np.random.Generator, max_h: float, on_floor: bool) -> Obj:
    """A small ``objects`` item: box, bottle/vase/cup, ball, lamp, plant, bin."""
    mat = object_material(rng)
    r = rng.random()
    if on_floor and r < 0.25:
        rad, h = rng.uniform(0.12, 0.2), rng.uniform(0.28, 0.45)
        return Obj([_cyl(0.0, 0.0, 0.0, rad, min(h, max_h), OBJECTS, mat)], 2 * rad, 2 * rad, h)
    if r < 0.45:
        s = 0.45 if on_floor else 0.3
        w, d, h = rng.uniform(0.06, s), rng.uniform(0.06, s), min(rng.uniform(0.04, s), max_h)
        return Obj([_box(-w / 2, w / 2, -d / 2, d / 2, 0.0, h, OBJECTS, mat)], w, d, h)
    if r < 0.65:
        rad, h = rng.uniform(0.025, 0.08), min(rng.uniform(0.08, 0.35), max_h)
        return Obj([_cyl(0.0, 0.0, 0.0, rad, h, OBJECTS, mat)], 2 * rad, 2 * rad, h)
    if r < 0.75:
        rad = min(rng.uniform(0.04, 0.15), max_h / 2)
        return Obj([_sphere(0.0, 0.0, rad, rad, OBJECTS, mat)], 2 * rad, 2 * rad, 2 * rad)
    if r < 0.88 and max_h > 0.35:
        base, shade = laminate(rng), fabric(rng, v=(0.5, 0.95))
        h = min(rng.uniform(0.35, 0.6) if not on_floor else rng.uniform(1.2, 1.7), max_h)
        sr = rng.uniform(0.1, 0.2)
        parts = [
            _cyl(0.0, 0.0, 0.0, rng.uniform(0.06, 0.12), 0.03, OBJECTS, base),
            _cyl(0.0, 0.0, 0.03, 0.012, h * 0.7, OBJECTS, base),
            _cyl(0.0, 0.0, h * 0.7, sr, h * 0.3, OBJECTS, shade),
        ]
        return Obj(parts, 2 * sr, 2 * sr, h)
    pot_r = rng.uniform(0.07, 0.18) if on_floor else rng.uniform(0.05, 0.09)
    pot_h = pot_r * rng.uniform(1.0, 1.6)
    leaves_r = min(pot_r * rng.uniform(1.5, 2.8), max(max_h - pot_h, 0.05) / 1.8)
    leaves = Material(
        T_LEAVES,
        _hsv(rng.uniform(0.2, 0.4), rng.uniform(0.4, 0.9), rng.uniform(0.2, 0.6)),
        scale=rng.uniform(60, 140),
    )
    parts = [
        _cyl(0.0, 0.0, 0.0, pot_r, pot_h, OBJECTS, mat),
        _sphere(0.0, 0.0, pot_h + leaves_r * 0.8, leaves_r, OBJECTS, leaves),
    ]
    return Obj(parts, 2 * leaves_r, 2 * leaves_r, pot_h + leaves_r * 1.8)


# --------------------------------------------------------------------------- scene assembly


def _rot_z(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class SceneBuilder:
    """Collects primitives in world coordinates and keeps the floor / wall occupancy of a room."""

    def __init__(
        self,
        rng: np.random.Generator,
        room: tuple[float, float, float],
        cam_pos: np.ndarray,
        cam_rot: np.ndarray,
        cam_wall: int,
        focal_scale: float = 1.0,
    ):
        self.rng = rng
        # tan of the half field of view; x / 1.0 == x, so the "nyu" profile is unchanged
        self.view_tan = (VIEW_HALF_TAN[0] / focal_scale, VIEW_HALF_TAN[1] / focal_scale)
        self.room = room
        self.cam_xy = cam_pos[:2]
        self.cam_pos = cam_pos
        self.cam_rot = cam_rot
        self.cam_wall = cam_wall
        self._cam = tuple(float(a) for a in cam_pos)
        self._rot = tuple(tuple(float(a) for a in row) for row in cam_rot)
        self.rows: list[tuple] = []
        self.materials: list[Material] = []
        self._mat_index: dict[int, int] = {}
        self.footprints: list[tuple[float, float, float, float]] = []  # AABBs on the floor
        self.shadow_footprints: list[tuple[np.ndarray, float, float, float, float]] = []
        self.wall_spans: dict[int, list[tuple[float, float, float, float]]] = {w: [] for w in range(4)}
        self.supports: list[Support] = []
        self._inst = 0
        self._group = 0

    # -- primitives
    def _material(self, m: Material) -> int:
        key = id(m)
        if key not in self._mat_index:
            self._mat_index[key] = len(self.materials)
            self.materials.append(m)
        return self._mat_index[key]

    def add(self, ptype, centre, half, yaw, cls, mat: Material, inst: int, group: int) -> None:
        self.rows.append((ptype, tuple(centre), tuple(half), yaw, cls, inst, group, self._material(mat)))

    def repaint_walls(self, m: Material) -> None:
        """Give the room's four walls (its primitives ROOM_WALL0..ROOM_WALL3) the material ``m``."""
        index = self._material(m)
        for i in range(ROOM_WALL0, ROOM_WALL3 + 1):
            self.rows[i] = self.rows[i][:7] + (index,)

    def place(self, obj: Obj, x: float, y: float, z: float, yaw: float) -> None:
        """Add an object with its local origin at world (x, y, z) and the given yaw."""
        self._inst += 1
        c, s = math.cos(yaw), math.sin(yaw)
        groups: dict[int, int] = {}
        for p in sorted(obj.parts, key=lambda part: part.sub):  # a cast group's primitives are consecutive
            if p.sub not in groups:
                self._group += 1
                groups[p.sub] = self._group
            g = groups[p.sub]
            ax, ay, az = p.a
            if p.ptype == P_BOX:
                bx, by, bz = p.b
                mx, my = (ax + bx) / 2, (ay + by) / 2
                centre = (x + c * mx - s * my, y + s * mx + c * my, z + (az + bz) / 2)
                self.add(
                    P_BOX,
                    centre,
                    ((bx - ax) / 2, (by - ay) / 2, (bz - az) / 2),
                    yaw,
                    p.cls,
                    p.mat,
                    self._inst,
                    g,
                )
            elif p.ptype == P_CYL:
                r, h = p.b[0], p.b[1]
                centre = (x + c * ax - s * ay, y + s * ax + c * ay, z + az + h / 2)
                self.add(P_CYL, centre, (r, r, h / 2), 0.0, p.cls, p.mat, self._inst, g)
            else:
                r = p.b[0]
                centre = (x + c * ax - s * ay, y + s * ax + c * ay, z + az)
                self.add(P_SPHERE, centre, (r, r, r), 0.0, p.cls, p.mat, self._inst, g)
        if not obj.supports:
            return
        origin = np.array([x, y])
        rot = _rot_z(yaw)[:2, :2]
        for sx, sy, hx, hy, sz, clear in obj.supports:
            sc = origin + rot @ np.array([sx, sy])
            self.supports.append(Support((sc[0], sc[1]), (hx, hy), yaw, z + sz, clear))

    # -- occupancy
    def in_view(self, x: float, y: float, z: float) -> bool:
        """Whether a world point projects inside the image (at least 0.3 m in front of the camera)."""
        px, py, pz = x - self._cam[0], y - self._cam[1], z - self._cam[2]
        (r00, r01, r02), (r10, r11, r12), (r20, r21, r22) = self._rot
        qx, qy, qz = (
            r00 * px + r10 * py + r20 * pz,
            r01 * px + r11 * py + r21 * pz,
            r02 * px + r12 * py + r22 * pz,
        )
        return qz > 0.3 and abs(qx) < self.view_tan[0] * qz and abs(qy) < self.view_tan[1] * qz

    def _keep(self, x: float, y: float, z: float) -> bool:
        return self.in_view(x, y, z) or self.rng.random() < OFF_VIEW_KEEP

    @staticmethod
    def _aabb(x, y, w, d, yaw) -> tuple[float, float, float, float]:
        c, s = abs(math.cos(yaw)), abs(math.sin(yaw))
        hx, hy = (w * c + d * s) / 2, (w * s + d * c) / 2
        return (x - hx, x + hx, y - hy, y + hy)

    def floor_free(self, box: tuple[float, float, float, float], ignore: int = 0) -> bool:
        lx, ly, _ = self.room
        x0, x1, y0, y1 = box
        if x0 < 0.0 or y0 < 0.0 or x1 > lx or y1 > ly:
            return False
        cam_x, cam_y = self._cam[0], self._cam[1]  # python floats (same values as cam_xy)
        cx = min(max(cam_x, x0), x1)
        cy = min(max(cam_y, y0), y1)
        if math.hypot(cx - cam_x, cy - cam_y) < CAMERA_CLEARANCE:
            return False
        m = FOOTPRINT_MARGIN
        for fx0, fx1, fy0, fy1 in self.footprints[: len(self.footprints) - ignore]:
            if x0 < fx1 + m and fx0 < x1 + m and y0 < fy1 + m and fy0 < y1 + m:
                return False
        return True

    def occupy(self, x, y, obj: Obj, yaw) -> None:
        self.footprints.append(self._aabb(x, y, obj.width, obj.depth, yaw))
        self.shadow_footprints.append((np.array([x, y]), obj.width / 2, obj.depth / 2, yaw, obj.height))

    def wall_frame(self, wall: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
        """(origin, along, inward, length, yaw) of a wall."""
        lx, ly, _ = self.room
        origins = [(0.0, 0.0), (lx, 0.0), (lx, ly), (0.0, ly)]
        yaw = wall * math.pi / 2
        along = np.array([math.cos(yaw), math.sin(yaw)])
        inward = np.array([-math.sin(yaw), math.cos(yaw)])
        length = lx if wall % 2 == 0 else ly
        return np.array(origins[wall]), along, inward, length, yaw

    def wall_free(self, wall: int, s0: float, s1: float, z0: float, z1: float) -> bool:
        m = FOOTPRINT_MARGIN * 2
        return all(
            not (s0 < b1 + m and b0 < s1 + m and z0 < c1 + m and c0 < z1 + m)
            for b0, b1, c0, c1 in self.wall_spans[wall]
        )

    def place_on_wall(self, obj: Obj, wall: int, s: float | None = None, yaw_jitter: float = 0.0) -> bool:
        """Stand an object on the floor with its back to a wall; False when there is no room.
        Without ``s`` (a position along the wall) the other walls are tried too, visible ones first."""
        if s is None:
            order = [wall] + [w for w in _view_walls(self.rng, self.cam_wall, 4) if w != wall]
            return any(self._place_on_wall(obj, w, None, yaw_jitter) for w in dict.fromkeys(order))
        return self._place_on_wall(obj, wall, s, yaw_jitter)

    def _place_on_wall(self, obj: Obj, wall: int, s: float | None, yaw_jitter: float) -> bool:
        origin, along, inward, length, yaw = self.wall_frame(wall)
        if obj.width + 0.1 > length:
            return False
        # python floats: the same arithmetic as the numpy 2-vectors, without their per-call cost
        (ox, oy), (ax, ay), (ix, iy) = origin.tolist(), along.tolist(), inward.tolist()
        out = obj.depth / 2 + WALL_GAP
        for _ in range(PLACE_TRIES if s is None else 1):
            si = self.rng.uniform(obj.width / 2 + 0.05, length - obj.width / 2 - 0.05) if s is None else s
            x, y = ox + ax * si + ix * out, oy + ay * si + iy * out
            if s is None and not self._keep(x, y, obj.height / 2):
                continue
            box = self._aabb(x, y, obj.width, obj.depth, yaw)
            if self.floor_free(box) and self.wall_free(
                wall, si - obj.width / 2, si + obj.width / 2, 0.0, obj.height
            ):
                self.place(obj, x, y, 0.0, yaw + yaw_jitter)
                self.occupy(x, y, obj, yaw)
                self.wall_spans[wall].append((si - obj.width / 2, si + obj.width / 2, 0.0, obj.height))
                self.last_wall_pos = (wall, si, np.array([x, y]), yaw)
                return True
        return False

    def mount_on_wall(self, obj: Obj, wall: int, z0: float, s: float | None = None) -> bool:
        """Hang an object on a wall with its bottom at height z0 (pictures, windows, tvs, shelves)."""
        origin, along, inward, length, yaw = self.wall_frame(wall)
        if obj.width + 0.2 > length or z0 + obj.height > self.room[2] - 0.02:
            return False
        (ox, oy), (ax, ay), (ix, iy) = origin.tolist(), along.tolist(), inward.tolist()
        for _ in range(PLACE_TRIES if s is None else 1):
            si = self.rng.uniform(obj.width / 2 + 0.1, length - obj.width / 2 - 0.1) if s is None else s
            x, y = ox + ax * si, oy + ay * si
            if s is None and not self._keep(x, y, z0 + obj.height / 2):
                continue
            box = self._aabb(x + ix * (obj.depth / 2), y + iy * (obj.depth / 2), obj.width, obj.depth, yaw)
            if self._near_camera(box, z0, z0 + obj.height):
                continue
            if self.wall_free(wall, si - obj.width / 2, si + obj.width / 2, z0 - 0.05, z0 + obj.height):
                self.place(obj, x + ix * WALL_GAP * 0.2, y + iy * WALL_GAP * 0.2, z0, yaw)
                self.wall_spans[wall].append((si - obj.width / 2, si + obj.width / 2, z0, z0 + obj.height))
                return True
        return False

    def _near_camera(self, box: tuple[float, float, float, float], z0: float, z1: float) -> bool:
        """Whether the camera is within CAMERA_CLEARANCE of a 3-D box (floor AABB x [z0, z1])."""
        x0, x1, y0, y1 = box
        cx, cy, cz = self.cam_pos
        dx = max(x0 - cx, 0.0, cx - x1)
        dy = max(y0 - cy, 0.0, cy - y1)
        dz = max(z0 - cz, 0.0, cz - z1)
        return math.sqrt(dx * dx + dy * dy + dz * dz) < CAMERA_CLEARANCE

    def place_free(self, obj: Obj, centre=None, spread: float = 1.0, yaw=None, ignore: int = 0) -> bool:
        """Stand an object anywhere on the free floor (or near ``centre`` within ``spread``)."""
        lx, ly, _ = self.room
        for _ in range(PLACE_TRIES):
            if centre is None:
                x, y = self.rng.uniform(0.3, lx - 0.3), self.rng.uniform(0.3, ly - 0.3)
            else:
                x, y = np.asarray(centre) + self.rng.uniform(-spread, spread, size=2)
            if centre is None and not self._keep(x, y, obj.height / 2):
                continue
            a = self.rng.uniform(0, 2 * math.pi) if yaw is None else yaw
            box = self._aabb(x, y, obj.width, obj.depth, a)
            if self.floor_free(box, ignore=ignore):
                self.place(obj, x, y, 0.0, a)
                self.occupy(x, y, obj, a)
                return True
        return False

    def place_on_support(self, obj: Obj, support: Support, yaw_jitter: float = 0.3) -> bool:
        """Stand an object on a support where it does not overlap what already stands there."""
        if (
            obj.height > support.clearance
            or obj.width > 2 * support.half[0]
            or obj.depth > 2 * support.half[1]
        ):
            return False
        hx, hy = support.half[0] - obj.width / 2, support.half[1] - obj.depth / 2
        radius = math.hypot(obj.width, obj.depth) / 2
        for _ in range(SUPPORT_TRIES):
            lx, ly = self.rng.uniform(-hx, hx), self.rng.uniform(-hy, hy)
            if all(math.hypot(lx - x, ly - y) > radius + r for x, y, r in support.items):
                break
        else:
            return False
        support.items.append((lx, ly, radius))
        c, s = math.cos(support.yaw), math.sin(support.yaw)
        x, y = support.centre[0] + c * lx - s * ly, support.centre[1] + s * lx + c * ly
        self.place(obj, x, y, support.z, support.yaw + self.rng.uniform(-yaw_jitter, yaw_jitter))
        return True

    def primitives(self) -> Primitives:
        rows = self.rows
        return Primitives(
            ptype=np.array([r[0] for r in rows], np.int8),
            centre=np.array([r[1] for r in rows], np.float64),
            half=np.array([r[2] for r in rows], np.float64),
            yaw=np.array([r[3] for r in rows], np.float64),
            cls=np.array([r[4] for r in rows], np.int16),
            inst=np.array([r[5] for r in rows], np.int32),
            group=np.array([r[6] for r in rows], np.int32),
            material=np.array([r[7] for r in rows], np.int32),
            tex_offset=self.rng.uniform(*TEX_OFFSET, size=(len(rows), 2)),
            materials=self.materials,
        )


def _camera_rotation(heading: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world rotation (columns: camera x right, y down, z forward in the world frame)."""
    cp, sp, ch, sh = math.cos(pitch), math.sin(pitch), math.cos(heading), math.sin(heading)
    forward = np.array([cp * ch, cp * sh, sp])
    right = np.array([sh, -ch, 0.0])
    down = np.array([sp * ch, sp * sh, -cp])  # forward x right
    cr, sr = math.cos(roll), math.sin(roll)  # roll about the optical axis
    right, down = cr * right + sr * down, -sr * right + cr * down
    return np.stack([right, down, forward], axis=1)


def _camera_angles(rng: np.random.Generator, wall: int, profile: Profile = NYU) -> tuple[float, float, float]:
    """(heading, pitch, roll) radians: looking into the room from ``wall`` with random jitter."""
    inward = wall * math.pi / 2 + math.pi / 2
    heading = inward + math.radians(rng.uniform(-CAMERA_YAW_JITTER_DEG, CAMERA_YAW_JITTER_DEG))
    return (
        heading,
        math.radians(rng.uniform(*profile.camera_pitch_deg)),
        math.radians(rng.normal(0.0, profile.camera_roll_std_deg)),
    )


def _camera(
    rng: np.random.Generator, room: tuple[float, float, float], profile: Profile = NYU
) -> tuple[np.ndarray, np.ndarray, int]:
    """Camera position, camera-to-world rotation and the wall behind the camera."""
    lx, ly, hz = room
    wall = int(rng.integers(4))
    length = lx if wall % 2 == 0 else ly
    across = ly if wall % 2 == 0 else lx
    yaw_wall = wall * math.pi / 2
    along = np.array([math.cos(yaw_wall), math.sin(yaw_wall)])
    inward = np.array([-math.sin(yaw_wall), math.cos(yaw_wall)])
    origin = np.array([(0.0, 0.0), (lx, 0.0), (lx, ly), (0.0, ly)][wall])
    s = rng.uniform(0.25, 0.75) * length
    dist = min(rng.uniform(*CAMERA_WALL_DISTANCE), across * 0.35)
    xy = origin + along * s + inward * dist
    height = min(rng.uniform(*profile.camera_height), hz - 0.3)
    return np.array([xy[0], xy[1], height]), _camera_rotation(*_camera_angles(rng, wall, profile)), wall


def _aim(
    rng: np.random.Generator,
    b: SceneBuilder,
    cam_pos: np.ndarray,
    cam_rot: np.ndarray,
    wall: int,
    profile: Profile = NYU,
) -> np.ndarray:
    """Best of AIM_CANDIDATES camera orientations (the original and fresh draws): the one whose
    view holds the most object classes and instances (primitive centres in the image)."""
    rows = [r for r in b.rows if r[5] > 0]
    if not rows:
        return cam_rot
    centres = np.array([r[1] for r in rows])
    cls = np.array([r[4] for r in rows])
    inst = np.array([r[5] for r in rows])
    best, best_score = cam_rot, -1.0
    for i in range(AIM_CANDIDATES):
        rot = cam_rot if i == 0 else _camera_rotation(*_camera_angles(rng, wall, profile))
        q = (centres - cam_pos) @ rot  # camera frame
        seen = (
            (q[:, 2] > 0.5)
            & (np.abs(q[:, 0]) < b.view_tan[0] * 0.9 * q[:, 2])
            & (np.abs(q[:, 1]) < b.view_tan[1] * 0.9 * q[:, 2])
        )
        # distinct classes and instances seen (ids are small non-negative integers: bincount is
        # several times faster than np.unique and counts the same)
        n_cls = np.count_nonzero(np.bincount(cls[seen]))
        score = 2.0 * n_cls + np.count_nonzero(np.bincount(inst[seen])) + rng.random()
        if score > best_score:
            best, best_score = rot, score
    return best


def _view_walls(rng: np.random.Generator, cam_wall: int, n: int) -> list[int]:
    """n walls drawn with ``VIEW_WALL_WEIGHTS`` relative to the camera's wall (mostly visible ones)."""
    cum = np.cumsum([VIEW_WALL_WEIGHTS[(w - cam_wall) % 4] for w in range(4)])
    return [int(w) for w in np.searchsorted(cum, rng.random(n) * cum[-1], side="right")]


def _add_room_prims(b: SceneBuilder, rng: np.random.Generator, room_type: str) -> None:
    lx, ly, hz = b.room
    centre = (lx / 2, ly / 2, hz / 2)
    half = (lx / 2, ly / 2, hz / 2)
    wall = wall_material(rng)
    accent = wall_material(rng) if rng.random() < 0.2 else wall
    tiles = room_type == "office" and rng.random() < 0.7
    mats = [floor_material(rng, room_type), ceiling_material(rng, tiles)] + [wall] * 4
    mats[2 + int(rng.integers(4))] = accent
    classes = [FLOOR, CEILING, WALL, WALL, WALL, WALL]
    for i in range(NUM_ROOM_PRIMS):
        b._group += 1
        b.add(P_ROOM, centre, half, 0.0, classes[i], mats[i], 0, b._group)


def _place_clutter(b: SceneBuilder, rng: np.random.Generator, n_support: int, n_floor: int) -> None:
    for _ in range(n_support):
        if not b.supports:
            break
        sup = b.supports[int(rng.integers(len(b.supports)))]
        if rng.random() < 0.25:
            stack = Obj([], 0.0, 0.0, 0.0)
            w, d, z = rng.uniform(0.15, 0.3), rng.uniform(0.2, 0.3), 0.0
            for _ in range(int(rng.integers(1, 5))):
                t = rng.uniform(0.015, 0.05)
                dx, dy = rng.uniform(-0.02, 0.02, size=2)
                stack.parts.append(
                    _box(
                        -w / 2 + dx, w / 2 + dx, -d / 2 + dy, d / 2 + dy, z, z + t, BOOKS, book_material(rng)
                    )
                )
                z += t
            stack.width, stack.depth, stack.height = w + 0.04, d + 0.04, z
            b.place_on_support(stack, sup)
        else:
            b.place_on_support(make_clutter(rng, sup.clearance, on_floor=False), sup)
    for _ in range(n_floor):
        b.place_free(make_clutter(rng, 1.8, on_floor=True))


def _place_with_chairs(b: SceneBuilder, rng: np.random.Generator, table: Obj, n_chairs: int) -> None:
    """A free-standing table with chairs around it, facing it."""
    lx, ly, _ = b.room
    yaw = rng.choice([0.0, math.pi / 2]) + rng.uniform(-0.1, 0.1)
    if not b.place_free(table, centre=(lx / 2, ly / 2), spread=min(lx, ly) * 0.3, yaw=yaw):
        return
    table_pos = np.array(b.footprints[-1][::2]) / 2 + np.array(b.footprints[-1][1::2]) / 2
    rot = _rot_z(yaw)[:2, :2]
    seats = [
        (0.0, -1.0),
        (0.0, 1.0),
        (-1.0, 0.0),
        (1.0, 0.0),
        (-0.5, -1.0),
        (0.5, 1.0),
        (0.5, -1.0),
        (-0.5, 1.0),
    ]
    for sx, sy in seats[:n_chairs]:
        chair = make_chair(rng, "chair")
        lx_ = sx * (table.width / 2 + 0.15) if sx in (-1.0, 1.0) else sx * table.width * 0.5
        ly_ = sy * (table.depth / 2 + 0.1) if sy != 0 else 0.0
        pos = table_pos + rot @ np.array([lx_, ly_])
        to_table = table_pos - pos
        chair_yaw = math.atan2(to_table[1], to_table[0]) - math.pi / 2 + rng.uniform(-0.25, 0.25)
        box = b._aabb(pos[0], pos[1], chair.width, chair.depth, chair_yaw)
        if b.floor_free(box, ignore=1) or rng.random() < 0.0:
            b.place(chair, pos[0], pos[1], 0.0, chair_yaw)
            b.footprints.insert(len(b.footprints) - 1, box)
            b.shadow_footprints.append(
                (pos.copy(), chair.width / 2, chair.depth / 2, chair_yaw, chair.height)
            )


def _front_of_last(b: SceneBuilder, gap: float) -> tuple[np.ndarray, float]:
    """Point ``gap`` metres in front of the last wall-placed object, and its yaw."""
    wall, _, pos, yaw = b.last_wall_pos
    inward = np.array([-math.sin(yaw), math.cos(yaw)])
    return pos + inward * gap, yaw


def _furnish_bedroom(b: SceneBuilder, rng: np.random.Generator, walls: Walls) -> None:
    w = walls(1)[0]
    bed = make_bed(rng)
    if b.place_on_wall(bed, w):
        _, s, _, _ = b.last_wall_pos
        for side in (-1, 1):
            if rng.random() < 0.7:
                ns = make_cabinet(rng, "nightstand")
                b.place_on_wall(ns, w, s + side * (bed.width / 2 + ns.width / 2 + 0.05))
    for wi in walls(int(rng.integers(1, 3))):
        b.place_on_wall(make_cabinet(rng, rng.choice(["dresser", "wardrobe"])), wi)
    if rng.random() < 0.4:
        desk = make_table(rng, "desk")
        if b.place_on_wall(desk, walls(1)[0]):
            _desk_extras(b, rng)
    if rng.random() < 0.3:
        b.place_free(make_chair(rng, rng.choice(["chair", "armchair"])))
    if rng.random() < 0.35:
        _tv_on_stand_or_wall(b, rng, walls(1)[0])


def _furnish_living_room(b: SceneBuilder, rng: np.random.Generator, walls: Walls) -> None:
    for i, w in enumerate(walls(int(rng.integers(1, 3)))):
        if b.place_on_wall(make_sofa(rng), w) and i == 0 and rng.random() < 0.85:
            pos, yaw = _front_of_last(b, rng.uniform(0.8, 1.0))
            b.place_free(make_table(rng, "coffee"), centre=pos, spread=0.15, yaw=yaw)
    for _ in range(int(rng.integers(0, 3))):
        b.place_free(make_chair(rng, "armchair"))
    _tv_on_stand_or_wall(b, rng, walls(1)[0])
    for wi in walls(int(rng.integers(0, 3))):
        b.place_on_wall(make_bookshelf(rng), wi)
    if rng.random() < 0.4:
        _place_with_chairs(b, rng, make_table(rng, rng.choice(["dining", "round"])), int(rng.integers(1, 5)))


def _furnish_office(b: SceneBuilder, rng: np.random.Generator, walls: Walls) -> None:
    for w in walls(int(rng.integers(1, 4))):
        if b.place_on_wall(make_table(rng, "desk"), w):
            _desk_extras(b, rng)
    for w in walls(int(rng.integers(1, 4))):
        b.place_on_wall(make_bookshelf(rng) if rng.random() < 0.6 else make_cabinet(rng, "filing"), w)
    if rng.random() < 0.4:
        _place_with_chairs(b, rng, make_table(rng, "dining"), int(rng.integers(2, 7)))
    if rng.random() < 0.25:
        b.place_on_wall(make_sofa(rng), walls(1)[0])


def _furnish_kitchen(b: SceneBuilder, rng: np.random.Generator, walls: Walls) -> None:
    for w in walls(int(rng.integers(1, 3))):
        counter = make_counter(rng)
        if b.place_on_wall(counter, w):
            _, s, _, _ = b.last_wall_pos
            if rng.random() < 0.8:
                b.mount_on_wall(make_upper_cabinet(rng, counter.width), w, rng.uniform(1.45, 1.6), s)
    if rng.random() < 0.7:
        b.place_on_wall(make_cabinet(rng, "fridge"), walls(1)[0])
    _place_with_chairs(
        b, rng, make_table(rng, rng.choice(["dining", "dining", "round"])), int(rng.integers(2, 7))
    )
    if rng.random() < 0.3:
        _tv_on_stand_or_wall(b, rng, walls(1)[0])


def _furnish_study(b: SceneBuilder, rng: np.random.Generator, walls: Walls) -> None:
    for w in walls(int(rng.integers(2, 5))):
        b.place_on_wall(make_bookshelf(rng), w)
    _place_with_chairs(
        b, rng, make_table(rng, rng.choice(["desk", "dining", "round"])), int(rng.integers(1, 4))
    )
    if rng.random() < 0.5:
        b.place_on_wall(make_sofa(rng), walls(1)[0])
    if rng.random() < 0.4:
        _tv_on_stand_or_wall(b, rng, walls(1)[0])
    if rng.random() < 0.5:
        b.place_free(make_chair(rng, "armchair"))


Walls = Callable[[int], list]
"""``walls(n)``: n walls the camera sees (drawn from the room's rng)."""

FURNISH: dict[str, Callable[[SceneBuilder, np.random.Generator, Walls], None]] = {
    "bedroom": _furnish_bedroom,
    "living_room": _furnish_living_room,
    "office": _furnish_office,
    "kitchen": _furnish_kitchen,
    "study": _furnish_study,
}
"""Furniture of each room type (wall items and clutter are common to all)."""


def _populate(
    b: SceneBuilder, rng: np.random.Generator, room_type: str, cam_wall: int, profile: Profile = NYU
) -> None:
    """Furniture, wall items and clutter for one room type."""

    def walls(n):
        return _view_walls(rng, cam_wall, n)

    FURNISH[room_type](b, rng, walls)
    # wall items: windows, pictures, wall shelves
    for w in walls(int(rng.choice([0, 1, 1, 2, 2]))):
        win, sill = make_window(rng, b.room[2])
        b.mount_on_wall(win, w, sill)
    for w in walls(int(rng.integers(0, 4))):
        pic = make_picture(rng)
        b.mount_on_wall(pic, w, rng.uniform(1.2, 1.8) - pic.height / 2)
    if rng.random() < 0.25:
        b.mount_on_wall(make_bookshelf(rng, wall_mounted=True), walls(1)[0], rng.uniform(1.2, 1.6))
    if profile.dresses_walls:
        dress_walls(b, rng, profile, walls)
    _place_clutter(
        b, rng, int(rng.integers(*profile.support_clutter)), int(rng.integers(*profile.floor_clutter))
    )


# --------------------------------------------------------------------------- dressed walls
# (profiles with ``dresses_walls``; see ``synthetic_profile.WIDE_WALLS`` for why)

PAPER_SIZE = (0.21, 0.297)
"""A4 in metres (width, height of a portrait sheet)."""
PAPER_SCALE = (0.5, 2.2)
"""Factor on a sheet's size: small signs to posters."""
PAPER_HEIGHT = (0.9, 1.9)
"""Height of a sheet's centre above the floor (metres)."""
TEXT_PITCH = (0.008, 0.02)
"""Distance between printed lines (metres; the scale of a ``T_PRINT`` material)."""
DOOR_SIZE = ((0.75, 1.0), (1.95, 2.15))
"""Width and height of a door leaf (metres)."""


def print_material(rng: np.random.Generator, pitch: tuple[float, float] = TEXT_PITCH) -> Material:
    """A printed sheet: pale paper (mostly white), dark ink, lines ``pitch`` apart."""
    paper = _hsv(rng.random(), rng.uniform(0.0, 0.35) ** 2, rng.uniform(0.8, 1.0))
    ink = _hsv(rng.random(), rng.uniform(0.0, 0.6), rng.uniform(0.05, 0.45))
    return Material(T_PRINT, paper, ink, scale=rng.uniform(*pitch))


def _sheet_size(rng: np.random.Generator, k: float) -> tuple[float, float]:
    """(width, height) of a sheet ``k`` times A4, portrait 70 % of the time, else landscape."""
    w, h = PAPER_SIZE if rng.random() < 0.7 else PAPER_SIZE[::-1]
    return w * k, h * k


def _sheet(rng: np.random.Generator, y0: float, x: float, z: float, w: float, h: float) -> Part:
    """A sheet of paper centred at local (x, z), its back at y0."""
    return _box(x - w / 2, x + w / 2, y0, y0 + 0.002, z - h / 2, z + h / 2, OBJECTS, print_material(rng), 1)


def make_paper(rng: np.random.Generator) -> Obj:
    """One loose sheet (portrait or landscape), a sign to a poster in size."""
    w, h = _sheet_size(rng, rng.uniform(*PAPER_SCALE))
    return Obj([_sheet(rng, 0.0, 0.0, h / 2, w, h)], w, 0.002, h)


def make_notice_board(rng: np.random.Generator) -> Obj:
    """Cork board in a thin frame with sheets pinned on it (all ``objects``)."""
    w, h = rng.uniform(0.5, 1.6), rng.uniform(0.45, 1.1)
    cork = Material(
        T_CARPET,
        _hsv(rng.uniform(0.06, 0.1), rng.uniform(0.4, 0.65), rng.uniform(0.45, 0.75)),
        scale=rng.uniform(150, 260),
    )
    frame = wood(rng) if rng.random() < 0.5 else Material(T_PLAIN, _hsv(0.0, 0.0, rng.uniform(0.55, 0.85)))
    f, t = rng.uniform(0.015, 0.04), rng.uniform(0.012, 0.025)
    parts = [
        _box(-w / 2, w / 2, 0.0, t, 0.0, h, OBJECTS, frame),
        _box(-w / 2 + f, w / 2 - f, t, t + 0.002, f, h - f, OBJECTS, cork),
    ]
    for _ in range(int(rng.integers(1, 9))):
        sw, sh = _sheet_size(rng, rng.uniform(0.5, 1.1))
        sw, sh = min(sw, w - 2 * f), min(sh, h - 2 * f)
        x = rng.uniform(-w / 2 + f + sw / 2, w / 2 - f - sw / 2)
        z = rng.uniform(f + sh / 2, h - f - sh / 2)
        parts.append(_sheet(rng, t + 0.002, x, z, sw, sh))
    return Obj(parts, w, t + 0.004, h)


def make_whiteboard(rng: np.random.Generator) -> Obj:
    """Whiteboard: white surface with faint writing, aluminium frame, pen tray (all ``objects``)."""
    w, h = rng.uniform(0.9, 2.4), rng.uniform(0.75, 1.25)
    metal = Material(T_PLAIN, _hsv(0.6, rng.uniform(0.0, 0.05), rng.uniform(0.6, 0.85)))
    white = _hsv(rng.uniform(0.5, 0.7), rng.uniform(0.0, 0.04), rng.uniform(0.88, 0.98))
    marker = _hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.1, 0.5))
    faint = tuple(0.6 * a + 0.4 * b for a, b in zip(white, marker))  # writing half wiped
    surface = Material(T_PRINT, white, faint, scale=rng.uniform(0.04, 0.1))
    f, t = rng.uniform(0.012, 0.025), rng.uniform(0.015, 0.03)
    parts = [
        _box(-w / 2, w / 2, 0.0, t, 0.0, h, OBJECTS, metal),
        _box(-w / 2 + f, w / 2 - f, t, t + 0.002, f, h - f, OBJECTS, surface),
        _box(-w / 2 + f, w / 2 - f, t, t + rng.uniform(0.04, 0.08), -0.02, f, OBJECTS, metal, 1),
    ]
    return Obj(parts, w, t + 0.08, h)


def make_door(rng: np.random.Generator) -> Obj:
    """A closed door on a wall: leaf, casing and handle labelled ``wall`` (NYU's 13-class mapping),
    sometimes a glass pane (``window``) and notices (``objects``) on the leaf."""
    w, h = rng.uniform(*DOOR_SIZE[0]), rng.uniform(*DOOR_SIZE[1])
    leaf = (
        wood(rng)
        if rng.random() < 0.55
        else Material(T_PAINT, _light_colour(rng), scale=rng.uniform(0.5, 2.0))
    )
    casing = leaf if rng.random() < 0.4 else laminate(rng)
    c, ct, lt = rng.uniform(0.04, 0.09), rng.uniform(0.012, 0.025), rng.uniform(0.008, 0.03)
    metal = Material(T_PLAIN, _hsv(0.1, rng.uniform(0.0, 0.4), rng.uniform(0.35, 0.85)))
    side = 1.0 if rng.random() < 0.5 else -1.0
    hx = side * (w / 2 - rng.uniform(0.06, 0.1))
    parts = [
        _box(-w / 2, w / 2, 0.0, lt, 0.0, h, WALL, leaf),
        _box(-w / 2 - c, -w / 2, 0.0, ct, 0.0, h + c, WALL, casing, 1),
        _box(w / 2, w / 2 + c, 0.0, ct, 0.0, h + c, WALL, casing, 1),
        _box(-w / 2, w / 2, 0.0, ct, h, h + c, WALL, casing, 1),
        _box(hx - 0.07, hx + 0.07, lt, lt + 0.05, 1.0, 1.03, WALL, metal, 2),
    ]
    if rng.random() < 0.3:  # a glass pane: dark, showing a dim corridor
        gw, gh = rng.uniform(0.12, 0.4) * w / 0.9, rng.uniform(0.5, 0.9)
        glass = Material(T_PAINT, _hsv(rng.uniform(0.05, 0.6), rng.uniform(0.0, 0.2), rng.uniform(0.1, 0.45)))
        parts.append(_box(-gw / 2, gw / 2, lt, lt + 0.002, h - 0.3 - gh, h - 0.3, WINDOW, glass, 3))
    for _ in range(int(rng.integers(0, 3))):
        k = rng.uniform(0.6, 1.0)  # portrait notices
        parts.append(
            _sheet(
                rng,
                lt,
                rng.uniform(-0.15, 0.15) * w,
                rng.uniform(1.2, 1.6),
                PAPER_SIZE[0] * k,
                PAPER_SIZE[1] * k,
            )
        )
    return Obj(parts, w + 2 * c, lt + 0.05, h + c)


def dress_walls(b: SceneBuilder, rng: np.random.Generator, profile: Profile, walls: Walls) -> None:
    """Doors, boards and papers on the walls and, by chance, off-white paint (``profile.dresses_walls``)."""
    if rng.random() < profile.office_paint_chance:
        paint = Material(
            T_PAINT,
            _hsv(rng.uniform(0.07, 0.17), rng.uniform(0.0, 0.16), rng.uniform(0.7, 0.95)),
            scale=rng.uniform(0.5, 2.0),
        )
        b.repaint_walls(paint)
    for w in walls(int(rng.integers(*profile.doors))):
        b.mount_on_wall(make_door(rng), w, 0.0)
    if rng.random() < profile.board_chance:
        board = make_notice_board(rng)
        b.mount_on_wall(board, walls(1)[0], rng.uniform(1.0, 1.5) - board.height / 2)
    if rng.random() < profile.board_chance:
        board = make_whiteboard(rng)
        b.mount_on_wall(board, walls(1)[0], rng.uniform(0.8, 1.05))
    for w in walls(int(rng.integers(*profile.wall_papers))):
        paper = make_paper(rng)
        b.mount_on_wall(paper, w, rng.uniform(*PAPER_HEIGHT) - paper.height / 2)


def _desk_extras(b: SceneBuilder, rng: np.random.Generator) -> None:
    """Monitor on the last desk, office chair in front of it."""
    desk = b.supports[-1]
    if rng.random() < 0.75:
        mon = make_tv(rng, "monitor")
        # a strip along the back of the desk, sharing the desk's list of items
        back = desk.half[1] - mon.depth / 2 - 0.01
        c, s = math.cos(desk.yaw), math.sin(desk.yaw)
        centre = (desk.centre[0] + s * back, desk.centre[1] - c * back)
        strip = Support(centre, (desk.half[0], mon.depth / 2 + 0.005), desk.yaw, desk.z, 1.0, desk.items)
        b.place_on_support(mon, strip, yaw_jitter=0.05)
    pos, yaw = _front_of_last(b, rng.uniform(0.55, 0.75))
    chair = make_chair(rng, "office" if rng.random() < 0.6 else "chair")
    b.place_free(chair, centre=pos, spread=0.1, yaw=yaw + math.pi + rng.uniform(-0.5, 0.5))


def _tv_on_stand_or_wall(b: SceneBuilder, rng: np.random.Generator, wall: int) -> None:
    if rng.random() < 0.65:
        stand = make_cabinet(rng, "tv_stand")
        if b.place_on_wall(stand, wall):
            _, s, pos, yaw = b.last_wall_pos
            tv = make_tv(rng, "stand")
            b.place(tv, pos[0], pos[1], stand.height, yaw)
            inward = np.array([-math.sin(yaw), math.cos(yaw)])
            b.supports.append(
                Support(tuple(pos + inward * 0.12), (stand.width / 2 - 0.05, 0.05), yaw, stand.height, 0.3)
            )
    else:
        tv = make_tv(rng, "wall")
        b.mount_on_wall(tv, wall, rng.uniform(0.9, 1.4))


def _lights(rng: np.random.Generator, b: SceneBuilder, profile: Profile = NYU) -> list[Light]:
    """Ceiling lights (1-2 in the "nyu" profile, with a visible ``objects`` fitting) and sometimes
    a window light."""
    lx, ly, hz = b.room
    lights = []
    temp = rng.uniform(*profile.light_temperature)  # warm / cold tint
    for _ in range(int(rng.integers(*profile.light_count))):
        x, y = rng.uniform(0.2, 0.8) * lx, rng.uniform(0.2, 0.8) * ly
        power = rng.uniform(*profile.light_power)
        lights.append(Light((x, y, hz - 0.25), (power * (1 + temp), power, power * (1 - temp))))
        fitting = Material(T_LAMP, (1.0, 0.97, 0.9))
        r, h = rng.uniform(0.12, 0.3), rng.uniform(0.03, 0.12)
        b.place(Obj([_cyl(0.0, 0.0, -h, r, h, OBJECTS, fitting)], 2 * r, 2 * r, h), x, y, hz, 0.0)
    if rng.random() < 0.5:
        side = int(rng.integers(4))
        origin, along, inward, length, _ = b.wall_frame(side)
        p = origin + along * length * rng.uniform(0.2, 0.8) - inward * 2.0
        power = rng.uniform(6.0, 20.0)
        lights.append(Light((p[0], p[1], hz * 0.8), (power * 0.9, power * 0.95, power)))
    return lights


def _vary_colours(materials: list[Material], rng: np.random.Generator, profile: Profile) -> list[Material]:
    """Each material with every colour channel scaled by exp(N(0, material_colour_std)) and its
    colours' distance from their grey scaled by a factor in ``material_saturation`` (one draw per
    material, shared by its colours so that textures keep their contrast), clipped to [0, 1]."""
    out = []
    for m in materials:
        gain = np.exp(rng.normal(0.0, profile.material_colour_std, size=3)).tolist()
        sat = rng.uniform(*profile.material_saturation)
        cols = []
        for col in (m.c1, m.c2, m.c3):
            # python floats, in the order numpy would use: rgb = col * gain, grey = mean(rgb)
            rgb = [c * g for c, g in zip(col, gain)]
            grey = (rgb[0] + rgb[1] + rgb[2]) / 3
            cols.append(tuple(min(max(grey + (c - grey) * sat, 0.0), 1.0) for c in rgb))
        out.append(replace(m, c1=cols[0], c2=cols[1], c3=cols[2]))
    return out


def sample_layout(
    rng: np.random.Generator, profile: Profile = NYU, aux: np.random.Generator | None = None
) -> Layout:
    """Draw one room: size, type, camera, furniture, wall items, clutter, lights.

    ``profile`` sets the ranges (see ``synthetic_profile``); its extra draws (focal length, material
    colour variation) come from ``aux``, so that the "nyu" profile, which makes none, draws exactly
    the original sequence from ``rng``. ``aux`` is required when the profile makes extra draws.
    """
    extra = profile.varies_focal or profile.material_colour_std > 0
    if extra and aux is None:
        raise ValueError(f"profile {profile.name!r} needs an aux generator")
    focal_scale = float(aux.uniform(*profile.focal_scale)) if profile.varies_focal else 1.0
    room = (rng.uniform(*ROOM_SIZE_X), rng.uniform(*ROOM_SIZE_Y), rng.uniform(*ROOM_HEIGHT))
    room_type = str(rng.choice(ROOM_TYPES, p=ROOM_TYPE_PROBS))
    cam_pos, cam_rot, cam_wall = _camera(rng, room, profile)
    b = SceneBuilder(rng, room, cam_pos, cam_rot, cam_wall, focal_scale)
    _add_room_prims(b, rng, room_type)
    _populate(b, rng, room_type, cam_wall, profile)
    lights = _lights(rng, b, profile)
    cam_rot = _aim(rng, b, cam_pos, cam_rot, cam_wall, profile)
    prims = b.primitives()
    if profile.material_colour_std > 0:
        prims.materials = _vary_colours(prims.materials, aux, profile)
    return Layout(
        room=room,
        cam_position=cam_pos,
        cam_to_world=cam_rot,
        prims=prims,
        lights=lights,
        ambient=float(rng.uniform(*profile.ambient)),
        room_type=room_type,
        footprints=b.shadow_footprints,
        focal_scale=focal_scale,
    )
