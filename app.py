"""HiTTs Studio: a Gradio 6 dashboard over the ONNX Runtime exports of a HiTTs and an MTL model.

    python app.py [--port 7860] [--host 127.0.0.1] [--exports exports/] [--nyuv2-mini PATH]

Every upload (or gallery item) runs each model once (``hitts_demo.service.Studio.analyze``); the
tabs re-render from the kept ``Analysis`` (``gr.State``): moving a tau slider, switching the slider
sides, clicking a pixel or the fine-token class never runs a model again. Each tab is one module of
``hitts_demo.ui`` (components and events) over one of ``hitts_demo.views`` (what it shows); this file
assembles the header, the tabs and ``launch``.

Named endpoints (``gradio_client``): ``predict`` (image -> one raw file per task + JSON),
``predict_batch`` (up to 32 images -> zip + CSV summary) and ``inspect`` (image, model, x, y -> JSON);
undocumented but callable: ``analyze``, ``render_tokens``, ``render_pseudo``, ``render_consistency``,
``render_3d``, ``render_metrics``, ``download_zip``. Everything else is private.

Nothing here runs at import: the model sessions are created by ``main()`` (``Studio.warm``) or on
the first request.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from hitts_demo.downloads import SessionFiles
from hitts_demo.gallery import load_rgb, resolve_nyuv2_dir
from hitts_demo.preprocess import DEFAULT_LIMITS, ImageLimits
from hitts_demo.service import Studio
from hitts_demo.ui import batch, cloud, consistency, inspector, metrics, predictions, pseudo, tokens
from hitts_demo.ui.common import PRIVATE, Context, UploadImage, api_opts, guard

REPO = Path(__file__).resolve().parent
DEFAULT_PORT = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
DEFAULT_HOST = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
DEFAULT_EXPORTS = REPO / "exports"
CONCURRENCY = 2
QUEUE_SIZE = 32
STATE_TTL_S = 30 * 60
STATE_SESSIONS = 200
CACHE_SWEEP = (10 * 60, 60 * 60)
"""Gradio cache: every 10 minutes delete files older than an hour."""
THUMB_SIZE = (160, 120)
IMAGE_HEIGHT = 360
CSS = """
.hitts-status {font-size: 0.9em}
.hitts-gallery .caption-label {white-space: normal !important; max-width: 100% !important; font-size: 0.75em}
footer {display: none !important}
"""
log = logging.getLogger("hitts_studio")


def _thumbnail(studio: Studio, index: int) -> tuple[np.ndarray, str] | None:
    item = studio.gallery[index]
    try:
        im = Image.open(item.rgb)
        im.draft("RGB", THUMB_SIZE)
        im = im.convert("RGB")
        im.thumbnail(THUMB_SIZE)
    except OSError:
        return None
    return np.asarray(im), item.name


def _header(
    studio: Studio,
) -> tuple[UploadImage, gr.Dropdown, gr.Button, gr.Markdown, gr.Gallery, gr.Dropdown]:
    """Title, model status, the image box, gallery and the precision picker."""
    gr.Markdown(
        "# HiTTs Studio\nMulti-task dense prediction (semantic segmentation, depth, surface normals) with "
        "**Hierarchical Task Tokens**, run by ONNX Runtime. Upload an image or pick a gallery item."
    )
    gr.Markdown(studio.status_markdown(), elem_classes="hitts-status")
    with gr.Row():
        with gr.Column(scale=2):
            image = UploadImage(
                label="Image",
                type="filepath",
                sources=["upload", "clipboard"],
                format="png",
                height=IMAGE_HEIGHT,
            )
            with gr.Row():
                gallery_dd = gr.Dropdown(
                    [g.name for g in studio.gallery],
                    value=None,
                    label="Gallery item (with ground truth)",
                    scale=3,
                )
                variant = gr.Dropdown(
                    studio.variants,
                    value=studio.variants[0],
                    label="Model precision",
                    visible=len(studio.variants) > 1,
                    scale=1,
                )
                run = gr.Button("Run", variant="primary", scale=1)
            status = gr.Markdown("", elem_classes="hitts-status")
        with gr.Column(scale=3):
            thumbs = [t for i in range(len(studio.gallery)) if (t := _thumbnail(studio, i))]
            gallery = gr.Gallery(
                value=thumbs or None,
                label="Gallery: synthetic samples and nyuv2-mini frames",
                columns=4,
                height=IMAGE_HEIGHT,
                allow_preview=False,
                interactive=False,
                elem_classes="hitts-gallery",
            )
    return image, gallery_dd, run, status, gallery, variant


def _tabs(ctx: Context, status: gr.Markdown) -> dict[str, Any]:
    """Every tab, in order; returns them by module name (plus the Tabs and the open-tab state)."""
    built: dict[str, Any] = {"open_tab": gr.State(predictions.TITLE)}
    with gr.Tabs() as built["tabs"]:
        with gr.Tab(predictions.TITLE, id=predictions.TITLE):
            built["predictions"] = predictions.PredictionsTab(ctx, status)
        with gr.Tab(inspector.TITLE, id=inspector.TITLE):
            built["inspector"] = inspector.InspectorTab(ctx)
        with gr.Tab(tokens.TITLE, id=tokens.TITLE):
            built["tokens"] = tokens.TokensTab(ctx)
        with gr.Tab(pseudo.TITLE, id=pseudo.TITLE):
            built["pseudo"] = pseudo.PseudoTab(ctx)
        with gr.Tab(consistency.TITLE, id=consistency.TITLE):
            built["consistency"] = consistency.ConsistencyTab(ctx)
        with gr.Tab(metrics.TITLE, id=metrics.TITLE):
            built["metrics"] = metrics.MetricsTab(ctx)
        with gr.Tab(cloud.TITLE, id=cloud.TITLE) as cloud_tab:
            built["cloud"] = cloud.CloudTab(ctx, cloud_tab)
        with gr.Tab(batch.TITLE, id=batch.TITLE):
            built["batch"] = batch.BatchTab(ctx)
    return built


def _wire_analysis(
    ctx: Context, tabs: dict[str, Any], gallery_dd: gr.Dropdown, run: gr.Button, gallery: gr.Gallery
) -> None:
    """Each way to get a new image (Run, upload, gallery click or pick) runs the analysis, then, once it
    succeeded, refreshes the other views in parallel (the 3D view only if its tab is open)."""
    pred = tabs["predictions"]
    inputs = [ctx.image, gallery_dd, ctx.analysis, pred.left, pred.right, ctx.variant]
    outputs = [ctx.analysis, *pred.outputs]

    def upload(image: Any, previous: Any, left: str, right: str, variant: str, request: gr.Request = None):
        """A user upload: analyse it without ground truth and clear the gallery pick (one round trip)."""
        return [None, *pred.analyze(image, None, previous, left, right, variant, request)]

    def chain(trigger, fn, ins, outs, named: bool = False) -> None:
        done = trigger(guard("Analysis", fn), ins, outs, **api_opts("analyze", named))
        for name in ("tokens", "pseudo", "consistency"):
            tabs[name].after(done, named)
        tabs["inspector"].after(done)
        tabs["cloud"].after(done, tabs["open_tab"])

    chain(run.click, pred.analyze, inputs, outputs, named=True)
    chain(
        ctx.image.upload,
        upload,
        [ctx.image, ctx.analysis, pred.left, pred.right, ctx.variant],
        [gallery_dd, *outputs],
    )
    load = guard("Gallery", lambda name: load_rgb(ctx.studio.gallery_item(name)).rgb if name else gr.skip())

    def pick(evt: gr.SelectData) -> str:
        return ctx.studio.gallery[evt.index].name

    picked = gallery.select(pick, None, gallery_dd, **PRIVATE)
    chain(picked.then(load, gallery_dd, ctx.image, **PRIVATE).success, pred.analyze, inputs, outputs)
    chain(gallery_dd.input(load, gallery_dd, ctx.image, **PRIVATE).success, pred.analyze, inputs, outputs)
    chain(ctx.variant.input, pred.analyze, inputs, outputs)
    for panel in pred.panels.values():
        tabs["inspector"].hook(panel, tabs["tabs"])


def _tab_name(evt: gr.SelectData) -> str:
    return evt.value


def build_app(studio: Studio, files: SessionFiles) -> gr.Blocks:
    """The dashboard's layout and events (the model sessions are built elsewhere, once)."""
    with gr.Blocks(title="HiTTs Studio", delete_cache=CACHE_SWEEP) as demo:
        analysis = gr.State(None, time_to_live=STATE_TTL_S)
        image, gallery_dd, run, status, gallery, variant = _header(studio)
        ctx = Context(studio, files, analysis, image, variant)
        tabs = _tabs(ctx, status)
        _wire_analysis(ctx, tabs, gallery_dd, run, gallery)
        tabs["tabs"].select(_tab_name, None, tabs["open_tab"], **PRIVATE)
        tabs["metrics"].wire(demo)
    return demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="HiTTs Studio dashboard (ONNX Runtime)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="server port (default %(default)s)")
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="server address (default %(default)s; 0.0.0.0 to expose)"
    )
    parser.add_argument(
        "--exports", type=Path, default=DEFAULT_EXPORTS, help="exports folder (default: exports/)"
    )
    parser.add_argument(
        "--nyuv2-mini",
        default=None,
        help="nyuv2-mini folder (default: $HITTS_NYUV2_MINI or ../shared/data/nyuv2-mini)",
    )
    parser.add_argument(
        "--max-upload-mb", type=float, default=DEFAULT_LIMITS.max_bytes / 2**20, help="upload byte cap"
    )
    return parser.parse_args(argv)


def launch_kwargs(studio: Studio, limits: ImageLimits) -> dict[str, Any]:
    """Server settings: upload cap, nothing extra allowed, the exports folder blocked."""
    return dict(
        max_file_size=limits.max_bytes,
        allowed_paths=[],
        blocked_paths=[str(studio.exports_dir)],
        show_error=False,
        footer_links=["api"],
        ssr_mode=False,
        run_history=False,
        state_session_capacity=STATE_SESSIONS,
        theme=gr.themes.Soft(primary_hue="orange", secondary_hue="blue"),
        css=CSS,
    )


def create(
    exports: Path, nyuv2_mini: str | None, limits: ImageLimits = DEFAULT_LIMITS
) -> tuple[gr.Blocks, Studio]:
    """Build the Studio (sessions created now, once) and the Blocks, with the queue configured."""
    studio = Studio(exports, resolve_nyuv2_dir(nyuv2_mini, REPO), limits)
    studio.warm()
    for name, err in studio.export_errors.items():
        log.error("export %s not loaded: %s", name, err)
    demo = build_app(studio, SessionFiles().start())
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return demo, studio


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    limits = ImageLimits(max_bytes=int(args.max_upload_mb * 2**20))
    demo, studio = create(args.exports, args.nyuv2_mini, limits)
    log.info("serving models %s on http://%s:%d", studio.model_names, args.host, args.port)
    demo.launch(server_name=args.host, server_port=args.port, **launch_kwargs(studio, limits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
