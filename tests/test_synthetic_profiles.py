"""Generator profiles of the synthetic set: "nyu" is the original generator, "wide" is deterministic,
varies its focal length per image and records it, and keeps its labels exact (normals agree with
depth back-projected through the recorded intrinsics); the profile is part of a folder's identity.
Small images keep the file fast."""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pytest

from trainer.cli import build_parser
from trainer.data import build_dataset
from trainer.data.synthetic import INTRINSICS_KEY, KEYS, META_FILE, generate_scene, keys_for, write_dataset
from trainer.data.synthetic_layout import sample_layout
from trainer.data.synthetic_profile import NYU, PROFILES, WIDE, WIDE_WALLS, get_profile
from trainer.data.synthetic_render import intrinsics
from trainer.tasks import NYUD_CLASSES, tasks_for

H, W = 72, 96
FLOOR, WALL = NYUD_CLASSES.index("floor"), NYUD_CLASSES.index("wall")
ARRAYS = ("image", "label", "depth", "depth_clean", "normal", "edge", "instance")
NUM_WIDE = 8
GRAZING_TOL = 1e-4


@cache
def wide(index: int, height: int = H, width: int = W) -> dict:
    return generate_scene(0, "train", index, height, width, profile="wide")


def rays(intr: tuple[float, float, float, float], height: int, width: int) -> np.ndarray:
    """Camera-frame ray (H, W, 3) with z = 1 of every pixel, through the given (fx, fy, cx, cy)."""
    fx, fy, cx, cy = intr
    u = (np.arange(width) - cx) / fx
    v = (np.arange(height) - cy) / fy
    return np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((height, width))), axis=-1)


def depth_normals(depth: np.ndarray, intr) -> np.ndarray:
    """Normals (H-2, W-2, 3) of the interior pixels from central differences of the depth
    back-projected through ``intr``, oriented towards the camera."""
    h, w = depth.shape
    r = rays(intr, h, w)
    pts = r * depth[..., None].astype(np.float64)
    n = np.cross(pts[1:-1, 2:] - pts[1:-1, :-2], pts[2:, 1:-1] - pts[:-2, 1:-1])
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    n[(n * r[1:-1, 1:-1]).sum(-1) > 0] *= -1
    return n


def test_unknown_profile_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown synthetic profile"):
        get_profile("real")
    with pytest.raises(ValueError, match="unknown synthetic profile"):
        generate_scene(0, "train", 0, H, W, profile="real")
    with pytest.raises(ValueError, match="unknown synthetic profile"):
        write_dataset(
            tmp_path / "x", num_train=1, num_test=0, height=H, width=W, progress=False, profile="real"
        )
    assert sorted(PROFILES) == ["nyu", "wide", "wide_walls"]


def test_nyu_profile_is_the_default_and_makes_no_extra_draws():
    for i in range(2):
        a, b = generate_scene(0, "train", i, H, W), generate_scene(0, "train", i, H, W, profile="nyu")
        for key in ARRAYS:
            np.testing.assert_array_equal(a[key], b[key])
        assert b["meta"]["profile"] == "nyu"
        assert b["meta"]["intrinsics"] == intrinsics(H, W)
    layout = sample_layout(np.random.default_rng([0, 0, 0]), NYU, aux=None)  # no aux needed
    assert layout.focal_scale == 1.0
    with pytest.raises(ValueError, match="aux"):
        sample_layout(np.random.default_rng([0, 0, 0]), WIDE, aux=None)
    assert keys_for("nyu") == KEYS


def test_wide_is_deterministic_and_differs_from_nyu():
    a, b = wide(3), generate_scene(0, "train", 3, H, W, profile="wide")
    for key in ARRAYS:
        np.testing.assert_array_equal(a[key], b[key])
    assert a["meta"]["intrinsics"] == b["meta"]["intrinsics"]
    assert not np.array_equal(a["image"], wide(4)["image"])
    assert not np.array_equal(a["image"], generate_scene(0, "train", 3, H, W)["image"])
    assert not np.array_equal(a["image"], generate_scene(0, "test", 3, H, W, profile="wide")["image"])


def test_wide_ranges_and_dtypes():
    for i in range(NUM_WIDE):
        s = wide(i)
        assert s["image"].dtype == np.float32 and 0.0 <= s["image"].min() and s["image"].max() <= 1.0
        assert s["label"].min() >= 0 and s["label"].max() < len(NYUD_CLASSES)
        assert (s["depth"] >= 0).all() and (s["depth_clean"] > 0).all()
        np.testing.assert_allclose(np.linalg.norm(s["normal"], axis=-1), 1.0, atol=1e-4)


def test_wide_focal_varies_within_its_range_and_is_recorded():
    fx0, fy0, cx0, cy0 = intrinsics(H, W)
    lo, hi = WIDE.focal_scale
    scales = []
    for i in range(NUM_WIDE):
        fx, fy, cx, cy = wide(i)["meta"]["intrinsics"]
        assert (cx, cy) == (cx0, cy0)
        assert fx / fx0 == pytest.approx(fy / fy0)
        scales.append(fx / fx0)
    assert lo <= min(scales) and max(scales) <= hi
    assert max(scales) - min(scales) > 0.05, scales


def test_wide_normals_face_the_camera_through_the_recorded_intrinsics():
    for i in range(4):
        s = wide(i)
        r = rays(s["meta"]["intrinsics"], H, W)
        # < 0 up to the float32 rounding of the renderer's rays (grazing pixels reach ~2e-5)
        assert np.all((s["normal"].astype(np.float64) * r).sum(-1) < GRAZING_TOL)


def _planar_errors(s: dict, cls: int, intr) -> np.ndarray:
    """Angles (deg) between the given normals and depth-derived ones on the interior of planar room
    regions of class ``cls`` (away from corners)."""
    lab, inst, nrm = s["label"], s["instance"], s["normal"]
    same = (lab == cls) & (inst == 0)
    interior = same[1:-1, 1:-1] & same[:-2, 1:-1] & same[2:, 1:-1] & same[1:-1, :-2] & same[1:-1, 2:]
    for shifted in (nrm[1:-1, 2:], nrm[1:-1, :-2], nrm[2:, 1:-1], nrm[:-2, 1:-1]):
        interior &= np.all(np.abs(nrm[1:-1, 1:-1] - shifted) < 1e-3, axis=-1)
    n_depth = depth_normals(s["depth_clean"][..., 0], intr)
    cos = (n_depth[interior] * nrm[1:-1, 1:-1][interior]).sum(-1)
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def test_wide_normals_agree_with_depth_through_the_recorded_intrinsics():
    """Exact labels: right intrinsics -> normals and depth agree; NYU's unscaled ones do not (the
    focal factor matters, so the recorded intrinsics are needed)."""
    right, wrong = [], []
    for i in range(NUM_WIDE):
        s = wide(i, 144, 192)
        scale = s["meta"]["intrinsics"][0] / intrinsics(144, 192)[0]
        for cls in (FLOOR, WALL):
            err = _planar_errors(s, cls, s["meta"]["intrinsics"])
            if err.size < 50:
                continue
            right.append(err.mean())
            if abs(scale - 1.0) > 0.06:
                wrong.append(_planar_errors(s, cls, intrinsics(144, 192)).mean())
    assert len(right) >= 6 and len(wrong) >= 2
    assert max(right) < 0.5, right
    assert np.mean(wrong) > 2 * np.mean(right) + 0.5, (right, wrong)


def test_wide_write_dataset_records_profile_and_intrinsics(tmp_path):
    out = write_dataset(
        tmp_path / "w", num_train=2, num_test=1, seed=3, height=H, width=W, progress=False, profile="wide"
    )
    meta = json.loads((out / META_FILE).read_text())
    assert meta["profile"] == "wide" and meta["complete"] and INTRINSICS_KEY in meta["files"]
    assert meta["focal_scale"] == list(WIDE.focal_scale)
    for split, n, name in (("train", 2, "train"), ("val", 1, "test")):
        for i in range(n):
            s = generate_scene(3, name, i, H, W, profile="wide")
            np.testing.assert_array_equal(
                np.load(out / split / INTRINSICS_KEY / f"{i}.npy"), s["meta"]["intrinsics"]
            )
            np.testing.assert_array_equal(np.load(out / split / "image" / f"{i}.npy"), s["image"])
    # the trainer reads a "wide" folder like any synthetic one
    sample = build_dataset("synthetic", out, "train", tasks_for("nyud"))[0]
    assert sample["image"].shape == (3, H, W)
    # rerun resumes; the other profile is refused
    write_dataset(out, num_train=2, num_test=1, seed=3, height=H, width=W, progress=False, profile="wide")
    with pytest.raises(ValueError, match="profile"):
        write_dataset(out, num_train=2, num_test=1, seed=3, height=H, width=W, progress=False)


def test_folder_written_before_profiles_resumes_as_nyu_only(tmp_path):
    out = write_dataset(tmp_path / "n", num_train=1, num_test=0, height=H, width=W, progress=False)
    meta = json.loads((out / META_FILE).read_text())
    assert meta["profile"] == "nyu" and INTRINSICS_KEY not in meta["files"]
    assert not (out / "train" / INTRINSICS_KEY).exists()
    del meta["profile"]
    (out / META_FILE).write_text(json.dumps(meta))
    write_dataset(out, num_train=1, num_test=0, height=H, width=W, progress=False)
    with pytest.raises(ValueError, match="profile"):
        write_dataset(out, num_train=1, num_test=0, height=H, width=W, progress=False, profile="wide")


def test_cli_prepare_takes_the_profile():
    args = build_parser().parse_args(["prepare", "--out", "x", "--profile", "wide"])
    assert args.profile == "wide"
    assert build_parser().parse_args(["prepare", "--out", "x"]).profile == "nyu"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["prepare", "--out", "x", "--profile", "real"])


def test_only_wide_walls_dresses_walls_and_the_others_never_call_it(monkeypatch):
    from trainer.data import synthetic_layout

    assert WIDE_WALLS.dresses_walls and not NYU.dresses_walls and not WIDE.dresses_walls

    def refuse(*args, **kwargs):
        raise AssertionError("dress_walls called")

    monkeypatch.setattr(synthetic_layout, "dress_walls", refuse)
    generate_scene(0, "train", 0, H, W, profile="wide")  # no draw, no call: "wide" stays as it was
    with pytest.raises(AssertionError, match="dress_walls called"):
        generate_scene(0, "train", 0, H, W, profile="wide_walls")


def test_door_parts_carry_nyu_labels():
    from trainer.data.synthetic_layout import OBJECTS, WALL, WINDOW, make_door

    seen = set()
    for seed in range(40):
        door = make_door(np.random.default_rng(seed))
        classes = [p.cls for p in door.parts]
        assert classes[:5] == [WALL] * 5  # leaf, casing (3), handle: a door is wall in NYU's 13 classes
        assert set(classes[5:]) <= {WINDOW, OBJECTS}  # its glass pane, the notices on it
        seen |= set(classes[5:])
        leaf = door.parts[0]
        assert leaf.b[0] - leaf.a[0] < door.width and leaf.b[2] < door.height  # the casing frames the leaf
    assert seen == {WINDOW, OBJECTS}


def test_wide_walls_puts_objects_and_doors_on_the_walls():
    """Over a few scenes: printed sheets / boards (objects) touch the walls' planes, door instances are
    labelled wall, and the profile stays deterministic."""
    from trainer.data.synthetic_layout import OBJECTS, WALL

    on_wall_objects = doors = 0
    for i in range(8):
        s = generate_scene(0, "val", i, 48, 64, profile="wide_walls")
        label, inst = s["label"], s["instance"]
        doors += len(np.unique(inst[(label == WALL) & (inst > 0)]))
        on_wall_objects += int(((label == OBJECTS) & (inst > 0)).sum())
        again = generate_scene(0, "val", i, 48, 64, profile="wide_walls")
        np.testing.assert_array_equal(s["image"], again["image"])
    assert doors > 0 and on_wall_objects > 0


def test_print_texture_inks_lines_inside_the_margins_only():
    from trainer.data.synthetic_layout import T_PRINT
    from trainer.data.synthetic_render import PRINT_GAP, PRINT_INK, PRINT_MARGIN, _pattern, _tiles

    rng = np.random.default_rng(0)
    n = 200_000
    attrs = {"u": rng.uniform(10, 11, n), "v": rng.uniform(10, 11, n), "un": rng.uniform(-1, 1, n)}
    attrs["vn"] = rng.uniform(-1, 1, n)
    attrs = {k: v.astype(np.float32) for k, v in attrs.items()}
    pitch = np.full(n, 0.01, np.float32)
    t, _, _ = _pattern(T_PRINT, attrs.__getitem__, pitch, np.zeros(n, np.int64), _tiles())
    inside = (np.abs(attrs["un"]) < PRINT_MARGIN) & (np.abs(attrs["vn"]) < PRINT_MARGIN)
    assert t[~inside].max() == 0.0  # blank margins
    # ink on PRINT_INK of each line's pitch, on the words that are not gaps
    assert t[inside].mean() == pytest.approx(PRINT_INK * (1 - PRINT_GAP), abs=0.03)
    line = attrs["v"] / 0.01
    assert t[inside & ((line - np.floor(line)) > PRINT_INK + 0.01)].max() == 0.0  # between the lines
