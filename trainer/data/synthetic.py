"""Procedural indoor scenes with exact, mutually consistent NYUD-v2 labels, written in the NYUD-v2
MTAN / XTC ``.npy`` layout.

Pure numpy (no torch). Image ``i`` of a split is a function of ``(seed, split, i)`` only, so
generation can be parallelised and resumed.

How a scene is made (``synthetic_layout`` and ``synthetic_render``):

* a room (box, 3-6.5 x 3-6 x 2.4-3 m) of one of five types (bedroom, living room, office, kitchen,
  study) with furniture of all 13 NYUD-v2 classes placed against walls or around tables, pictures,
  windows (with curtains) and tvs on walls, books on shelves and tables, clutter on every surface;
* a pinhole camera with NYU's Kinect RGB intrinsics scaled to the output size, 1.0-1.75 m high
  near one wall looking into the room (pitch -24..+4 deg, yaw +-40 deg, roll ~2 deg), aimed as
  the best of a few random orientations at seeing many objects and classes;
* analytic ray casting of every pixel (ray-box slabs, ray-cylinder, ray-sphere, nearest hit) gives
  z-depth, class, instance and the exact surface normal of the hit primitive;
* procedural textures (wood grain, planks, tiles, carpet, fabric, wallpaper stripes, paint, book
  spines, abstract pictures, outside views), class-correlated but overlapping colour palettes,
  Lambertian point lights with falloff + ambient + highlights, corner and contact darkening,
  auto-exposure and white balance, then image sensor noise (blur, Gaussian noise, 2x2 chroma
  subsampling, 8-bit quantisation).

Conventions of the returned arrays:

* ``label``: class index 0..12 in ``NYUD_CLASSES`` order, exact (from geometry) on every pixel;
  -1 only where a ray hits nothing, which cannot happen (the camera is inside a closed room).
* ``depth``: Kinect-like sensor depth in metres (z along the optical axis, as NYU stores it) with
  noise growing with depth and disparity quantisation; **0 = missing** on glass (windows), on
  some black tv screens, on the far side of depth discontinuities, on grazing surfaces, beyond
  10 m and as sparse speckles. ``depth_clean`` is the exact z-depth without noise or holes.
* ``normal``: unit normals of the geometry in the **camera frame** (x right, y down, z forward),
  oriented towards the camera (``n . ray < 0``); exact on every pixel, including where depth is
  missing.
* ``edge``: 1 on the nearer pixel of every pair of 4-neighbours whose class differs, and of every
  pair of different instances (same class allowed) whose clean depth differs by more than 5 %
  (occlusion boundaries, e.g. a chair in front of another chair, adjacent books at different
  depths); 1 pixel wide.
"""

from __future__ import annotations

import ctypes
import json
import os
import time
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from trainer.data.synthetic_layout import Layout, sample_layout
from trainer.data.synthetic_profile import AUX_STREAM, DEFAULT_PROFILE, get_profile
from trainer.data.synthetic_render import (
    albedo,
    cast,
    depth_sensor,
    edges,
    expose,
    image_sensor,
    intrinsics,
    shade,
    surface,
    world_rays,
)
from trainer.tasks import IGNORE_LABEL, NYUD_CLASSES

GENERATOR_VERSION = "1.0"
"""Bumped whenever the same (seed, split, index, profile) would give a different image."""
SPLIT_IDS = {"train": 0, "test": 1, "val": 1}
"""Seed-stream id of each split (``val`` and ``test`` name the same split, written to ``val/``)."""
SPLIT_DIRS = {"train": "train", "test": "val"}
"""On-disk folder of each split, as in the MTAN NYUD-v2 layout (test images live in ``val/``)."""
DEFAULT_HEIGHT, DEFAULT_WIDTH = 288, 384
KEYS = ("image", "label", "depth", "normal", "edge")
"""Per-image files written by ``write_dataset``, in write order."""
INTRINSICS_KEY = "intrinsics"
"""Per-image file (4,) float64 (fx, fy, cx, cy) in pixels, written by profiles whose focal length
varies per image (``"wide"``); the labels were rendered with exactly these intrinsics."""
META_FILE = "synthetic.json"
IDENTITY_FIELDS = ("generator_version", "profile", "seed", "height", "width", "num_train", "num_test")
"""Fields of ``synthetic.json`` that must match for a re-run to resume an existing folder."""
IDENTITY_DEFAULTS = {"profile": DEFAULT_PROFILE}
"""Values of identity fields missing from an older ``synthetic.json`` (written before profiles)."""
POOL_CHUNKSIZE = 4
# glibc mallopt parameters and the values ``tune_allocator`` sets
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 256 << 20
TOP_PAD_BYTES = 64 << 20


def tune_allocator() -> bool:
    """Make glibc keep freed memory in the heap instead of returning it to the system.

    Rendering allocates many short-lived ~0.5 MB temporaries; by default glibc serves them with
    fresh pages (mmap / heap trimming), and the page faults cost about as much as the arithmetic
    (e.g. 7.8 -> 3.2 ms for the surface stage). Process-wide: ``write_dataset`` calls it in the
    processes it renders in, the benchmark too; ``generate_scene`` never does. Returns whether it
    applied (False off glibc).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        settings = (
            (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
            (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
            (M_TOP_PAD, TOP_PAD_BYTES),
        )
        return all(libc.mallopt(param, value) == 1 for param, value in settings)
    except (OSError, AttributeError):
        return False


def generate_scene(
    seed: int,
    split: str,
    index: int,
    height: int = DEFAULT_HEIGHT,
    width: int = DEFAULT_WIDTH,
    timings: dict[str, float] | None = None,
    profile: str = DEFAULT_PROFILE,
) -> dict:
    """Render one synthetic scene.

    Args:
        seed: data set seed. split: "train" or "test" ("val" is the same as "test"). index: image
        index within the split. height, width: output size. timings: if given, the CPU seconds of
        each stage are added to it (for profiling).
        profile: "nyu" (the original generator) or "wide" (see ``synthetic_profile``).

    Returns a dict (a function of (seed, split, index, profile)):
        image (H, W, 3) float32 in [0, 1]; label (H, W) int16 classes 0..12;
        depth (H, W, 1) float32 metres, 0 = missing; depth_clean (H, W, 1) float32 exact z-depth;
        normal (H, W, 3) float32 unit, camera frame, facing the camera; edge (H, W) uint8 {0, 1};
        instance (H, W) int32 object id (0 = room surfaces); meta: dict with ``intrinsics`` (fx, fy, cx, cy), ``cam_to_world`` (3, 3) (columns: camera
        x, y, z axes in the world frame, world Z up), ``cam_position`` (3,) metres, ``up_camera``
        (3,) the world's up direction in the camera frame, ``room_size`` (3,), ``room_type``,
        ``num_primitives``, ``profile``; ``intrinsics`` are those the scene was rendered with.
    """
    if split not in SPLIT_IDS:
        raise ValueError(f"unknown split {split!r}; valid: {sorted(SPLIT_IDS)}")
    prof, clock = get_profile(profile), _StageClock(timings)
    rng = np.random.default_rng([seed, SPLIT_IDS[split], index])
    layout = sample_layout(rng, prof, np.random.default_rng([seed, SPLIT_IDS[split], index, AUX_STREAM]))
    clock("layout")
    d = world_rays(layout, height, width)
    z, pid = cast(layout, d, height, width)
    clock("cast")
    surf = surface(layout, d, z, pid)
    clock("surface")
    alb, emissive = albedo(layout, surf, pid)
    clock("albedo")
    lin = shade(layout, surf, alb, emissive, pid, d, rng)
    clock("shade")
    image = image_sensor(expose(lin, emissive, rng, prof), rng, prof)
    clock("image_sensor")

    label = layout.prims.cls.take(pid)
    inst = layout.prims.inst.take(pid)
    normal, depth = _normals_and_depth(layout, surf, z, pid, height, width, rng)
    clock("depth_normals")
    edge = edges(label, inst, z)
    clock("edges_pack")
    return {
        "image": image,
        "label": label.astype(np.int16, copy=False),
        "depth": depth[..., None],
        "depth_clean": z[..., None],
        "normal": normal,
        "edge": edge,
        "instance": inst.astype(np.int32, copy=False),
        "meta": _scene_meta(layout, height, width, profile),
    }


def _normals_and_depth(
    layout: Layout,
    surf: dict,
    z: np.ndarray,
    pid: np.ndarray,
    height: int,
    width: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame normals (H, W, 3) and the sensor's depth (H, W) with its noise and holes."""
    prims = layout.prims
    # camera-frame normals: n_cam = R^T n_world (R = cam_to_world), unit by construction
    rot = layout.cam_to_world.astype(np.float32)
    nw = (surf["nx"], surf["ny"], surf["nz"])
    normal = np.empty((height, width, 3), np.float32)
    tmp = np.empty((height, width), np.float32)
    nc = []
    for a in range(3):  # rot[0, a] nw0 + rot[1, a] nw1 + rot[2, a] nw2, in place
        n = np.multiply(rot[0, a], nw[0])
        n += np.multiply(rot[1, a], nw[1], out=tmp)
        n += np.multiply(rot[2, a], nw[2], out=tmp)
        normal[..., a] = n
        nc.append(n)
    # cosine of incidence: -n . ray / |ray| with the camera-frame ray (slope_u, slope_v, 1)
    su, sv, ray_norm = _camera_rays(height, width, layout.focal_scale)
    cos_inc = np.multiply(nc[0], su)
    cos_inc += np.multiply(nc[1], sv, out=tmp)
    cos_inc += nc[2]
    np.negative(cos_inc, out=cos_inc)
    cos_inc /= ray_norm
    hole = np.array([m.depth_hole for m in prims.materials])[prims.material].take(pid)
    depth = depth_sensor(z, cos_inc, hole, rng)
    return normal, depth


@lru_cache(maxsize=8)
def _camera_rays(height: int, width: int, focal_scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera-frame ray slopes su (1, W), sv (H, 1) of the pixel centres and the ray lengths
    sqrt(su^2 + sv^2 + 1) (H, W), float32 (cached: the same for every image of a size and focal)."""
    fx, fy, cx, cy = intrinsics(height, width, focal_scale)
    su = ((np.arange(width, dtype=np.float32) - np.float32(cx)) / np.float32(fx))[None, :]
    sv = ((np.arange(height, dtype=np.float32) - np.float32(cy)) / np.float32(fy))[:, None]
    return su, sv, np.sqrt(su * su + sv * sv + 1)


def _scene_meta(layout: Layout, height: int, width: int, profile: str) -> dict:
    return {
        "profile": profile,
        "intrinsics": intrinsics(height, width, layout.focal_scale),
        "cam_to_world": layout.cam_to_world.copy(),
        "cam_position": layout.cam_position.copy(),
        "up_camera": layout.cam_to_world.T @ np.array([0.0, 0.0, 1.0]),
        "room_size": layout.room,
        "room_type": layout.room_type,
        "num_primitives": len(layout.prims.ptype),
    }


class _StageClock:
    """Adds the CPU time since the previous call to ``timings[stage]`` (no-op without a dict)."""

    def __init__(self, timings: dict[str, float] | None):
        self.timings = timings
        self.last = time.process_time() if timings is not None else 0.0

    def __call__(self, stage: str) -> None:
        if self.timings is not None:
            now = time.process_time()
            self.timings[stage] = self.timings.get(stage, 0.0) + now - self.last
            self.last = now


# --------------------------------------------------------------------------- writing


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def keys_for(profile: str) -> tuple[str, ...]:
    """Per-image files ``write_dataset`` writes for ``profile``: KEYS, plus INTRINSICS_KEY when the
    profile varies the focal length."""
    return KEYS + ((INTRINSICS_KEY,) if get_profile(profile).varies_focal else ())


def _image_done(out: Path, split: str, index: int, keys: tuple[str, ...] = KEYS) -> bool:
    """An image is complete when all its files exist (each is written atomically)."""
    return all((out / SPLIT_DIRS[split] / key / f"{index}.npy").exists() for key in keys)


def _worker_init() -> None:
    tune_allocator()


def _write_one(job: tuple[Path, int, str, int, int, int, str]) -> tuple[str, int]:
    out, seed, split, index, height, width, profile = job
    scene = generate_scene(seed, split, index, height, width, profile=profile)
    arrays = {
        "image": scene["image"],
        "label": scene["label"].astype(np.float32),
        "depth": scene["depth"],
        "normal": scene["normal"],
        "edge": scene["edge"],
        INTRINSICS_KEY: np.asarray(scene["meta"]["intrinsics"], np.float64),
    }
    folder = out / SPLIT_DIRS[split]
    for key in keys_for(profile):
        _atomic_save(folder / key / f"{index}.npy", arrays[key])
    return split, index


def _metadata(
    seed: int, num_train: int, num_test: int, height: int, width: int, complete: bool, profile: str
) -> dict:
    fx, fy, cx, cy = intrinsics(height, width)
    prof = get_profile(profile)
    files = {
        "image": "float32 (H, W, 3) in [0, 1]",
        "label": "float32 (H, W) class 0..12, -1 = ignore",
        "depth": "float32 (H, W, 1) metres (z-depth), 0 = missing",
        "normal": "float32 (H, W, 3) unit, camera frame x right y down z forward, facing the camera",
        "edge": "uint8 (H, W) {0, 1}",
    }
    if prof.varies_focal:
        files[INTRINSICS_KEY] = "float64 (4,) fx, fy, cx, cy in pixels of this image (focal varies per image)"
    return {
        "generator": "trainer.data.synthetic",
        "generator_version": GENERATOR_VERSION,
        "profile": profile,
        "seed": seed,
        "num_train": num_train,
        "num_test": num_test,
        "height": height,
        "width": width,
        "intrinsics": {"fx": fx, "fy": fy, "cx": cx, "cy": cy},
        "focal_scale": list(prof.focal_scale),
        "classes": list(NYUD_CLASSES),
        "ignore_label": IGNORE_LABEL,
        "splits": {"train": "train", "test": "val"},
        "files": files,
        "complete": complete,
    }


def write_dataset(
    out: Path,
    num_train: int = 795,
    num_test: int = 654,
    seed: int = 0,
    height: int = DEFAULT_HEIGHT,
    width: int = DEFAULT_WIDTH,
    workers: int = 1,
    progress: bool = True,
    profile: str = DEFAULT_PROFILE,
) -> Path:
    """Write a synthetic set in the NYUD-v2 MTAN / XTC layout and return ``out``.

    ``out/train/{image,label,depth,normal,edge}/<i>.npy`` for i < num_train and the same under
    ``out/val/`` for the num_test test images, plus ``out/synthetic.json`` (generator version,
    seed, counts, size, intrinsics, classes, ``complete``). Every file is written atomically
    (temporary file + ``os.replace``); images whose five files all exist are skipped, so a killed
    run is completed by running it again with the same arguments. A folder made with other
    arguments is refused. ``workers > 1`` renders in a spawn-started process pool.

    ``profile`` selects the generator profile (``synthetic_profile``); it is recorded in
    ``synthetic.json`` and is an identity field (a folder of one profile is never resumed as
    another). ``intrinsics`` in ``synthetic.json`` are NYU's at the size; profiles that vary the
    focal length (``focal_scale`` != [1, 1]) also write ``<split>/intrinsics/<i>.npy`` per image.
    """
    get_profile(profile)
    out = Path(out)
    if num_train < 0 or num_test < 0 or height < 8 or width < 8:
        raise ValueError(
            f"bad sizes: num_train={num_train} num_test={num_test} height={height} width={width}"
        )
    meta_path = out / META_FILE
    meta = _metadata(seed, num_train, num_test, height, width, False, profile)
    keys = keys_for(profile)
    _prepare_folder(out, meta, keys)
    _atomic_save_json(meta_path, meta)
    jobs = [
        (out, seed, split, i, height, width, profile)
        for split, n in (("train", num_train), ("test", num_test))
        for i in range(n)
        if not _image_done(out, split, i, keys)
    ]
    _render(jobs, workers, total=num_train + num_test if progress else None)
    _atomic_save_json(meta_path, _metadata(seed, num_train, num_test, height, width, True, profile))
    return out


def _prepare_folder(out: Path, meta: dict, keys: tuple[str, ...] = KEYS) -> None:
    """Refuse a folder made with other arguments; make the split folders; drop stale temporary files."""
    meta_path = out / META_FILE
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        old = {k: old.get(k, IDENTITY_DEFAULTS.get(k)) for k in IDENTITY_FIELDS}
        diff = {k: (old[k], meta[k]) for k in IDENTITY_FIELDS if old[k] != meta[k]}
        if diff:
            raise ValueError(
                f"{out} holds a synthetic set made with other arguments {diff} (existing, requested); use another folder"
            )
    for split in SPLIT_DIRS.values():
        for key in keys:
            folder = out / split / key
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob(".*.tmp"):
                stale.unlink()


def _render(jobs: list[tuple], workers: int, total: int | None) -> None:
    """Render and write every job, in a spawn-started pool with ``workers > 1``; a progress bar over
    ``total`` images (the jobs are what is left of them) unless ``total`` is None."""
    bar = None
    if total is not None:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=total - len(jobs), desc="synthetic", unit="img")
    if workers > 1 and len(jobs) > 1:
        with get_context("spawn").Pool(min(workers, len(jobs)), initializer=_worker_init) as pool:
            for _ in pool.imap_unordered(_write_one, jobs, chunksize=POOL_CHUNKSIZE):
                if bar is not None:
                    bar.update(1)
    else:
        tune_allocator()
        for job in jobs:
            _write_one(job)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()


def _atomic_save_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)
