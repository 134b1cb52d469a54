"""The real app in a subprocess (fake exports), driven with gradio_client and plain HTTP."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from fake_export import cached_fake_exports_root
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60
UPLOAD_CAP_MB = 2
SLIDER_LEFT, SLIDER_RIGHT = "input", "hitts · depth"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.time() + START_TIMEOUT_S
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    raise RuntimeError(f"app did not start in {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def start_app(tmp_dir: Path, extra: list[str] | None = None) -> tuple[subprocess.Popen, str]:
    """``python app.py`` on a free port with the fake exports; returns (process, base URL)."""
    exports = cached_fake_exports_root()
    port = free_port()
    log = tmp_dir / "app.log"
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    cmd = [
        sys.executable,
        "app.py",
        "--exports",
        str(exports),
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        *(extra or []),
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_up(url, proc, log)
    except Exception:
        proc.kill()
        raise
    return proc, url


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app")
    proc, url = start_app(tmp, ["--max-upload-mb", str(UPLOAD_CAP_MB)])
    yield url, tmp
    stop_app(proc)


@pytest.fixture(scope="module")
def client(server) -> Client:
    return Client(server[0], verbose=False)


@pytest.fixture(scope="module")
def frame(server) -> Path:
    """A 640x480 photo-like frame (a real nyuv2-mini frame when present)."""
    real = REPO.parent / "shared" / "data" / "nyuv2-mini" / "rgb_0001.png"
    if real.is_file():
        return real
    path = server[1] / "frame.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(path)
    return path


def save(tmp: Path, name: str, im: Image.Image, **kwargs) -> Path:
    path = tmp / name
    im.save(path, **kwargs)
    return path


def assert_alive(client: Client, frame: Path) -> None:
    files = client.predict(handle_file(str(frame)), "mtl", api_name="/predict")
    assert Path(files[0]).is_file()


def test_documented_endpoints(client):
    api = client.view_api(print_info=False, return_format="dict")
    assert set(api["named_endpoints"]) == {"/predict", "/inspect", "/predict_batch"}
    params = {k: [p["parameter_name"] for p in v["parameters"]] for k, v in api["named_endpoints"].items()}
    assert params == {
        "/predict": ["image", "model"],
        "/inspect": ["image", "model", "x", "y"],
        "/predict_batch": ["images", "model"],
    }


def test_predict_endpoint_one_file_per_task(client, frame):
    semseg, depth, normals, info = client.predict(handle_file(str(frame)), "hitts", api_name="/predict")
    labels = Image.open(semseg)
    assert labels.mode == "P" and labels.size == (640, 480)
    assert np.asarray(labels).max() < 13
    depth_mm = np.asarray(Image.open(depth))
    assert depth_mm.dtype == np.uint16 and depth_mm.shape == (480, 640) and depth_mm.max() > 0
    assert Image.open(normals).mode == "RGB"
    assert info["model"] == "hitts" and info["tasks"]["depth"]["encoding"].startswith(
        "16-bit PNG, depth in millimetres"
    )
    assert info["tasks"]["semseg"]["class_names"][0] == "bed"


def test_every_view_from_one_session(client, frame):
    status, slider, *panels = client.predict(
        handle_file(str(frame)), None, SLIDER_LEFT, SLIDER_RIGHT, "fp32", api_name="/analyze"
    )
    assert "640x480" in status and "hitts** (fp32)" in status and "mtl" in status
    left, right = slider
    assert Image.open(left).size == Image.open(right).size == (640, 480)
    assert len(panels) == 6 and all(Path(p).is_file() for p in panels)  # 2 models x 3 tasks
    tokens = client.predict("hitts", "semseg", "chair", api_name="/render_tokens")
    conf, glob, fine = tokens[0:3], tokens[3:6], tokens[6]
    assert all(Path(p).is_file() for p in [*conf, *glob, fine])
    assert "class 'chair'" in tokens[-1]
    *pseudo, md, curve = client.predict("hitts", 0.5, 0.45, 0.6, api_name="/render_pseudo")
    assert len(pseudo) == 3 and "| semseg | 0.50 |" in md and "No ground truth" in md
    angle, edges, table, md_c = client.predict("hitts", 0, api_name="/render_consistency")
    assert Path(angle).is_file() and "median angle" in md_c and table["headers"][0] == "class"
    glb, ply, md3 = client.predict("hitts", 0, "rgb", 0.0, api_name="/render_3d")  # the "Rebuild" button
    assert Path(glb).read_bytes()[:4] == b"glTF" and Path(ply).read_bytes()[:3] == b"ply"
    assert "focal length 518.9 px" in md3
    zipped = client.predict(api_name="/download_zip")
    assert Path(zipped).stat().st_size > 10_000


def test_gallery_item_with_ground_truth(client):
    status, *_ = client.predict(None, "synthetic_000", SLIDER_LEFT, SLIDER_RIGHT, "fp16", api_name="/analyze")
    assert "hitts** (fp16)" in status and "mtl** (fp32)" in status  # mtl has no fp16 export
    assert "synthetic_000" in status
    *_, md, curve = client.predict("hitts", 0.9, 0.45, 0.6, api_name="/render_pseudo")
    assert "Ground truth: synthetic_000" in md
    assert "n/a |" not in md.split("| semseg |")[1].split("\n")[0]  # accuracy against ground truth shown


def test_metrics_view(client):
    runs, delta, table, delta_all, paper, curves, picker, md = client.predict(
        "total", "table5", api_name="/render_metrics"
    )
    assert "1 run record(s)" in md and "Table 5" in md and "skipped" in md.lower()
    assert picker["value"] == "hitts/train/total"  # an unknown key: the picker opens on the total loss
    assert "paper's set" in md and table["headers"][2] == "Delta_MTL % (paper metric set)"


def test_inspect_endpoint(client, frame):
    out = client.predict(handle_file(str(frame)), "hitts", 320, 240, api_name="/inspect")
    assert out["x"] == 320 and out["y"] == 240 and set(out["tasks"]) == {"semseg", "depth", "normals"}
    depth = out["tasks"]["depth"]
    assert depth["unit"] == "m" and 0 < depth["confidence"] <= 1 and len(depth["fine_token_scores"]) == 30
    with pytest.raises(AppError, match="outside the 640x480 image"):
        client.predict(handle_file(str(frame)), "hitts", 640, 0, api_name="/inspect")


def test_predict_batch_endpoint(client, frame, server):
    small = save(server[1], "small.png", Image.new("RGB", (40, 30), (10, 200, 30)))
    zipped, table, md = client.predict(
        [handle_file(str(frame)), handle_file(str(small))], "mtl", api_name="/predict_batch"
    )
    with zipfile.ZipFile(zipped) as zf:
        names = zf.namelist()
    assert "summary.csv" in names and any(n.endswith("/mtl/depth_mm.png") for n in names)
    assert len(table["data"]) == 2 and "2 of 2" in md
    with pytest.raises(AppError, match="at most 32"):
        client.predict([handle_file(str(small))] * 33, "mtl", api_name="/predict_batch")


def test_views_before_any_image_say_so(server):
    fresh = Client(server[0], verbose=False)
    with pytest.raises(AppError, match="upload an image or pick a gallery item first"):
        fresh.predict("hitts", "semseg", None, api_name="/render_tokens")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.png", b"this is text, not a picture\n" * 50, "not an image"),
        (
            "random.jpg",
            np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
            "not an image",
        ),
        ("empty.png", b"", "empty"),
    ],
)
def test_bad_uploads_give_a_clear_error_and_the_server_keeps_serving(
    client, server, frame, name, content, message
):
    path = server[1] / name
    path.write_bytes(content)
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(str(path)), None, SLIDER_LEFT, SLIDER_RIGHT, "fp32", api_name="/analyze")
    assert_alive(client, frame)


def test_truncated_and_huge_images(client, server, frame):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (200, 200, 3), dtype=np.uint8)).save(
        buf, format="PNG"
    )
    truncated = server[1] / "truncated.png"
    truncated.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(AppError, match="truncated or corrupt"):
        client.predict(handle_file(str(truncated)), "hitts", api_name="/predict")
    huge = save(server[1], "100mp.png", Image.new("1", (10_000, 10_000)))  # 100 megapixels, a small file
    assert huge.stat().st_size < UPLOAD_CAP_MB * 2**20
    with pytest.raises(AppError, match="megapixels"):
        client.predict(handle_file(str(huge)), "hitts", api_name="/predict")
    assert_alive(client, frame)


def test_upload_over_the_byte_cap_is_refused(client, server, frame):
    big = server[1] / "big.png"
    big.write_bytes(
        np.random.default_rng(3).integers(0, 256, (UPLOAD_CAP_MB + 1) * 2**20, dtype=np.uint8).tobytes()
    )
    with pytest.raises(ValueError, match="exceeds the maximum file size"):  # checked by the client...
        client.predict(handle_file(str(big)), "hitts", api_name="/predict")
    with big.open("rb") as fh:  # ... and by the server, for clients that do not check
        response = httpx.post(f"{server[0]}gradio_api/upload", files={"files": ("big.png", fh)}, timeout=30)
    assert response.status_code == 413
    assert_alive(client, frame)


def test_server_files_cannot_be_passed_as_uploads(server):
    """A hand-made request naming a server path as the image is refused (only uploaded files are read)."""
    payload = {"data": [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, "hitts"]}
    event = httpx.post(f"{server[0]}gradio_api/call/predict", json=payload, timeout=10).json()["event_id"]
    stream = httpx.get(f"{server[0]}gradio_api/call/predict/{event}", timeout=30).text
    assert "event: error" in stream and "root:" not in stream


def test_awkward_but_valid_images_are_answered(client, server):
    rng = np.random.default_rng(4)
    rgba = rng.integers(0, 256, (30, 50, 4), dtype=np.uint8)
    frames = [Image.new("RGB", (40, 30), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    cases = {
        "grey.png": save(server[1], "grey.png", Image.new("L", (50, 30), 90)),
        "rgba.png": save(server[1], "rgba.png", Image.fromarray(rgba, "RGBA")),
        "16bit.png": save(
            server[1], "16bit.png", Image.fromarray(rng.integers(0, 65535, (30, 50), dtype=np.uint16))
        ),
        "anim.gif": save(server[1], "anim.gif", frames[0], save_all=True, append_images=frames[1:]),
        "big.png": save(server[1], "wide.png", Image.new("RGB", (3000, 600), (20, 30, 40))),
        "tiny.png": save(server[1], "tiny.png", Image.new("RGB", (1, 1), (5, 5, 5))),
    }
    for name, path in cases.items():
        *_, info = client.predict(handle_file(str(path)), "hitts", api_name="/predict")
        assert info["model"] == "hitts", name
    assert info["image_size"] == [1, 1]
    *_, anim_info = client.predict(handle_file(str(cases["anim.gif"])), "hitts", api_name="/predict")
    assert any("first frame" in n for n in anim_info["notes"])
    *_, wide_info = client.predict(handle_file(str(cases["big.png"])), "hitts", api_name="/predict")
    assert wide_info["image_size"] == [1600, 320] and any("downscaled" in n for n in wide_info["notes"])


def test_concurrent_requests_complete(server, frame):
    def one(i: int):
        c = Client(server[0], verbose=False)
        return c.predict(handle_file(str(frame)), "hitts" if i % 2 else "mtl", api_name="/predict")[-1][
            "model"
        ]

    with ThreadPoolExecutor(max_workers=6) as pool:
        models = list(pool.map(one, range(6)))
    assert sorted(models) == ["hitts"] * 3 + ["mtl"] * 3


@pytest.mark.parametrize(
    "target",
    [
        "{exports}/hitts/model.onnx",
        "{exports}/hitts/manifest.json",
        "/etc/passwd",
        "{repo}/app.py",
        "{repo}/.venv/pyvenv.cfg",
    ],
)
def test_files_outside_the_cache_are_not_served(server, target):
    path = target.format(exports=cached_fake_exports_root(), repo=REPO)
    url = f"{server[0]}gradio_api/file={path}"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url, timeout=5)
    assert err.value.code in (403, 404)


def test_a_broken_export_is_reported_at_start_up(tmp_path):
    import shutil

    exports = tmp_path / "exports"
    shutil.copytree(cached_fake_exports_root() / "hitts", exports / "hitts")
    shutil.copytree(cached_fake_exports_root() / "mtl", exports / "mtl")
    (exports / "mtl" / "model.onnx").write_bytes((exports / "mtl" / "model.onnx").read_bytes()[:1000])
    port = free_port()
    log = tmp_path / "app.log"
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--exports", str(exports), "--port", str(port)],
        cwd=REPO,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/", proc, log)
        assert "export mtl not loaded" in log.read_text() and "truncated" in log.read_text()
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        png = save(tmp_path, "x.png", Image.new("RGB", (20, 10)))
        with pytest.raises(AppError, match="mtl is not in the list of choices"):
            client.predict(handle_file(str(png)), "mtl", api_name="/predict")
        *_, info = client.predict(handle_file(str(png)), "hitts", api_name="/predict")
        assert info["model"] == "hitts"  # the model that loaded keeps answering
    finally:
        stop_app(proc)


def test_app_builds_without_any_export(tmp_path):
    """An empty exports folder: the app still builds and says what to put where."""
    import app
    from hitts_demo.downloads import SessionFiles
    from hitts_demo.manifest import ExportError
    from hitts_demo.service import Studio

    studio = Studio(tmp_path, nyuv2_dir=None)
    studio.warm()
    demo = app.build_app(studio, SessionFiles(tmp_path / "files"))
    assert demo is not None and "No model export found" in studio.status_markdown()
    with pytest.raises(ExportError, match="exports/hitts"):
        studio.analyze(np.zeros((4, 4, 3), np.uint8))
