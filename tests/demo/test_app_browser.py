"""A real headless Chromium drives the app: upload a frame, wait for the views, screenshot them."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from headless_chromium import CHROMIUM, launch
from PIL import Image
from test_app_client import start_app, stop_app

REPO = Path(__file__).resolve().parents[2]
RENDER_TIMEOUT_MS = 30_000
PREDICTION_IMAGES = 6  # 2 models x 3 tasks

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed"),
]
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    proc, url = start_app(tmp_path_factory.mktemp("browser"))
    yield url
    stop_app(proc)


@pytest.fixture(scope="module")
def page(app_url):
    with sync_api.sync_playwright() as p:
        browser = launch(p)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.goto(app_url)
        pg.wait_for_selector("input[type=file]", state="attached", timeout=RENDER_TIMEOUT_MS)
        yield pg
        browser.close()


def frame_path(tmp_path: Path) -> Path:
    real = REPO.parent / "shared" / "data" / "nyuv2-mini" / "rgb_0009.png"
    if real.is_file():
        return real
    path = tmp_path / "frame.png"
    yy, xx = np.mgrid[0:480, 0:640]
    Image.fromarray(np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)).save(path)
    return path


def rendered(page, marker: str, count: int) -> None:
    page.wait_for_function(
        f"() => document.querySelectorAll('img[src*=\"{marker}\"]').length >= {count}",
        timeout=RENDER_TIMEOUT_MS,
    )


def test_upload_renders_every_view(page, tmp_path):
    start = time.perf_counter()
    page.set_input_files("input[type=file]", str(frame_path(tmp_path)))
    rendered(page, "pred_", PREDICTION_IMAGES)
    elapsed = time.perf_counter() - start
    assert elapsed < 20, elapsed
    page.wait_for_timeout(500)
    shot = tmp_path / "predictions.png"
    page.screenshot(path=str(shot), full_page=True)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert shot.stat().st_size > 100_000
    assert pixels.shape[0] > 1500 and pixels.std() > 20
    assert (
        len(np.unique(pixels.reshape(-1, 3)[::7], axis=0)) > 2000
    )  # photos and colour maps, not a blank page

    page.get_by_role("tab", name="Confidence and tokens").click()  # hidden tabs mount when opened
    rendered(page, "tokens_", 7)
    page.wait_for_selector(".js-plotly-plot", timeout=RENDER_TIMEOUT_MS)
    page.get_by_role("tab", name="Pseudo labels").click()
    rendered(page, "pseudo_", 3)
    page.get_by_role("tab", name="3D").click()
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('canvas')).some(c => c.width > 0 && c.height > 0)",
        timeout=RENDER_TIMEOUT_MS,
    )
    page.screenshot(path=str(tmp_path / "3d.png"), full_page=True)


def test_pixel_inspector_answers_a_click(page, tmp_path):
    """After the upload above: click a pixel of the inspector's image; its report and bars appear."""
    page.get_by_role("tab", name="Pixel inspector").click()
    image = page.locator("#inspector-image img").first
    image.wait_for(timeout=RENDER_TIMEOUT_MS)
    box = image.bounding_box()
    start = time.perf_counter()
    image.click(position={"x": box["width"] / 2, "y": box["height"] / 2})
    page.get_by_text("Pixel (").first.wait_for(timeout=RENDER_TIMEOUT_MS)
    elapsed = time.perf_counter() - start
    assert elapsed < 5, elapsed  # the server answers in ms; this bounds the whole round trip in a browser
    page.wait_for_selector("#inspector-image img[src*='inspect_']", timeout=RENDER_TIMEOUT_MS)
    assert page.get_by_text("| hitts | semseg |").count() + page.locator("td", has_text="semseg").count() > 0
    page.screenshot(path=str(tmp_path / "inspector.png"), full_page=True)


def test_batch_tab_runs_two_images(page, tmp_path):
    page.get_by_role("tab", name="Batch").click()
    first = tmp_path / "a.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(first)
    page.set_input_files("#batch-files input[type=file]", [str(first), str(frame_path(tmp_path))])
    page.wait_for_timeout(1000)
    page.get_by_role("button", name="Run batch").click()
    page.get_by_text("2 of 2 image(s)").first.wait_for(timeout=RENDER_TIMEOUT_MS)
    page.locator("a[href*='hitts_studio_batch']").first.wait_for(state="attached", timeout=RENDER_TIMEOUT_MS)


def test_bad_upload_shows_a_message(page, tmp_path):
    page.get_by_role("tab", name="Predictions").click()
    text = tmp_path / "notes.png"
    text.write_text("not a picture\n" * 100)
    page.set_input_files("input[type=file]", str(text))
    page.get_by_text("not an image in a supported format").first.wait_for(timeout=RENDER_TIMEOUT_MS)
