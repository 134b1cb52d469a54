"""The synthetic NYUD-v2 generator: determinism, label ranges, geometric consistency between
labels, depth, normals and edges, the written layout, resuming, and that colour alone does not
give the class. Small images (72x96) keep the whole file fast."""

from __future__ import annotations

import ast
import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from trainer.data.synthetic import (
    GENERATOR_VERSION,
    KEYS,
    META_FILE,
    SPLIT_IDS,
    generate_scene,
    write_dataset,
)
from trainer.data.synthetic_layout import P_BOX, P_CYL, P_ROOM, sample_layout
from trainer.data.synthetic_render import MAX_RANGE, NEAR, cast, intrinsics, world_rays
from trainer.tasks import NYUD_CLASSES

H, W = 72, 96
NUM_SCENES = 20
FLOOR, WALL = NYUD_CLASSES.index("floor"), NYUD_CLASSES.index("wall")


@cache
def scene(index: int, split: str = "train", seed: int = 0, height: int = H, width: int = W) -> dict:
    return generate_scene(seed, split, index, height, width)


def rays(height: int, width: int) -> np.ndarray:
    """Camera-frame ray of every pixel (H, W, 3) with z = 1."""
    fx, fy, cx, cy = intrinsics(height, width)
    u = (np.arange(width) - cx) / fx
    v = (np.arange(height) - cy) / fy
    return np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((height, width))), axis=-1)


def test_generator_modules_do_not_import_torch():
    for path in (Path(__file__).resolve().parents[1] / "trainer" / "data").glob("synthetic*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "torch" for n in names), f"{path.name} imports torch"


def test_shapes_and_dtypes():
    s = scene(0)
    assert s["image"].shape == (H, W, 3) and s["image"].dtype == np.float32
    assert s["label"].shape == (H, W) and s["label"].dtype == np.int16
    assert s["depth"].shape == (H, W, 1) and s["depth"].dtype == np.float32
    assert s["depth_clean"].shape == (H, W, 1) and s["depth_clean"].dtype == np.float32
    assert s["normal"].shape == (H, W, 3) and s["normal"].dtype == np.float32
    assert s["edge"].shape == (H, W) and s["edge"].dtype == np.uint8
    assert 0.0 <= s["image"].min() and s["image"].max() <= 1.0


def _reference_cast(layout, height, width):
    """Brute force in float64: every primitive against every ray, no culling or batching."""
    p = layout.prims
    d = np.stack([a.astype(np.float64) for a in world_rays(layout, height, width)], axis=-1).reshape(-1, 3)
    best = np.full(len(d), np.inf)
    pid = np.full(len(d), -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        for i, ptype in enumerate(p.ptype):
            c, s = np.cos(p.yaw[i]), np.sin(p.yaw[i])
            rot = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])  # world -> local
            o, dl, half = rot @ (layout.cam_position - p.centre[i]), d @ rot.T, p.half[i]
            if ptype in (P_ROOM, P_BOX):
                t0, t1 = (-half - o) / dl, (half - o) / dl
                tnear, tfar = np.minimum(t0, t1).max(1), np.maximum(t0, t1).min(1)
                t = np.where((tnear <= tfar) & (tnear > NEAR), tnear, np.inf)
                if ptype == P_ROOM:  # exit face: floor z- 0, ceiling z+ 1, walls y- 2, x+ 3, y+ 4, x- 5
                    axis = np.maximum(t0, t1).argmin(1)
                    positive = dl[np.arange(len(dl)), axis] > 0
                    face = np.choose(
                        axis, [np.where(positive, 3, 5), np.where(positive, 4, 2), positive.astype(int)]
                    )
                    t = np.where(face == i, tfar, np.inf)
            elif ptype == P_CYL:
                a = dl[:, 0] ** 2 + dl[:, 1] ** 2
                b = o[0] * dl[:, 0] + o[1] * dl[:, 1]
                disc = b * b - a * (o[0] ** 2 + o[1] ** 2 - half[0] ** 2)
                side = (-b - np.sqrt(disc)) / a
                side = np.where(
                    (disc >= 0) & (np.abs(o[2] + side * dl[:, 2]) <= half[2]) & (side > NEAR), side, np.inf
                )
                caps = [(z - o[2]) / dl[:, 2] for z in (-half[2], half[2])]
                caps = [
                    np.where(((o[:2] + t[:, None] * dl[:, :2]) ** 2).sum(1) <= half[0] ** 2, t, np.inf)
                    for t in caps
                ]
                t = np.minimum(side, np.minimum(*[np.where(t > NEAR, t, np.inf) for t in caps]))
            else:
                a, b = (dl * dl).sum(1), dl @ o
                disc = b * b - a * (o @ o - half[0] ** 2)
                t = (-b - np.sqrt(disc)) / a
                t = np.where((disc >= 0) & (t > NEAR), t, np.inf)
            closer = t < best
            best[closer], pid[closer] = t[closer], i
    return best.reshape(height, width), pid.reshape(height, width)


def test_fast_caster_matches_brute_force_reference():
    for i in range(6):
        layout = sample_layout(np.random.default_rng([0, SPLIT_IDS["train"], i]))
        z, pid = cast(layout, world_rays(layout, H, W), H, W)
        z_ref, pid_ref = _reference_cast(layout, H, W)
        np.testing.assert_allclose(z, z_ref, rtol=1e-4)
        # primitives may differ only where two surfaces touch (books side by side): < 0.5 %
        assert (pid != pid_ref).mean() < 0.005, f"scene {i}: {np.count_nonzero(pid != pid_ref)} pixels differ"


def test_deterministic_by_seed_split_index():
    a, b = generate_scene(0, "train", 3, H, W), generate_scene(0, "train", 3, H, W)
    for key in ("image", "label", "depth", "normal", "edge"):
        np.testing.assert_array_equal(a[key], b[key])
    for other in (
        generate_scene(0, "train", 4, H, W),
        generate_scene(1, "train", 3, H, W),
        generate_scene(0, "test", 3, H, W),
    ):
        assert not np.array_equal(a["image"], other["image"])
    np.testing.assert_array_equal(
        generate_scene(0, "val", 3, H, W)["image"], generate_scene(0, "test", 3, H, W)["image"]
    )


def test_all_classes_appear_and_labels_in_range():
    seen = np.zeros(len(NYUD_CLASSES), int)
    for i in range(NUM_SCENES):
        label = scene(i)["label"]
        assert label.min() >= 0 and label.max() < len(NYUD_CLASSES)  # every pixel hits geometry
        seen += np.bincount(label.ravel(), minlength=len(NYUD_CLASSES)) > 0
    missing = [NYUD_CLASSES[c] for c in np.flatnonzero(seen == 0)]
    assert not missing, f"classes never seen in {NUM_SCENES} scenes: {missing}"


def test_depth_range_and_missing_pixels():
    missing = 0.0
    for i in range(NUM_SCENES):
        s = scene(i)
        d, clean = s["depth"][..., 0], s["depth_clean"][..., 0]
        assert np.all(d >= 0.0) and np.all(d <= 12.0)
        assert np.all(clean > 0.0)
        valid = d > 0
        assert np.all(clean[valid] <= MAX_RANGE)
        # sensor noise is small relative to depth where there is a measurement (sigma(5 m) ~ 4 cm)
        assert np.median(np.abs(d[valid] - clean[valid]) / clean[valid]) < 0.02
        missing += 1.0 - valid.mean()
    assert 0.0 < missing / NUM_SCENES < 0.5


def test_windows_glass_has_no_depth():
    # the window pane (glass) returns nothing; window frames do; over many scenes a window is seen
    window = NYUD_CLASSES.index("window")
    found = False
    for i in range(NUM_SCENES):
        s = scene(i)
        win = s["label"] == window
        if win.sum() > 50:
            found = True
            assert (s["depth"][..., 0][win] == 0).mean() > 0.3
    assert found


def test_normals_unit_and_facing_the_camera():
    for i in range(5):
        s = scene(i)
        n = s["normal"].astype(np.float64)
        np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1.0, atol=1e-4)
        assert np.all((n * rays(H, W)).sum(-1) < 0), "normals must face the camera (n . ray < 0)"


def test_floor_normals_point_up():
    checked = 0
    for i in range(10):
        s = scene(i)
        up = s["meta"]["up_camera"]
        np.testing.assert_allclose(np.linalg.norm(up), 1.0, atol=1e-9)
        # up is the world's +Z in the camera frame: R^T (0, 0, 1), with R the camera-to-world rotation
        np.testing.assert_allclose(up, s["meta"]["cam_to_world"][2], atol=1e-9)
        floor = s["label"] == FLOOR
        if floor.any():
            cos = s["normal"][floor].astype(np.float64) @ up
            assert np.degrees(np.arccos(np.clip(cos.min(), -1, 1))) < 0.5
            checked += 1
    assert checked >= 5


def _normals_from_depth(depth: np.ndarray, height: int, width: int) -> np.ndarray:
    """Normals (H-2, W-2, 3) of the interior pixels from central differences of back-projected
    depth, oriented towards the camera."""
    pts = rays(height, width) * depth[..., None].astype(np.float64)  # (H, W, 3) camera-frame points
    du = pts[1:-1, 2:] - pts[1:-1, :-2]
    dv = pts[2:, 1:-1] - pts[:-2, 1:-1]
    n = np.cross(du, dv)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    flip = (n * rays(height, width)[1:-1, 1:-1]).sum(-1) > 0
    n[flip] *= -1
    return n


@pytest.mark.parametrize("cls", [FLOOR, WALL])
def test_normals_agree_with_depth_on_planar_regions(cls):
    errors = []
    for i in range(8):
        s = scene(i, height=144, width=192)
        h, w = s["label"].shape
        n_depth = _normals_from_depth(s["depth_clean"][..., 0], h, w)
        # interior of a planar region: the pixel and its 4-neighbours are the same surface
        inst, lab = s["instance"], s["label"]
        same = (lab == cls) & (inst == 0)
        interior = same[1:-1, 1:-1] & same[:-2, 1:-1] & same[2:, 1:-1] & same[1:-1, :-2] & same[1:-1, 2:]
        if cls == WALL:  # two walls meeting at a corner are one class: keep away from corners too
            corner_free = s["normal"][1:-1, 1:-1]
            interior &= np.all(np.abs(corner_free - s["normal"][1:-1, 2:]) < 1e-3, axis=-1)
            interior &= np.all(np.abs(corner_free - s["normal"][1:-1, :-2]) < 1e-3, axis=-1)
        if interior.sum() < 50:
            continue
        cos = (n_depth[interior] * s["normal"][1:-1, 1:-1][interior]).sum(-1)
        errors.append(np.degrees(np.arccos(np.clip(cos, -1, 1))).mean())
    assert len(errors) >= 3
    assert max(errors) < 5.0, f"mean angle between depth-derived and given normals: {errors}"


def _edges_expected(label, inst, depth, rel=0.05):
    h, w = label.shape
    out = np.zeros((h, w), bool)
    for a, b in (
        ((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
        ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
    ):
        za, zb = depth[a], depth[b]
        diff = (label[a] != label[b]) | ((inst[a] != inst[b]) & (np.abs(za - zb) > rel * np.minimum(za, zb)))
        out[a] |= diff & (za <= zb)
        out[b] |= diff & (za > zb)
    return out


def test_edges_lie_exactly_where_labels_change():
    for i in range(5):
        s = scene(i)
        label, edge = s["label"], s["edge"].astype(bool)
        assert set(np.unique(s["edge"])) <= {0, 1}
        np.testing.assert_array_equal(edge, _edges_expected(label, s["instance"], s["depth_clean"][..., 0]))
        # every class change between 4-neighbours has an edge pixel on one side of it
        change_x = label[:, 1:] != label[:, :-1]
        change_y = label[1:] != label[:-1]
        assert np.all(edge[:, 1:][change_x] | edge[:, :-1][change_x])
        assert np.all(edge[1:][change_y] | edge[:-1][change_y])
        # and an edge pixel always has a neighbour of another class or instance
        ring = np.zeros_like(edge)
        for lab in (label, s["instance"]):
            ring[:, 1:] |= lab[:, 1:] != lab[:, :-1]
            ring[:, :-1] |= lab[:, 1:] != lab[:, :-1]
            ring[1:] |= lab[1:] != lab[:-1]
            ring[:-1] |= lab[1:] != lab[:-1]
        assert np.all(ring[edge])


def test_colour_alone_does_not_give_the_class():
    """Per-pixel nearest class-mean colour classifier, fit on train scenes, tested on test scenes."""

    def pixels(split, n):
        ss = [scene(i, split) for i in range(n)]
        return np.concatenate([s["image"].reshape(-1, 3) for s in ss]), np.concatenate(
            [s["label"].ravel() for s in ss]
        )

    x_fit, y_fit = pixels("train", NUM_SCENES)
    x_test, y_test = pixels("test", 10)
    means = np.stack(
        [
            x_fit[y_fit == c].mean(0) if (y_fit == c).any() else np.full(3, np.inf)
            for c in range(len(NYUD_CLASSES))
        ]
    )
    pred = np.argmin(((x_test[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    accuracy = (pred == y_test).mean()
    print(f"nearest class-mean colour pixel accuracy: {accuracy:.3f}")
    assert accuracy < 0.5


def _read_back(root: Path, split: str, index: int) -> dict[str, np.ndarray]:
    return {key: np.load(root / split / key / f"{index}.npy") for key in KEYS}


def test_write_dataset_layout(tmp_path):
    out = write_dataset(tmp_path / "syn", num_train=3, num_test=2, seed=5, height=H, width=W, progress=False)
    meta = json.loads((out / META_FILE).read_text())
    assert meta["complete"] and meta["generator_version"] == GENERATOR_VERSION
    assert meta["num_train"] == 3 and meta["num_test"] == 2 and meta["classes"] == list(NYUD_CLASSES)
    for split, n in (("train", 3), ("val", 2)):
        for key in KEYS:
            assert sorted(p.name for p in (out / split / key).iterdir()) == [f"{i}.npy" for i in range(n)]
    arrays = _read_back(out, "val", 1)
    expected = {
        "image": ((H, W, 3), np.float32),
        "label": ((H, W), np.float32),
        "depth": ((H, W, 1), np.float32),
        "normal": ((H, W, 3), np.float32),
        "edge": ((H, W), np.uint8),
    }
    for key, (shape, dtype) in expected.items():
        assert arrays[key].shape == shape and arrays[key].dtype == dtype, key
    s = generate_scene(5, "test", 1, H, W)
    np.testing.assert_array_equal(arrays["label"], s["label"].astype(np.float32))
    np.testing.assert_array_equal(arrays["image"], s["image"])


def test_killed_write_is_completed_by_rerun(tmp_path):
    out = tmp_path / "syn"
    write_dataset(out, num_train=3, num_test=1, seed=2, height=H, width=W, progress=False)
    reference = {i: _read_back(out, "train", i) for i in range(3)}
    # simulate a kill: one image lost two files, another left a stale temporary, json says incomplete
    (out / "train" / "depth" / "1.npy").unlink()
    (out / "train" / "edge" / "1.npy").unlink()
    (out / "train" / "normal" / ".2.npy.123.tmp").write_bytes(b"partial")
    meta = json.loads((out / META_FILE).read_text())
    (out / META_FILE).write_text(json.dumps({**meta, "complete": False}))
    untouched = (out / "train" / "image" / "0.npy").stat().st_mtime_ns
    write_dataset(out, num_train=3, num_test=1, seed=2, height=H, width=W, progress=False)
    assert json.loads((out / META_FILE).read_text())["complete"]
    assert not list(out.rglob("*.tmp"))
    assert (out / "train" / "image" / "0.npy").stat().st_mtime_ns == untouched  # complete images are skipped
    for i in range(3):
        for key, arr in _read_back(out, "train", i).items():
            np.testing.assert_array_equal(arr, reference[i][key])
    with pytest.raises(ValueError, match="other arguments"):
        write_dataset(out, num_train=3, num_test=1, seed=3, height=H, width=W, progress=False)


def test_write_dataset_with_workers_matches_serial(tmp_path):
    serial = write_dataset(tmp_path / "a", num_train=2, num_test=1, seed=1, height=H, width=W, progress=False)
    parallel = write_dataset(
        tmp_path / "b", num_train=2, num_test=1, seed=1, height=H, width=W, workers=2, progress=False
    )
    for split, n in (("train", 2), ("val", 1)):
        for i in range(n):
            a, b = _read_back(serial, split, i), _read_back(parallel, split, i)
            for key in KEYS:
                np.testing.assert_array_equal(a[key], b[key])
