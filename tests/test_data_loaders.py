"""Dataset readers: sample contract, partial labels never read, clear errors on bad data, real frames."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_data import (
    BLOCK,
    PASCAL_CLASSES,
    block_labels,
    pascal_fixture_size,
    pascal_ids,
    write_cityscapes_fixture,
    write_nyud_fixture,
    write_pascal_fixture,
)
from PIL import Image
from torch.utils.data import DataLoader

from trainer.data import build_dataset, dataset_class
from trainer.data.layouts import DatasetError
from trainer.data.normals_from_depth import backproject
from trainer.data.nyud import NYUDDataset, NYUv2MiniDataset
from trainer.data.nyuv2_mini import NYU_INTRINSICS, list_frames, load_frame, prepare_frame
from trainer.data.transforms import IMAGE_MEAN, IMAGE_STD, JointAugment
from trainer.tasks import TaskSpec, tasks_for

REPO = Path(__file__).resolve().parents[1]
NYUD = tasks_for("nyud")
CITYSCAPES = tasks_for("cityscapes")
PASCAL = tasks_for("pascal")
EDGE = TaskSpec("edge", "binary", 2, ("non-edge", "edge"))
H, W = 32, 48


def _denormalise(image: torch.Tensor) -> np.ndarray:
    mean = np.asarray(IMAGE_MEAN, np.float32)[:, None, None]
    std = np.asarray(IMAGE_STD, np.float32)[:, None, None]
    return image.numpy() * std + mean


@pytest.fixture
def nyud_root(tmp_path: Path) -> Path:
    return write_nyud_fixture(tmp_path / "nyud")


# --------------------------------------------------------------------------------------------------
# NYUD-v2 / synthetic (.npy layout)
# --------------------------------------------------------------------------------------------------


def test_nyud_sample_contract(nyud_root):
    ds = build_dataset("nyud", nyud_root, "train", NYUD)
    assert len(ds) == 4 and ds.size == (H, W)
    s = ds[1]
    assert set(s) == {"image", "semseg", "depth", "normals", "labelled", "index"}
    assert s["image"].shape == (3, H, W) and s["image"].dtype == torch.float32
    assert s["semseg"].shape == (H, W) and s["semseg"].dtype == torch.int64
    assert s["depth"].shape == (1, H, W) and s["depth"].dtype == torch.float32
    assert s["normals"].shape == (3, H, W) and s["normals"].dtype == torch.float32
    assert s["labelled"].dtype == torch.bool and s["labelled"].tolist() == [True, True, True]
    assert s["index"] == 1
    raw = {k: np.load(nyud_root / "train" / k / "1.npy") for k in ("image", "label", "depth", "normal")}
    np.testing.assert_allclose(_denormalise(s["image"]), raw["image"].transpose(2, 0, 1), atol=1e-5)
    np.testing.assert_array_equal(s["semseg"].numpy(), block_labels(H, W, 13, offset=1))
    np.testing.assert_array_equal(s["depth"][0].numpy(), raw["depth"])
    np.testing.assert_allclose(s["normals"].numpy(), raw["normal"].transpose(2, 0, 1), atol=1e-6)
    norm = s["normals"].norm(dim=0)
    assert torch.allclose(norm[BLOCK:], torch.ones_like(norm[BLOCK:]), atol=1e-5)
    assert (norm[:BLOCK, :BLOCK] == 0).all()  # missing normals stay the zero vector


def test_unlabelled_task_is_never_read(nyud_root):
    """Corrupt the files of the unlabelled tasks: loading still works and returns the ignore values."""
    (nyud_root / "train/depth/0.npy").write_bytes(b"garbage, not an array")
    (nyud_root / "train/normal/0.npy").write_bytes(b"garbage")
    (nyud_root / "train/label/1.npy").write_bytes(b"garbage")
    mask = np.array([[1, 0, 0], [0, 1, 1], [1, 1, 1], [1, 1, 1]], dtype=bool)
    ds = build_dataset("nyud", nyud_root, "train", NYUD, labelled_mask=mask)
    s0, s1 = ds[0], ds[1]
    assert s0["labelled"].tolist() == [True, False, False]
    assert (s0["depth"] == 0).all() and (s0["normals"] == 0).all()
    assert (s1["semseg"] == -1).all() and s1["labelled"].tolist() == [False, True, True]
    with pytest.raises(DatasetError, match=r"depth/0\.npy"):
        build_dataset("nyud", nyud_root, "train", NYUD)[0]  # labelled: the corrupt file is read


def test_resize_and_max_images(nyud_root):
    ds = build_dataset("synthetic", nyud_root, "train", NYUD, size=(16, 24), max_images=2)
    assert isinstance(ds, NYUDDataset) and len(ds) == 2
    s = ds[1]
    assert s["image"].shape == (3, 16, 24) and s["semseg"].shape == (16, 24)
    np.testing.assert_array_equal(s["semseg"].numpy(), block_labels(H, W, 13, offset=1)[1::2, 1::2])
    # a mask for the whole split or for the kept images is accepted; anything else is not
    build_dataset("nyud", nyud_root, "train", NYUD, max_images=2, labelled_mask=np.ones((4, 3), bool))
    build_dataset("nyud", nyud_root, "train", NYUD, max_images=2, labelled_mask=np.ones((2, 3), bool))
    with pytest.raises(DatasetError, match="labelled_mask"):
        build_dataset("nyud", nyud_root, "train", NYUD, labelled_mask=np.ones((3, 3), bool))


def test_edge_folder_only_read_for_an_edge_task(tmp_path):
    root = write_nyud_fixture(tmp_path / "syn", with_edge=True)
    (root / "train/edge/3.npy").unlink()  # a broken optional folder does not matter ...
    build_dataset("synthetic", root, "train", NYUD)[0]
    with pytest.raises(DatasetError, match="edge"):  # ... until an edge task is asked for
        build_dataset("synthetic", root, "train", (*NYUD, EDGE))
    root = write_nyud_fixture(tmp_path / "syn2", with_edge=True)
    s = build_dataset("synthetic", root, "val", (*NYUD, EDGE))[0]
    assert s["edge"].dtype == torch.int64 and set(s["edge"].unique().tolist()) == {0, 1}


def _break(root: Path, case: str) -> str:
    """Damage the fixture at ``root``; return a regex the error message must match."""
    if case == "wrong_root":
        shutil.rmtree(root)
        return "nyud"
    if case == "missing_folder":
        shutil.rmtree(root / "train/normal")
        return r"train/normal"
    if case == "count_mismatch":
        (root / "train/depth/3.npy").unlink()
        return r"mismatched file counts.*depth"
    if case == "numbering_gap":
        (root / "train/depth/1.npy").rename(root / "train/depth/7.npy")
        return r"depth.*missing 1\.npy"
    if case == "image_shape":
        np.save(root / "train/image/0.npy", np.zeros((H, W), np.float32))
        return r"image/0\.npy.*expected \(H, W, 3\)"
    if case == "image_size_differs":
        np.save(root / "train/image/2.npy", np.zeros((H + 1, W, 3), np.float32))
        return r"image/2\.npy.*size"
    if case == "label_shape":
        np.save(root / "train/label/2.npy", np.zeros((H, W - 1), np.float32))
        return r"label/2\.npy.*size"
    if case == "label_out_of_range":
        labels = np.load(root / "train/label/2.npy")
        labels[5, 5] = 13
        np.save(root / "train/label/2.npy", labels)
        return r"label/2\.npy.*\[13\] out of range"
    if case == "nan_image":
        image = np.load(root / "train/image/2.npy")
        image[0, 0, 0] = np.nan
        np.save(root / "train/image/2.npy", image)
        return r"image/2\.npy.*NaN"
    if case == "image_range":
        np.save(root / "train/image/2.npy", np.full((H, W, 3), 200.0, np.float32))
        return r"image/2\.npy.*\[0, 1\]"
    if case == "negative_depth":
        np.save(root / "train/depth/2.npy", -np.ones((H, W), np.float32))
        return r"depth/2\.npy.*negative"
    raise AssertionError(case)


CONSTRUCTION_CASES = ["wrong_root", "missing_folder", "count_mismatch", "numbering_gap", "image_shape"]
LOAD_CASES = [
    "image_size_differs",
    "label_shape",
    "label_out_of_range",
    "nan_image",
    "image_range",
    "negative_depth",
]


@pytest.mark.parametrize("case", CONSTRUCTION_CASES + LOAD_CASES)
def test_bad_input_raises_one_clear_error(nyud_root, case):
    pattern = _break(nyud_root, case)
    with pytest.raises(DatasetError, match=pattern):
        ds = build_dataset("nyud", nyud_root, "train", NYUD)
        assert case in LOAD_CASES, "folder / count problems must fail at construction"
        for i in range(len(ds)):
            ds[i]


def test_unknown_split_task_and_dataset(nyud_root):
    with pytest.raises(DatasetError, match="split"):
        build_dataset("nyud", nyud_root, "test", NYUD)
    with pytest.raises(ValueError, match="human_parts"):
        build_dataset("nyud", nyud_root, "train", PASCAL[:2])
    with pytest.raises(ValueError, match="unknown dataset"):
        dataset_class("kitti")


# --------------------------------------------------------------------------------------------------
# Stage-2 extras, augmentation through the dataset, batching
# --------------------------------------------------------------------------------------------------


class _Extras:
    """Discovery stand-in: pseudo labels = the true labels, feature maps at 1/4 resolution."""

    def __init__(self, root: Path):
        self.root = root

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        labels = np.load(self.root / "train/label" / f"{index}.npy").astype(np.int64)
        return {
            "pseudo/semseg": labels,
            "pseudo_mask/semseg": (labels >= 0).astype(np.float32),
            "feature_target/semseg": np.ones((4, H // 4, W // 4), np.float32),
            "feature_mask/semseg": np.ones((H // 4, W // 4), np.float32),
        }


def test_extras_get_the_same_geometry_and_batch(nyud_root):
    mask = np.zeros((4, 3), bool)
    mask[:, 0] = True
    ds = build_dataset(
        "nyud",
        nyud_root,
        "train",
        NYUD,
        labelled_mask=mask,
        augment=JointAugment(),
        extra_targets=_Extras(nyud_root),
        seed=5,
    )
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, H, W) and batch["labelled"].shape == (4, 3)
    assert batch["feature_target/semseg"].shape == (4, 4, H // 4, W // 4)
    assert batch["pseudo/semseg"].dtype == torch.int64
    assert torch.equal(batch["pseudo/semseg"], batch["semseg"])  # moved together with the labels
    assert batch["index"].tolist() == [0, 1, 2, 3]


def test_augmentation_is_a_function_of_seed_epoch_and_index(nyud_root):
    ds = build_dataset("nyud", nyud_root, "train", NYUD, augment=JointAugment(), seed=1)
    first = [ds[i]["image"] for i in range(4)]
    assert all(torch.equal(a, ds[i]["image"]) for i, a in enumerate(first))
    ds.set_epoch(1)
    assert any(not torch.equal(a, ds[i]["image"]) for i, a in enumerate(first))
    ds.set_epoch(0)
    assert torch.equal(first[2], ds[2]["image"])


def test_fill_cache_reads_each_sample_once_and_workers_never_read_again(nyud_root, monkeypatch):
    plain = build_dataset("nyud", nyud_root, "train", NYUD)
    ds = build_dataset("nyud", nyud_root, "train", NYUD).cache_in_memory()
    with pytest.raises(RuntimeError, match="cache_in_memory"):
        build_dataset("nyud", nyud_root, "train", NYUD).fill_cache()
    assert ds.fill_cache([1, 3], threads=2) == 2 and ds.fill_cache([1, 3]) == 0  # cached ones are skipped
    assert ds.fill_cache() == 2  # the other two
    keys = ("image", "semseg", "depth", "normals")
    expected = [{k: plain[i][k] for k in keys} for i in range(4)]
    reads = []
    monkeypatch.setattr(type(ds), "load_numpy", lambda self, i: reads.append(i))
    for i in range(4):  # identical to an uncached read, and nothing is read from disk again
        assert all(torch.equal(ds[i][k], expected[i][k]) for k in keys)
    assert reads == []


def test_extra_targets_are_checked(nyud_root):
    ds = build_dataset("nyud", nyud_root, "train", NYUD, extra_targets=lambda i: {"semseg": np.zeros((H, W))})
    with pytest.raises(ValueError, match="overwrite"):
        ds[0]
    ds = build_dataset(
        "nyud", nyud_root, "train", NYUD, extra_targets=lambda i: {"pseudo/depth": np.zeros((4, 4))}
    )
    with pytest.raises(ValueError, match="pseudo/depth"):
        ds[0]


# --------------------------------------------------------------------------------------------------
# Cityscapes
# --------------------------------------------------------------------------------------------------


def test_cityscapes_sample_and_label7_folder(tmp_path):
    root = write_cityscapes_fixture(tmp_path / "cs")
    (root / "val/label").rename(root / "val/label_7")  # MTAN's folder name
    ds = build_dataset("cityscapes", root, "val", CITYSCAPES)
    s = ds[2]
    assert s["image"].shape == (3, 16, 32) and s["depth"].shape == (1, 16, 32)
    np.testing.assert_array_equal(s["semseg"].numpy(), block_labels(16, 32, 7, offset=2))
    np.testing.assert_array_equal(s["depth"].numpy(), np.load(root / "val/depth/2.npy").transpose(2, 0, 1))
    assert s["labelled"].shape == (2,)


# --------------------------------------------------------------------------------------------------
# PASCAL-Context
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def pascal_root(tmp_path: Path) -> Path:
    return write_pascal_fixture(tmp_path / "pascal")


def test_pascal_targets_at_native_size(pascal_root):
    """Image 0 is 40x56, so size=(40, 56) reads it without resizing: exact hand-derived targets."""
    ds = build_dataset("pascal", pascal_root, "train", PASCAL, size=(40, 56))
    s = ds[0]
    assert s["image"].shape == (3, 40, 56)
    np.testing.assert_array_equal(s["semseg"].numpy(), block_labels(40, 56, PASCAL_CLASSES, ignore=-1))
    parts = np.zeros((40, 56), np.int64)
    parts[0:8, :28], parts[8:16, :28], parts[16:24, :28] = 1, 2, 4  # head, torso, lhand -> lower arm
    np.testing.assert_array_equal(s["human_parts"].numpy(), parts)  # the dog's parts are not painted
    sal = np.zeros((40, 56), np.int64)
    sal[:, :28] = 1
    np.testing.assert_array_equal(s["sal"].numpy(), sal)
    edge = np.zeros((40, 56), np.int64)
    edge[:, BLOCK - 1 : -1 : BLOCK] = 1  # LabelMap changes every 8 columns
    np.testing.assert_array_equal(s["edge"].numpy(), edge)
    norm = s["normals"].norm(dim=0)
    assert (norm[:BLOCK, :BLOCK] == 0).all()  # written as the zero vector -> grey 128 -> missing
    norm[:BLOCK, :BLOCK] = 1.0
    assert torch.allclose(norm, torch.ones_like(norm), atol=1e-5)
    assert (s["normals"][2][BLOCK:] < 0).all()  # written facing the camera


def test_pascal_any_image_size_is_resized(pascal_root):
    ds = build_dataset("pascal", pascal_root, "train", PASCAL)
    assert ds.size == (512, 512)
    assert pascal_fixture_size(1, 40, 56) != pascal_fixture_size(0, 40, 56)
    ds = build_dataset("pascal", pascal_root, "train", PASCAL, size=(24, 32))
    for i in range(len(ds)):
        s = ds[i]
        assert s["image"].shape == (3, 24, 32)
        assert all(s[t.name].shape[-2:] == (24, 32) for t in PASCAL)
    assert (ds[1]["human_parts"] == -1).all()  # no person annotated: all ignore


def test_pascal_normals_valid_classes(pascal_root):
    ds = build_dataset("pascal", pascal_root, "train", PASCAL[2:3], size=(40, 56), normals_valid_classes=[1])
    n = ds[0]["normals"]
    assert (n[:, BLOCK:, :BLOCK].norm(dim=0) > 0.99).all()  # LabelMap class 1 = the first 8 columns
    assert (n[:, :, BLOCK:] == 0).all()


def test_pascal_unlabelled_task_is_never_read(pascal_root):
    image_id = pascal_ids(1)[0]
    (pascal_root / "human_parts" / f"{image_id}.mat").write_bytes(b"not matlab")
    mask = np.ones((3, 5), bool)
    mask[0, 1] = False
    s = build_dataset("pascal", pascal_root, "train", PASCAL, labelled_mask=mask, size=(24, 32))[0]
    assert (s["human_parts"] == -1).all()
    with pytest.raises(DatasetError, match=f"{image_id}.mat"):
        build_dataset("pascal", pascal_root, "train", PASCAL, size=(24, 32))[0]


def test_pascal_bad_inputs(pascal_root):
    ids = pascal_ids(5)
    seg_path = pascal_root / "semseg/pascal-context" / f"{ids[1]}.png"
    seg = np.array(Image.open(seg_path))
    seg[3, 3] = 30
    Image.fromarray(seg).save(seg_path)
    ds = build_dataset("pascal", pascal_root, "train", PASCAL[:1], size=(24, 32))
    with pytest.raises(DatasetError, match=rf"{ids[1]}\.png.*\[30\] out of range"):
        ds[1]
    (pascal_root / "sal_distill" / f"{ids[4]}.png").unlink()
    build_dataset("pascal", pascal_root, "train", PASCAL[:3])  # sal not requested: not needed
    with pytest.raises(DatasetError, match=rf"sal.*missing.*{ids[4]}\.png"):
        build_dataset("pascal", pascal_root, "val", PASCAL)
    (pascal_root / "ImageSets/Context/val.txt").unlink()
    with pytest.raises(DatasetError, match=r"Context/val\.txt"):
        build_dataset("pascal", pascal_root, "val", PASCAL[:1])


def test_pascal_unknown_human_part_fails(pascal_root):
    from scipy.io import loadmat, savemat

    path = pascal_root / "human_parts" / f"{pascal_ids(1)[0]}.mat"
    mat = loadmat(path)
    mat["anno"][0, 0]["objects"][0, 0]["parts"][0, 0]["part_name"] = np.array(["tail"])
    savemat(path, {"anno": mat["anno"]})
    with pytest.raises(DatasetError, match="unknown human part 'tail'"):
        build_dataset("pascal", pascal_root, "train", PASCAL[1:2], size=(24, 32))[0]


# --------------------------------------------------------------------------------------------------
# nyuv2-mini (the ten real frames)
# --------------------------------------------------------------------------------------------------


def test_nyuv2_mini_frames(nyuv2_mini_root):
    ids = list_frames(nyuv2_mini_root)
    assert ids == ["0001", "0002", "0009", "0014", "0015", "0016", "0017", "0018", "0021", "0028"]
    frame = load_frame(nyuv2_mini_root, ids[0])
    assert frame["rgb"].shape == (480, 640, 3) and frame["rgb"].dtype == np.uint8
    assert frame["depth"].dtype == np.float32 and frame["semseg"].dtype == np.int64
    assert frame["semseg"].min() >= -1 and frame["semseg"].max() <= 12 and (frame["semseg"] == -1).any()


def test_nyuv2_mini_dataset(nyuv2_mini_root):
    ds = build_dataset("nyuv2-mini", nyuv2_mini_root, "val", NYUD)
    assert isinstance(ds, NYUv2MiniDataset) and ds.normals_are_derived and len(ds) == 10
    for i in (0, 4):
        s = ds[i]
        assert s["normals_derived"] is True
        assert s["image"].shape == (3, 288, 384)
        assert s["semseg"].min() >= -1 and s["semseg"].max() <= 12
        depth = s["depth"][s["depth"] > 0]
        assert depth.numel() > 0.9 * 288 * 384
        assert depth.min() >= 0.5 and depth.max() <= 10.0
        norm = s["normals"].norm(dim=0)
        assert torch.allclose(norm, torch.ones_like(norm), atol=1e-4)
        z = s["normals"][2]
        assert (z < 0).float().mean() > 0.6 and z.median() < 0  # mostly facing the camera


def test_nyuv2_mini_normals_face_the_camera(nyuv2_mini_root):
    """Convention: x right, y down, z forward; n . P <= 0 for the back-projected point P."""
    prepared = prepare_frame(load_frame(nyuv2_mini_root, "0001", ("depth",)))
    points = backproject(prepared["depth"][0], NYU_INTRINSICS.resized(288, 384))
    assert ((prepared["normals"] * points).sum(0) <= 1e-9).all()
    assert "image" not in prepared and "semseg" not in prepared


def test_nyuv2_mini_reader_imports_neither_torch_nor_scipy():
    code = (
        "import sys, trainer.data, trainer.data.nyuv2_mini, trainer.data.layouts; "
        "bad = [m for m in ('torch', 'scipy') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_pipeline_fills_the_cache_of_the_trained_scenes_only_with_loader_workers(nyud_root):
    from trainer.config import DataConfig, RunConfig
    from trainer.pipeline import _fill_cache
    from trainer.runs import TrainSubset

    for workers, expected in ((0, set()), (2, {0, 2})):
        ds = build_dataset("nyud", nyud_root, "train", NYUD).cache_in_memory()
        _fill_cache(RunConfig(data=DataConfig(num_workers=workers)), TrainSubset(ds, [0, 2]))
        assert set(ds._cache) == expected  # held-out scenes (1, 3) are never decoded for training
