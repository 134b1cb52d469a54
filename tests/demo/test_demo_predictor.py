"""hitts_demo: manifest validation, prediction, pseudo labels, raw encodings, point clouds, plots, records."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import trimesh
from fake_export import cached_fake_exports_root, make_fake_gallery_item
from PIL import Image

from hitts_demo import postprocess as pp
from hitts_demo import visualize as vis
from hitts_demo.downloads import SessionFiles, write_raw_zip
from hitts_demo.gallery import list_gallery, load_ground_truth
from hitts_demo.manifest import ExportError, read_onnx_opset
from hitts_demo.pointcloud import back_project, default_focal, write_glb, write_ply
from hitts_demo.predictor import Predictor, default_providers
from hitts_demo.records import as_percent, load_paper_tables, load_runs, log_keys
from hitts_demo.service import Studio
from hitts_demo.views.metrics import metrics_view
from hitts_demo.views.predictions import slider_choices, slider_image
from hitts_demo.views.pseudo import pseudo_view
from hitts_demo.views.tokens import tokens_view

H, W = 64, 96  # the fake export's input size


@pytest.fixture(scope="module")
def exports_root() -> Path:
    return cached_fake_exports_root(H, W)


@pytest.fixture(scope="module")
def predictor(exports_root) -> Predictor:
    return Predictor(exports_root / "hitts")


@pytest.fixture
def broken(exports_root, tmp_path) -> Path:
    """A writable copy of the hitts export, for breaking it in one way per test."""
    dst = tmp_path / "hitts"
    shutil.copytree(exports_root / "hitts", dst)
    return dst


def edit_manifest(folder: Path, change) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# --- manifest validation: one clear ExportError naming what is wrong ---------------------------------
def test_valid_export_loads(predictor):
    m = predictor.manifest
    assert m.task_names == ("semseg", "depth", "normals") and m.has_tokens
    assert predictor.providers == ["CPUExecutionProvider"]
    assert read_onnx_opset(m.onnx_path) == 18


def test_missing_folder_and_manifest(tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        Predictor(tmp_path / "nope")
    with pytest.raises(ExportError, match="no manifest.json"):
        Predictor(tmp_path)


def test_manifest_not_json(broken):
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(ExportError, match="not valid JSON"):
        Predictor(broken)


def test_missing_onnx_file(broken):
    (broken / "model.onnx").unlink()
    with pytest.raises(ExportError, match="'model.onnx' named by the manifest is missing"):
        Predictor(broken)


@pytest.mark.parametrize("keep", [0, 100, 0.5])
def test_truncated_onnx(broken, keep):
    path = broken / "model.onnx"
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(ExportError, match="empty|truncated"):
        Predictor(broken)


def _to_external_data(folder: Path) -> Path:
    """Re-save the export's model with its weights in ``model.onnx.data-0`` (ONNX external data)."""
    import onnx

    path = folder / "model.onnx"
    onnx.save_model(
        onnx.load(str(path)),
        str(path),
        save_as_external_data=True,
        location="model.onnx.data-0",
        size_threshold=1024,  # small (shape) tensors stay inline
    )
    return folder / "model.onnx.data-0"


def test_a_model_with_external_data_predicts_as_the_inline_one(broken, predictor):
    shard = _to_external_data(broken)
    assert shard.stat().st_size > (broken / "model.onnx").stat().st_size
    sharded = Predictor(broken)
    rgb = np.random.default_rng(3).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    assert sharded.checker_note is None
    for name, value in predictor.predict(rgb).outputs.items():
        np.testing.assert_array_equal(sharded.predict(rgb).outputs[name], value)


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_missing_or_truncated_weights_shard_is_reported(broken, damage):
    shard = _to_external_data(broken)
    if damage == "missing":
        shard.unlink()
    else:
        shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(ExportError, match=f"model.onnx.data-0 is {damage}.*copy every model.onnx.data"):
        Predictor(broken)


def test_not_an_onnx_file(broken):
    (broken / "model.onnx").write_bytes(b"\xff" * 1000)
    with pytest.raises(ExportError, match="not an ONNX model|truncated"):
        Predictor(broken)


def test_wrong_output_names(broken):
    def rename(d):
        d["outputs"]["semseg_probability"] = d["outputs"].pop("semseg_confidence")

    edit_manifest(broken, rename)
    with pytest.raises(ExportError) as err:
        Predictor(broken)
    text = str(err.value)
    assert "missing ['semseg_confidence']" in text and "semseg_probability" in text


def test_manifest_outputs_differ_from_the_model(broken):
    def drop(d):  # contract still satisfied by the manifest (tokens off) but the model has more outputs
        d["has_tokens"] = d["has_affinity"] = False
        for k in [
            k
            for k in d["outputs"]
            if k.endswith(("global_score", "fine_scores", "fine_tokens")) or k == "affinity"
        ]:
            del d["outputs"][k]

    edit_manifest(broken, drop)
    with pytest.raises(ExportError, match="outputs of the model not listed in the manifest"):
        Predictor(broken)


def test_wrong_shape(broken):
    edit_manifest(broken, lambda d: d["input"].update(height=32))
    with pytest.raises(ExportError, match="expected \\[1, 32, 96\\]"):
        Predictor(broken)


def test_task_mismatch(broken):
    edit_manifest(broken, lambda d: d.update(tasks=d["tasks"][:2]))
    with pytest.raises(ExportError, match="belongs to task 'normals', which is not in tasks"):
        Predictor(broken)


def test_bad_task_fields(broken):
    def spoil(d):
        d["tasks"][0]["kind"] = "panoptic"
        d["tasks"][1]["bin_centres"] = [1.0]
        d["format_version"] = 7

    edit_manifest(broken, spoil)
    with pytest.raises(ExportError) as err:
        Predictor(broken)
    text = str(err.value)
    assert (
        "unknown kind 'panoptic'" in text
        and "bin_centres must list 30" in text
        and "format_version is 7" in text
    )


def test_newer_opset(broken):
    import onnx  # tests only: hitts_demo reads the opset without onnx

    model = onnx.load(str(broken / "model.onnx"))
    model.opset_import[0].version = 99
    onnx.save(model, str(broken / "model.onnx"))
    edit_manifest(broken, lambda d: d.update(opset=99))
    with pytest.raises(ExportError, match="opset 99, newer than this onnxruntime"):
        Predictor(broken)


def test_opset_mismatch_between_manifest_and_file(broken):
    edit_manifest(broken, lambda d: d.update(opset=17))
    with pytest.raises(ExportError, match="manifest says opset 17.*declares opset 18"):
        Predictor(broken)


def test_studio_reports_broken_exports_and_serves_the_rest(exports_root, tmp_path):
    root = tmp_path / "exports"
    shutil.copytree(exports_root / "hitts", root / "hitts")
    shutil.copytree(exports_root / "mtl", root / "mtl")
    (root / "mtl" / "model.onnx").write_bytes(b"")
    studio = Studio(root, nyuv2_dir=None)
    studio.warm()
    assert studio.model_names == ["hitts"]
    assert "mtl" in studio.export_errors and "empty" in studio.export_errors["mtl"]
    assert "mtl not loaded" in studio.status_markdown()


def test_affinity_is_optional_and_symbolic_dims_are_any_size(exports_root):
    from hitts_demo.manifest import expected_outputs, parse_manifest

    raw = json.loads((exports_root / "hitts" / "manifest.json").read_text())
    raw["has_affinity"] = False
    del raw["outputs"]["affinity"]
    raw["outputs"]["semseg_fine_tokens"] = [13, "token_dim"]
    m = parse_manifest(raw, exports_root / "hitts")
    assert "affinity" not in expected_outputs(m) and m.outputs["semseg_fine_tokens"] == (13, None)


def test_the_real_exports_when_present():
    """Once the trainer's exports are in exports/ (the lead's step), the app serves them unchanged."""
    repo_exports = Path(__file__).resolve().parents[2] / "exports"
    if not (repo_exports / "hitts" / "manifest.json").is_file():
        pytest.skip("no real export in exports/hitts yet")
    studio = Studio(repo_exports, nyuv2_dir=None)
    studio.warm()
    assert "hitts" in studio.model_names, studio.export_errors
    analysis = studio.analyze(np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8))
    for choice in (choices := slider_choices(studio.manifests)):
        assert slider_image(analysis, choices, choice).shape == (120, 160, 3)
    assert "fp16" in studio.variants
    fp16 = studio.analyze(analysis.image, variant="fp16").predictions["hitts"]
    agree = (fp16.pred("semseg") == analysis.predictions["hitts"].pred("semseg")).mean()
    assert fp16.variant == "fp16" and agree > 0.95


def test_default_providers_fall_back_to_cpu(monkeypatch):
    import hitts_demo.predictor as predictor_module

    monkeypatch.setattr(predictor_module, "NVIDIA_DEVICE", Path("/nonexistent/nvidiactl"))
    assert default_providers() == ["CPUExecutionProvider"]


# --- prediction ----------------------------------------------------------------------------------
def test_prediction_shapes_at_the_original_size(predictor):
    rgb = np.random.default_rng(0).integers(0, 256, (77, 123, 3), dtype=np.uint8)
    pred = predictor.predict(rgb)
    assert pred.size == (123, 77)
    assert pred.pred("semseg").shape == (77, 123) and pred.pred("semseg").dtype == np.int64
    assert pred.pred("depth").shape == (77, 123) and pred.pred("depth").dtype == np.float32
    normals = pred.pred("normals")
    assert normals.shape == (77, 123, 3)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-4)
    for t in ("semseg", "depth", "normals"):
        assert pred.confidence(t).shape == (77, 123) and pred.label(t).shape == (77, 123)
        assert pred.global_score(t).shape == (77, 123)
        assert pred.fine_score(t, 0).shape == (77, 123)
        assert pred.fine_tokens(t).shape[0] == pred.manifest.task(t).num_outputs
    assert pred.affinity.shape == (3, 3)
    np.testing.assert_allclose(pred.affinity.sum(1), 1.0, atol=1e-5)
    depth = pred.pred("depth")
    bins = pred.manifest.task("depth").bin_centres
    assert depth.min() >= bins[0] - 1e-4 and depth.max() <= bins[-1] + 1e-4


def test_resized_maps_are_cached_within_a_byte_budget(predictor, monkeypatch):
    import hitts_demo.predictor as predictor_module

    pred = predictor.predict(np.zeros((100, 100, 3), np.uint8))
    assert pred.confidence("depth") is pred.confidence("depth")  # cached
    monkeypatch.setattr(predictor_module, "CACHE_BYTES", 100 * 100 * 4 * 2)  # two float32 maps
    for task in ("semseg", "depth", "normals"):
        pred.confidence(task)
        pred.global_score(task)
    assert sum(v.nbytes for v in pred._cache.values()) <= predictor_module.CACHE_BYTES
    assert ("global", "normals") in pred._cache  # the most recent stays


def test_model_input_is_normalised(predictor):
    x = predictor.to_input(np.full((10, 20, 3), 255, np.uint8))
    inp = predictor.manifest.input
    assert x.shape == (1, 3, H, W) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 0, 0], (1.0 - np.array(inp.mean)) / np.array(inp.std), rtol=1e-6)


def test_exif_rotated_upload_gives_outputs_aligned_with_the_upright_image(exports_root, tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(arr).save(path, exif=exif.tobytes(), quality=95)
    studio = Studio(exports_root, nyuv2_dir=None)
    analysis = studio.analyze(str(path))
    pred = analysis.predictions["hitts"]
    assert pred.image.shape == (40, 20, 3) and pred.image[2, 10, 0] > 200  # upright: red on top
    assert pred.pred("semseg").shape == (40, 20) and pred.pred("normals").shape == (40, 20, 3)


def test_mtl_export_has_no_tokens(exports_root):
    pred = Predictor(exports_root / "mtl").predict(np.zeros((8, 8, 3), np.uint8))
    assert pred.global_score("semseg") is None and pred.fine_score("semseg") is None and pred.affinity is None


# --- pseudo labels -------------------------------------------------------------------------------
def test_pseudo_mask_obeys_tau_exactly(predictor):
    pred = predictor.predict(np.random.default_rng(3).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    conf = pred.confidence("semseg")
    tau = float(np.median(conf))  # a value some pixels have exactly
    label, mask, coverage = pred.pseudo("semseg", tau)
    np.testing.assert_array_equal(mask, conf > tau)
    assert not mask[conf == tau].any()
    assert coverage == pytest.approx((conf > tau).mean())
    np.testing.assert_array_equal(label, pred.label("semseg"))
    assert pred.pseudo("semseg")[2] == pytest.approx((conf > pred.manifest.task("semseg").tau).mean())


def test_accuracy_coverage_by_hand():
    """4 valid pixels, confidences .2 .4 .6 .8, correct at .4 and .8; one pixel without ground truth.

    tau .5 keeps {.6, .8}: coverage 2/4, accuracy 1/2. tau .7 keeps {.8}: 1/4, 1/1. tau .8: nothing kept.
    """
    conf = np.array([0.2, 0.4, 0.6, 0.8, 0.99])
    label = np.array([1, 2, 3, 4, 5])
    gt = np.array([0, 2, 0, 4, pp.IGNORE_INDEX])
    acc, cov = pp.accuracy_coverage(label, conf, gt, np.array([0.0, 0.5, 0.7, 0.8]))
    np.testing.assert_allclose(cov, [1.0, 0.5, 0.25, 0.0])
    np.testing.assert_allclose(acc[:3], [0.5, 0.5, 1.0])
    assert np.isnan(acc[3])


def test_ground_truth_to_index(predictor):
    depth_task = predictor.manifest.task("depth")
    centres = np.array(depth_task.bin_centres)
    target = np.array([[centres[3], centres[3] * 1.001, 0.0]])
    np.testing.assert_array_equal(pp.target_to_index(depth_task, target), [[3, 3, pp.IGNORE_INDEX]])
    normal_task = predictor.manifest.task("normals")
    c5 = np.array(normal_task.normal_centres[5], np.float32)
    np.testing.assert_array_equal(
        pp.target_to_index(normal_task, np.stack([c5, np.zeros(3)])[None]), [[5, -1]]
    )
    seg = predictor.manifest.task("semseg")
    np.testing.assert_array_equal(pp.target_to_index(seg, np.array([0, 12, 13, -1])), [0, 12, -1, -1])


# --- raw encodings -------------------------------------------------------------------------------
def test_depth_png16_round_trip_in_millimetres(tmp_path):
    depth = np.array([[0.0, 0.0004, 0.0006, 1.2344], [9.9996, 65.535, 70.0, np.nan]], np.float32)
    mm = pp.depth_to_png16(depth)
    np.testing.assert_array_equal(mm, [[0, 0, 1, 1234], [10000, 65535, 65535, 0]])
    Image.fromarray(mm).save(tmp_path / "d.png")
    back = np.asarray(Image.open(tmp_path / "d.png"))
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, mm)
    smooth = np.linspace(0.5, 10.0, 1000, dtype=np.float32).reshape(20, 50)
    np.testing.assert_allclose(pp.png16_to_depth(pp.depth_to_png16(smooth)), smooth, atol=0.0005 + 1e-6)


def test_normals_png_round_trip():
    n = np.array([[[0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]], np.float32)
    back = pp.png_to_normals(pp.normals_to_png(n))
    np.testing.assert_allclose(back, n, atol=0.01)
    assert (pp.png_to_normals(np.full((1, 1, 3), 128, np.uint8)) == 0).all()  # grey = missing


def test_raw_zip_contents(exports_root, tmp_path):
    studio = Studio(exports_root, nyuv2_dir=None)
    analysis = studio.analyze(np.random.default_rng(4).integers(0, 256, (30, 40, 3), dtype=np.uint8))
    path = write_raw_zip(analysis.predictions, tmp_path / "out.zip")
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        assert {
            "README.txt",
            "input.png",
            "hitts/semseg_pred.png",
            "hitts/semseg_classes.json",
            "hitts/depth_mm.png",
            "hitts/depth_m.npy",
            "hitts/normals.npy",
            "hitts/semseg_confidence.npy",
            "hitts/outputs.npz",
            "mtl/depth_mm.png",
        } <= names
        assert "MILLIMETRES" in zf.read("README.txt").decode()
        depth_m = np.load(io.BytesIO(zf.read("hitts/depth_m.npy")))
        mm = np.asarray(Image.open(io.BytesIO(zf.read("hitts/depth_mm.png"))))
        assert mm.dtype == np.uint16 and mm.shape == (30, 40)
        np.testing.assert_array_equal(mm, pp.depth_to_png16(depth_m))
        seg = Image.open(io.BytesIO(zf.read("hitts/semseg_pred.png")))
        assert seg.mode == "P"
        np.testing.assert_array_equal(np.asarray(seg), analysis.predictions["hitts"].pred("semseg"))
        classes = json.loads(zf.read("hitts/semseg_classes.json"))
        assert classes["class_names"][0] == "bed" and len(classes["palette"]) == 13
        npz = np.load(io.BytesIO(zf.read("hitts/outputs.npz")))
        assert npz["affinity"].shape == (3, 3) and npz["normals_pred"].shape == (30, 40, 3)


def test_session_folders_are_private_and_swept(tmp_path):
    files = SessionFiles(tmp_path / "root", ttl_s=60)
    a = files.new_dir("../../etc")
    assert a.resolve().is_relative_to((tmp_path / "root").resolve()) and ".." not in a.name
    (a / "x.bin").write_bytes(b"1")
    assert files.sweep() == 0
    assert files.sweep(now=a.stat().st_mtime + 3600) == 1
    assert not a.exists()
    files.close()
    assert not (tmp_path / "root").exists()


# --- point clouds --------------------------------------------------------------------------------
def test_back_projection_by_hand():
    """4x4 image, f = 2 px, depth 2 m: pixel (u=1, v=2) has centre (1.5, 2.5), principal point (2, 2):
    X = (1.5 - 2) * 2 / 2 = -0.5, Y = (2.5 - 2) * 2 / 2 = 0.5."""
    depth = np.full((4, 4), 2.0, np.float32)
    depth[0, 0] = 0.0  # missing: skipped
    colours = np.zeros((4, 4, 3), np.uint8)
    cloud = back_project(depth, colours, 2.0)
    assert len(cloud) == 15
    idx = 2 * 4 + 1 - 1  # row-major order, minus the skipped pixel
    np.testing.assert_allclose(cloud.xyz[idx], [-0.5, 0.5, 2.0])
    assert default_focal(640) == pytest.approx(518.858) and default_focal(320) == pytest.approx(259.429)


def test_glb_and_ply_written_and_parseable(tmp_path):
    rng = np.random.default_rng(5)
    depth = rng.uniform(0.5, 5.0, (12, 16)).astype(np.float32)
    colours = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    labels = rng.integers(0, 13, (12, 16))
    cloud = back_project(depth, colours, 20.0, labels)
    scene = trimesh.load(write_glb(cloud, tmp_path / "p.glb"), file_type="glb", process=False)
    (points,) = scene.geometry.values()  # read by trimesh, an independent glTF parser
    assert isinstance(points, trimesh.PointCloud)
    np.testing.assert_allclose(points.vertices, cloud.xyz * np.array([1, -1, -1]), rtol=1e-6)
    np.testing.assert_array_equal(points.colors[:, :3], cloud.rgb)
    ply = trimesh.load(write_ply(cloud, tmp_path / "p.ply", "test"), process=False)
    np.testing.assert_allclose(ply.vertices, cloud.xyz, rtol=1e-6)
    raw = ply.metadata["_ply_raw"]["vertex"]["data"]
    np.testing.assert_array_equal(raw["label"], labels.ravel())
    np.testing.assert_array_equal(np.stack([raw["red"], raw["green"], raw["blue"]], -1), cloud.rgb)
    empty = back_project(np.zeros((4, 4), np.float32), colours[:4, :4], 10.0)
    (one,) = trimesh.load(
        write_glb(empty, tmp_path / "e.glb"), file_type="glb", process=False
    ).geometry.values()
    assert len(one.vertices) == 1


# --- pictures ------------------------------------------------------------------------------------
def test_colour_maps_and_panels(predictor):
    assert (
        vis.TURBO.shape == (256, 3)
        and tuple(vis.TURBO[0]) == (0x30, 0x12, 0x3B)
        and tuple(vis.TURBO[-1]) == (0x7A, 0x04, 0x02)
    )
    ramp = vis.apply_colormap(np.array([[0.0, 0.5, 1.0, np.nan]]), 0.0, 1.0)
    assert tuple(ramp[0, 0]) == tuple(vis.TURBO[0]) and tuple(ramp[0, 3]) == (0, 0, 0)
    pred = predictor.predict(np.full((40, 60, 3), 128, np.uint8))
    task = pred.manifest.task("semseg")
    overlay, panel = vis.segmentation_panel(pred.image, pred.pred("semseg"), task)
    assert overlay.shape == (40, 60, 3) and panel.shape[0] > 40 and panel.shape[1] >= 60
    bare, with_bar = vis.depth_panel(pred.pred("depth"))
    assert bare.shape == (40, 60, 3) and with_bar.shape[0] > 40
    one = vis.segmentation_panel(np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1), np.int64), task)
    assert one[0].shape == (1, 1, 3)
    kept = np.zeros((4, 4), bool)
    kept[0, 0] = True
    hatched = vis.hatch_rejected(np.full((4, 4, 3), 200, np.uint8), kept)
    assert tuple(hatched[0, 0]) == (200, 200, 200) and tuple(hatched[1, 1]) != (200, 200, 200)


def test_every_slider_view_matches_the_image_size(exports_root):
    studio = Studio(exports_root, nyuv2_dir=None)
    analysis = studio.analyze(np.zeros((33, 21, 3), np.uint8))
    choices = slider_choices(studio.manifests)
    assert "hitts · fine-token map semseg" in choices and "mtl · depth" in choices
    for choice in choices:
        assert slider_image(analysis, choices, choice).shape == (33, 21, 3), choice


# --- gallery, records, paper tables, plots -------------------------------------------------------
def test_synthetic_gallery_ground_truth(tmp_path):
    make_fake_gallery_item(tmp_path / "gallery", "room", height=12, width=16)
    (item,) = list_gallery(tmp_path / "gallery", None)
    gt = load_ground_truth(item)
    assert gt["semseg"].shape == (12, 16) and (gt["semseg"][:4] == pp.IGNORE_INDEX).all()
    assert gt["depth"][5, 0] == 0.0 and gt["depth"][0, 5] == pytest.approx(1.0)
    np.testing.assert_allclose(gt["normals"][0, 0], [0, 0, -1], atol=0.01)


def test_nyuv2_mini_ground_truth_mapping(nyuv2_mini_root):
    items = [i for i in list_gallery(None, nyuv2_mini_root) if i.source == "nyuv2-mini"]
    assert len(items) == 10 and items[0].name == "nyuv2-0001" and items[0].normals is None
    gt = load_ground_truth(items[0])
    raw = np.asarray(Image.open(items[0].semseg)).astype(int)
    np.testing.assert_array_equal(gt["semseg"], np.where(raw == 0, -1, raw - 1))
    assert gt["semseg"].max() <= 12 and gt["depth"].shape == (480, 640)
    assert 0.5 < np.median(gt["depth"][gt["depth"] > 0]) < 10.0


def test_gallery_item_drives_the_accuracy_curve(exports_root, nyuv2_mini_root):
    studio = Studio(exports_root, nyuv2_dir=nyuv2_mini_root)
    analysis = studio.analyze(None, "nyuv2-0001")
    assert set(analysis.ground_truth) == {"semseg", "depth"}
    out = pseudo_view(analysis, "hitts", {"semseg": 0.5})
    curve_tasks = {trace.name for trace in out.curve.data}
    assert {"semseg", "depth"} <= curve_tasks and "| semseg | 0.50 |" in out.markdown


def test_run_records_are_read_tolerantly(tmp_path):
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(
        json.dumps(
            {
                "hitts": {"semseg": {"miou": 0.3, "bad": "x", "unknown": 1.0}, "delta_mtl": 5.0},
                "mtl": "not a dict",
                "_meta": {"dataset": "nyud", "wall_time_s": {"stl": 3}},
            }
        )
    )
    (run / "log.jsonl").write_text(
        '{"epoch": 0, "split": "train", "total": 1.0}\n[1, 2]\n{oops\n\n{"epoch": 1, "L_s": 0.5}\n'
    )
    (tmp_path / "runs" / "empty").mkdir()
    (runs,) = load_runs(tmp_path / "runs")
    assert runs.metrics == {"hitts": {"semseg": {"miou": 0.3}, "delta_mtl": 5.0}}  # _meta is no method
    assert runs.meta["dataset"] == "nyud"
    assert len(runs.log) == 2 and "2 line(s) skipped" in runs.problems[0]
    assert log_keys([runs]) == ["total", "L_s"]  # the picker opens on the total loss
    assert as_percent("miou", 0.3) == pytest.approx(30.0) and as_percent("abs_err", 0.5) == 0.5


def test_paper_tables_match_the_method_notes():
    """Numbers restated in ../shared/docs/hitts-method.md, checked against our transcription."""
    t = load_paper_tables()
    assert {"table1", "table2", "table3", "table4", "table5", "table8"} <= set(t)
    for table in t.values():
        assert table["source"]["paper"].startswith("Multi-Task Label Discovery") and table["source"]["table"]
    ours1 = next(r for r in t["table1"]["rows"] if r["model"] == "Ours" and r["setting"] == "one-label")
    assert ours1["metrics"]["semseg"]["miou"] == 35.81 and ours1["metrics"]["depth"]["abs_err"] == 0.5540
    assert (
        ours1["metrics"]["normals"]["mean_angle"] == pytest.approx(28.51, abs=0.005)
        and ours1["delta_mtl"] == 13.23
    )
    ours_rand = next(
        r for r in t["table1"]["rows"] if r["model"] == "Ours" and r["setting"] == "random-labels"
    )
    assert (ours_rand["metrics"]["semseg"]["miou"], ours_rand["delta_mtl"]) == (41.78, 9.28)
    lf = t["table2"]["rows"][-1]
    assert (lf["metrics"]["semseg"]["miou"], lf["metrics"]["depth"]["abs_err"], lf["delta_mtl"]) == (
        45.47,
        0.4763,
        14.64,
    )
    city = t["table3"]["rows"][-1]
    assert (city["metrics"]["semseg"]["miou"], city["metrics"]["depth"]["abs_err"], city["delta_mtl"]) == (
        73.65,
        0.0135,
        3.45,
    )
    pascal = next(r for r in t["table4"]["rows"] if r["model"] == "Ours" and r["setting"] == "one-label")
    assert [
        pascal["metrics"][k][m]
        for k, m in [
            ("semseg", "miou"),
            ("human_parts", "miou"),
            ("normals", "mean_angle"),
            ("sal", "miou"),
            ("edge", "odsf"),
        ]
    ] == [56.3, 57.3, 15.4, 63.0, 68.5]
    deltas = {r["model"]: r["delta_mtl"] for r in t["table5"]["rows"]}
    assert (
        deltas["HiTTs"],
        deltas["HiTTs w. L_f"],
        deltas["HiTTs w. L_p"],
        deltas["HiTTs w. L_p + L_f"],
    ) == (6.51, 9.75, 11.57, 13.23)
    cost = {r["model"]: r for r in t["table8"]["rows"]}
    assert (cost["MTL baseline"]["params_m"], cost["Ours"]["flops_g"], cost["Ours"]["memory_g"]) == (
        25.06,
        83.14,
        21.19,
    )


def test_views_and_figures_render(exports_root):
    studio = Studio(exports_root, nyuv2_dir=None)
    a = studio.analyze(np.random.default_rng(6).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    a = studio.analyze(np.random.default_rng(7).integers(0, 256, (48, 64, 3), dtype=np.uint8), previous=a)
    tokens = tokens_view(a, "hitts", "depth", "bin 3: 0.71 m")
    assert tokens.fine is not None and len(a.token_history["hitts"]) == 2
    for fig in (tokens.affinity, tokens.self_affinity, tokens.pca):
        json.loads(fig.to_json())
    mtl = tokens_view(a, "mtl", "semseg", None)
    assert mtl.fine is None and mtl.global_maps["semseg"] is None and "no task tokens" in mtl.markdown
    metrics = metrics_view(studio.runs_dir, studio.paper_tables, None, "table8")
    assert metrics.key == "hitts/train/total" and metrics.keys[-1] == "hitts/lr"
    for fig in (metrics.runs, metrics.delta, metrics.delta_all, metrics.paper, metrics.curves):
        json.loads(fig.to_json())
    for table_key in studio.paper_tables:
        json.loads(metrics_view(studio.runs_dir, studio.paper_tables, "total", table_key).paper.to_json())
