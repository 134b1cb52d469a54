"""Joint augmentation: one test per geometry rule (docs/architecture.md, trainer/data/transforms.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures_data import block_labels, write_nyud_fixture

from trainer.config import PHOTOMETRIC, DataConfig, apply_overrides, preset_config
from trainer.data.layouts import resample, source_coords
from trainer.data.transforms import (
    IMAGE_MEAN,
    IMAGE_STD,
    JPEG_PROB,
    NOISE_PROB,
    PHOTOMETRIC_MODES,
    WB_PROB,
    AugmentParams,
    JointAugment,
    PhotometricParams,
    apply_photometric,
    interpolation_for,
    normal_flip_permutation,
    sample_photometric,
    to_tensor_sample,
)
from trainer.runs import dataset_for
from trainer.tasks import tasks_for

H, W = 32, 48
FEAT_H, FEAT_W = 8, 12  # a feature map 4x smaller than the image
NUM_CLASSES = 13


def _colour_of(labels: np.ndarray) -> np.ndarray:
    """(H, W) labels -> (3, H, W) image whose every channel is a function of the class."""
    value = (labels.astype(np.float32) + 2.0) / (NUM_CLASSES + 2)
    return np.stack([value, 1.0 - value, value * 0.5])


def _sample(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = block_labels(H, W, NUM_CLASSES)
    normals = rng.normal(size=(3, H, W)).astype(np.float32)
    normals /= np.linalg.norm(normals, axis=0, keepdims=True)
    return {
        "image": _colour_of(labels),
        "semseg": labels,
        "depth": rng.uniform(0.5, 10.0, size=(1, H, W)).astype(np.float32),
        "normals": normals,
        "pseudo/semseg": labels.copy(),
        "pseudo_mask/semseg": (labels % 2).astype(np.float32),
        "feature_target/semseg": rng.normal(size=(4, FEAT_H, FEAT_W)).astype(np.float32),
        "feature_mask/semseg": rng.random((FEAT_H, FEAT_W), dtype=np.float32),
    }


def test_interpolation_rules():
    assert interpolation_for("image") == "bilinear"
    assert interpolation_for("feature_target/depth") == "bilinear"
    assert interpolation_for("feature_mask/depth") == "bilinear"
    for key in ("semseg", "depth", "normals", "human_parts", "pseudo/depth", "pseudo_mask/depth"):
        assert interpolation_for(key) == "nearest"


def test_flip_mirrors_every_key_and_negates_normal_x():
    """s = 1 and a flip: every dense key is its mirror image exactly; normals' x changes sign."""
    sample = _sample()
    out = JointAugment(scales=(1.0,), flip_prob=1.0, color_jitter=0.0)(sample, np.random.default_rng(0))
    for key, value in sample.items():
        expected = value[..., ::-1]
        if key == "normals":
            expected = expected * np.array([-1.0, 1.0, 1.0], dtype=np.float32)[:, None, None]
        np.testing.assert_allclose(out[key], expected, atol=1e-5, err_msg=key)
    # a normal pointing right (+x) points left after the flip
    assert (out["normals"][0][:, ::-1] == -sample["normals"][0]).all()


def test_no_flip_no_zoom_is_identity():
    sample = _sample()
    out = JointAugment(scales=(1.0,), flip_prob=0.0, color_jitter=0.0)(sample, np.random.default_rng(0))
    for key, value in sample.items():
        np.testing.assert_allclose(out[key], value, atol=1e-6, err_msg=key)


def _uniform_footprint(labels: np.ndarray, params: AugmentParams) -> np.ndarray:
    """(H, W) True where the 2x2 source pixels a bilinear sample blends all carry one label."""
    ys = source_coords(H, H, params.top, 1.0 / params.scale)
    xs = source_coords(W, W, params.left, 1.0 / params.scale, params.flip)
    rows = [np.clip(np.floor(ys) + d, 0, H - 1).astype(int) for d in (0, 1)]
    cols = [np.clip(np.floor(xs) + d, 0, W - 1).astype(int) for d in (0, 1)]
    corners = [labels[r[:, None], c[None, :]] for r in rows for c in cols]
    return np.all([c == corners[0] for c in corners], axis=0)


@pytest.mark.parametrize("seed", range(4))
def test_labels_stay_aligned_with_image(seed):
    """The image encodes its label map's class: after a zoom + crop (+ flip) the bilinear image shows
    exactly the nearest-resampled label's colour wherever its bilinear footprint lies in one label."""
    sample = _sample()
    augment = JointAugment(scales=(1.5,), flip_prob=0.5, color_jitter=0.0)
    params = augment.sample_params(np.random.default_rng(seed))
    out = augment.apply(sample, params)
    labels = out["semseg"]
    inside = _uniform_footprint(sample["semseg"], params)
    assert inside.mean() > 0.6
    np.testing.assert_allclose(out["image"][:, inside], _colour_of(labels)[:, inside], atol=1e-5)
    np.testing.assert_array_equal(out["pseudo/semseg"], labels)  # pseudo labels move with the labels


@pytest.mark.parametrize("flip", [False, True])
def test_feature_map_of_another_resolution_stays_aligned(flip):
    """Linear ramps u (x) and v (y) in normalised coordinates, sampled at each map's own pixel
    centres. Bilinear resampling of a ramp is exact, so after the augmentation both the image and
    the 4x smaller feature map must equal the ramp of the *same* window at their pixel centres:
    value(j) = left + u_j / s with u_j = (j + 0.5) / n (1 - u_j when flipped)."""

    def ramps(h: int, w: int) -> np.ndarray:
        v, u = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
        return np.stack([u, v, u]).astype(np.float32)

    params = AugmentParams(scale=1.5, top=0.2, left=0.1, flip=flip)
    sample = {
        "image": ramps(H, W),
        "feature_target/depth": ramps(FEAT_H, FEAT_W)[:2],
        "feature_mask/depth": ramps(FEAT_H, FEAT_W)[0],
    }
    out = JointAugment(color_jitter=0.0).apply(sample, params)
    for key, (h, w) in (("image", (H, W)), ("feature_target/depth", (FEAT_H, FEAT_W))):
        u = (np.arange(w) + 0.5) / w
        u = 1.0 - u if flip else u
        v = (np.arange(h) + 0.5) / h
        np.testing.assert_allclose(
            out[key][0], np.broadcast_to(params.left + u / params.scale, (h, w)), atol=1e-5
        )
        np.testing.assert_allclose(
            out[key][1], np.broadcast_to((params.top + v / params.scale)[:, None], (h, w)), atol=1e-5
        )
    np.testing.assert_allclose(out["feature_mask/depth"], out["feature_target/depth"][0], atol=1e-6)


def test_ignore_stays_ignore_and_depth_is_not_rescaled():
    """Nearest resampling never invents values: every output label / depth / normal is an input
    value; ignore (-1) pixels remain and are never turned into classes; depth is not divided by s."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, NUM_CLASSES, size=(H, W))
    labels[rng.random((H, W)) < 0.3] = -1  # salt-and-pepper ignore: worst case for interpolation
    depth = rng.uniform(0.5, 10.0, size=(1, H, W)).astype(np.float32)
    depth[:, rng.random((H, W)) < 0.3] = 0.0
    sample = {"image": rng.random((3, H, W), dtype=np.float32), "semseg": labels, "depth": depth}
    augment = JointAugment(scales=(1.5,), flip_prob=0.5)
    for seed in range(5):
        params = augment.sample_params(np.random.default_rng(seed))
        out = augment.apply(sample, params)
        assert out["semseg"].dtype == labels.dtype
        assert set(np.unique(out["semseg"])) <= set(np.unique(labels))
        assert (out["semseg"] == -1).any()
        assert set(np.unique(out["depth"])) <= set(np.unique(depth))
        # -1 exactly where the resampled ignore mask is: no class leaks into ignore or back
        ignore = resample((labels == -1).astype(np.uint8), (H, W), "nearest", params.window, params.flip)
        np.testing.assert_array_equal(out["semseg"] == -1, ignore.astype(bool))


def test_nearest_source_pixel_matches_normalised_geometry():
    """Hand-derived: s = 2, window (top 0.5, left 0.25), 8x8: output column 0 samples
    u = 0.25 + (0.5 / 8) / 2 = 0.28125, i.e. pixel coordinate 0.28125 * 8 - 0.5 = 1.75 -> column 2;
    output row 0 samples v = 0.5 + 0.03125 = 0.53125, i.e. 0.53125 * 8 - 0.5 = 3.75 -> row 4."""
    assert source_coords(8, 8, 0.25, 0.5)[0] == pytest.approx(1.75)
    arr = np.arange(64).reshape(8, 8)
    out = resample(arr, (8, 8), "nearest", (0.5, 0.25, 0.5, 0.5))
    assert out[0, 0] == arr[4, 2]


def test_deterministic_given_rng_seed():
    sample = _sample()
    augment = JointAugment()
    a = augment(sample, np.random.default_rng(7))
    b = augment(sample, np.random.default_rng(7))
    for key in sample:
        np.testing.assert_array_equal(a[key], b[key])
    draws = {augment.sample_params(np.random.default_rng(s)) for s in range(10)}
    assert len(draws) > 1


def test_colour_jitter_touches_only_the_image():
    sample = _sample()
    augment = JointAugment(scales=(1.0,), flip_prob=0.0, color_jitter=0.4)
    out = augment.apply(sample, AugmentParams(brightness=1.3, contrast=0.7, saturation=1.2))
    assert not np.allclose(out["image"], sample["image"])
    assert out["image"].min() >= 0.0 and out["image"].max() <= 1.0
    for key in sample:
        if key != "image":
            np.testing.assert_array_equal(out[key], sample[key])


def test_flip_index_map_remaps_mirrored_classes():
    """pseudo/normals holds centre indices: with centres (+x, -x, +z) a flip swaps 0 and 1."""
    idx = np.array([[0, 1, 2, -1]])
    augment = JointAugment(
        scales=(1.0,),
        flip_prob=1.0,
        color_jitter=0.0,
        flip_index_maps={"pseudo/normals": np.array([1, 0, 2])},
    )
    out = augment({"image": np.zeros((3, 1, 4), np.float32), "pseudo/normals": idx}, np.random.default_rng(0))
    np.testing.assert_array_equal(out["pseudo/normals"], [[-1, 2, 0, 1]])


def test_normal_flip_permutation():
    centres = np.array(
        [[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.6, 0.8, 0.0], [-0.6, 0.8, 0.0]]
    )
    np.testing.assert_array_equal(normal_flip_permutation(centres), [1, 0, 2, 4, 3])


def test_non_dense_values_pass_through():
    out = JointAugment()(
        {"image": np.zeros((3, 4, 4), np.float32), "index": 3, "flag": True}, np.random.default_rng(0)
    )
    assert out["index"] == 3 and out["flag"] is True


def test_to_tensor_sample_normalises_and_types():
    image = np.broadcast_to(np.asarray(IMAGE_MEAN, np.float32)[:, None, None], (3, 2, 2)).copy()
    image[0, 0, 0] = IMAGE_MEAN[0] + IMAGE_STD[0]
    out = to_tensor_sample(
        {
            "image": image,
            "semseg": np.zeros((2, 2), np.int32),
            "pseudo_mask/semseg": np.ones((2, 2), np.uint8).astype(np.float16),
            "mask": np.ones(2, bool),
            "index": 1,
        }
    )
    assert out["image"].dtype == torch.float32
    assert out["image"][0, 0, 0].item() == pytest.approx(1.0, abs=1e-5)
    assert out["image"][:, 1, 1].abs().max().item() < 1e-6
    assert out["semseg"].dtype == torch.int64
    assert out["pseudo_mask/semseg"].dtype == torch.float32
    assert out["mask"].dtype == torch.bool
    assert out["index"] == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scales": (0.5,)},
        {"scales": ()},
        {"flip_prob": 1.5},
        {"color_jitter": 1.0},
        {"photometric": "strong"},
    ],
)
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        JointAugment(**kwargs)


# --------------------------------------------------------------------------- photometric "wide"

PHOTO_DRAWS = 400
SINGLE_OPS = {
    "gains": PhotometricParams(gains=(1.2, 1.0, 0.8)),
    "grey": PhotometricParams(grey=True),
    "gamma": PhotometricParams(gamma=1.4),
    "blur": PhotometricParams(blur_sigma=1.0),
    "noise": PhotometricParams(noise_std=0.02, shot_noise=0.02, noise_seed=3),
    "jpeg": PhotometricParams(jpeg_quality=30),
}


def _textured_image(seed: int = 0) -> np.ndarray:
    """(3, H, W) float32 in [0, 1] with colour, edges, texture and values at both ends."""
    rng = np.random.default_rng(seed)
    image = 0.6 * _colour_of(block_labels(H, W, NUM_CLASSES)) + 0.4 * rng.random((3, H, W))
    image[:, :2] = 0.0
    image[:, -2:] = 1.0
    return image.astype(np.float32)


def test_photometric_modes_match_the_config():
    assert PHOTOMETRIC == PHOTOMETRIC_MODES
    assert DataConfig().photometric == "basic"
    with pytest.raises(ValueError, match="photometric"):
        DataConfig(photometric="strong")
    cfg = apply_overrides(preset_config("smoke", "nyud", "one-label"), ["data.photometric=wide"])
    assert cfg.data.photometric == "wide"
    with pytest.raises(ValueError, match="photometric"):
        apply_overrides(preset_config("smoke", "nyud", "one-label"), ["data.photometric=strong"])


def test_runs_builds_the_configured_photometric_augment(tmp_path):

    root = write_nyud_fixture(tmp_path / "nyud")
    cfg = apply_overrides(preset_config("smoke", "nyud", "one-label"), ["data.photometric=wide"])
    data = dataset_for(cfg, root, "train", tasks_for("nyud"), augment=True)
    assert data.augment.photometric == "wide"
    assert dataset_for(cfg, root, "train", tasks_for("nyud")).augment is None


def test_basic_mode_draws_no_photometric_and_wide_draws_after_it():
    basic, wide = JointAugment(), JointAugment(photometric="wide")
    for seed in range(5):
        b = basic.sample_params(np.random.default_rng(seed))
        w = wide.sample_params(np.random.default_rng(seed))
        assert b.photometric is None and isinstance(w.photometric, PhotometricParams)
        # the geometry and colour jitter draws come first and are those of "basic"
        assert AugmentParams(**{**w.__dict__, "photometric": None}) == b


def test_wide_photometric_touches_only_the_image_and_stays_in_range():
    sample = {**_sample(), "image": _textured_image()}
    augment = JointAugment(scales=(1.0,), flip_prob=0.0, color_jitter=0.0, photometric="wide")
    changed = 0
    for seed in range(20):
        out = augment(sample, np.random.default_rng(seed))
        assert out["image"].dtype == np.float32 and out["image"].shape == sample["image"].shape
        assert out["image"].min() >= 0.0 and out["image"].max() <= 1.0
        changed += not np.allclose(out["image"], sample["image"], atol=1e-3)
        for key in sample:
            if key != "image":
                np.testing.assert_array_equal(out[key], sample[key])
    assert changed >= 18


def test_wide_photometric_is_deterministic_given_the_rng():
    sample = {**_sample(), "image": _textured_image()}
    augment = JointAugment(photometric="wide")
    for seed in range(5):
        a = augment(sample, np.random.default_rng(seed))
        b = augment(sample, np.random.default_rng(seed))
        for key in sample:
            np.testing.assert_array_equal(a[key], b[key])
    images = [augment(sample, np.random.default_rng(s))["image"] for s in range(3)]
    assert not np.array_equal(images[0], images[1]) and not np.array_equal(images[1], images[2])


@pytest.mark.parametrize("op", sorted(SINGLE_OPS))
def test_each_photometric_operation_changes_the_image_within_range(op):
    image = _textured_image()
    np.testing.assert_array_equal(apply_photometric(image, PhotometricParams()), image)
    out = apply_photometric(image, SINGLE_OPS[op])
    assert out.dtype == np.float32 and out.shape == image.shape
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.abs(out - image).mean() > 1e-3, op
    if op == "grey":
        np.testing.assert_array_equal(out[0], out[1])
    if op == "blur":  # smoother: smaller neighbour differences, same mean
        assert np.abs(np.diff(out, axis=2)).mean() < 0.7 * np.abs(np.diff(image, axis=2)).mean()
        assert out.mean() == pytest.approx(image.mean(), abs=1e-3)
    if op == "noise":  # deterministic for a fixed seed, another seed gives other noise
        np.testing.assert_array_equal(out, apply_photometric(image, SINGLE_OPS[op]))
        other = PhotometricParams(noise_std=0.02, shot_noise=0.02, noise_seed=4)
        assert not np.array_equal(out, apply_photometric(image, other))


def test_photometric_probabilities_follow_the_constants():
    rng = np.random.default_rng(0)
    draws = [sample_photometric(rng) for _ in range(PHOTO_DRAWS)]
    tol = 4 * np.sqrt(0.25 / PHOTO_DRAWS)
    assert np.mean([d.gains != (1.0, 1.0, 1.0) for d in draws]) == pytest.approx(WB_PROB, abs=tol)
    assert np.mean([d.jpeg_quality > 0 for d in draws]) == pytest.approx(JPEG_PROB, abs=tol)
    assert np.mean([d.noise_std > 0 for d in draws]) == pytest.approx(NOISE_PROB, abs=tol)
