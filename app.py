"""HiTTs Studio: a Gradio 6 dashboard over the ONNX Runtime exports of a HiTTs and an MTL model.

    python app.py [--port 7860] [--host 127.0.0.1] [--exports exports/] [--nyuv2-mini PATH]

Every upload (or gallery item) runs each model once (``hitts_demo.service.Studio.analyze``); the
tabs re-render from the kept ``Analysis`` (``gr.State``): moving a tau slider, switching the slider
sides or the fine-token class never runs a model again.

Named endpoints (``gradio_client``): ``predict`` (public: image -> one raw file per task + JSON);
undocumented but callable: ``analyze``, ``render_tokens``, ``render_pseudo``, ``render_3d``,
``render_metrics``, ``download_zip``. Everything else is private.

Nothing here runs at import: the model sessions are created by ``main()`` (``Studio.warm``) or on
the first request.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from gradio import component_meta
from PIL import Image

from hitts_demo import visualize as vis
from hitts_demo.downloads import SessionFiles
from hitts_demo.gallery import load_rgb, resolve_nyuv2_dir
from hitts_demo.manifest import ExportError
from hitts_demo.pointcloud import NYU_WIDTH_PX, default_focal
from hitts_demo.preprocess import DEFAULT_LIMITS, ImageLimits, InputError
from hitts_demo.service import COLOUR_BY, Analysis, Studio

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
FILE_BOX_PX = 90
PREDICTIONS_TAB = "Predictions"
CLOUD_TAB = "3D"
FRONT_VIEW = (90, 90, None)
"""Model3D camera (alpha, beta, radius): looking from the camera centre along the optical axis."""
IMAGE_HEIGHT = 360
CSS = """
.hitts-status {font-size: 0.9em}
footer {display: none !important}
"""
log = logging.getLogger("hitts_studio")


@contextlib.contextmanager
def _no_pyi_stub():
    """Gradio writes a ``.pyi`` typing stub next to any module defining a component subclass; skip it."""
    saved = component_meta.create_or_modify_pyi
    component_meta.create_or_modify_pyi = lambda *args, **kwargs: None
    try:
        yield
    finally:
        component_meta.create_or_modify_pyi = saved


with _no_pyi_stub():

    class UploadImage(gr.Image):
        """``gr.Image`` whose server side does not decode the upload.

        Gradio's own ``gr.Image.preprocess`` opens the file with Pillow before our code runs (a corrupt or
        oversized file would fail there with an unhelpful message). This template keeps the same browser
        component and hands the uploaded file's path (or a data URL's bytes) to ``hitts_demo.preprocess``,
        which applies the byte / pixel caps and explains what is wrong.
        """

        is_template = True

        def preprocess(self, payload: Any) -> str | bytes | None:
            if payload is None:
                return None
            if payload.path:
                return str(payload.path)
            if payload.url and payload.url.startswith("data:"):
                head, _, data = payload.url.partition(",")
                if len(data) > DEFAULT_LIMITS.max_bytes * 4 // 3 + 4:
                    raise gr.Error("The pasted image is over the size limit.")
                return base64.b64decode(data) if ";base64" in head else data.encode()
            raise gr.Error("The image did not arrive; please upload it again.")


def _guard(action: str, fn: Callable) -> Callable:
    """Turn our errors into ``gr.Error`` (a readable message in the UI / client); log anything else."""

    @functools.wraps(fn)  # keeps the signature: Gradio injects gr.Request / gr.SelectData from it
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        except (InputError, ExportError) as err:
            raise gr.Error(f"{action}: {err}", print_exception=False) from err
        except gr.Error:
            raise
        except Exception as err:  # noqa: BLE001 - the server must keep serving whatever happens
            log.exception("%s failed", action)
            raise gr.Error(
                f"{action} failed unexpectedly ({type(err).__name__}); the server is still running."
            ) from err
        finally:
            log.debug("%s: %.0f ms", action, (time.perf_counter() - start) * 1000)

    return wrapper


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


def build_app(studio: Studio, files: SessionFiles) -> gr.Blocks:
    """The dashboard's layout and events (the model sessions are built elsewhere, once)."""
    models = studio.model_names
    primary = studio.primary
    task_slots = studio.api_task_names()  # one component per task name across the models
    slider_choices = list(studio.slider_views)
    left0, right0 = studio.default_slider_pair()
    primary_manifest = studio.manifests.get(primary) if primary else None
    token_tasks = list(primary_manifest.task_names) if primary_manifest else []

    def folder(request: gr.Request | None) -> Path:
        return files.new_dir(request.session_hash if request is not None else None)

    def need(analysis: Analysis | None) -> Analysis:
        if analysis is None:
            raise InputError("upload an image or pick a gallery item first")
        return analysis

    # --- event functions -------------------------------------------------------------------------
    def pictures(images: list[np.ndarray | None], request: gr.Request | None, stem: str) -> list[str | None]:
        """Encode pictures once, fast (WebP, method 0), into this session's folder."""
        out_dir = folder(request)
        return [vis.save_webp(img, out_dir / f"{stem}_{i}.webp") for i, img in enumerate(images)]

    def analyze(image: Any, gallery_name: str | None, previous: Analysis | None, left: str, right: str,
                request: gr.Request = None):  # fmt: skip
        """Run every model once on the image; returns the Predictions view."""
        analysis = studio.analyze(image, gallery_name or None, previous)
        panels = []
        for name in models:
            pred = analysis.predictions.get(name)
            for task in task_slots:
                has = pred is not None and task in pred.manifest.task_names
                panels.append(studio.task_panel(pred, pred.manifest.task(task)) if has else None)
        left_img, right_img, *panel_files = pictures(
            [studio.slider_image(analysis, left), studio.slider_image(analysis, right), *panels],
            request,
            "pred",
        )
        return [analysis, studio.summary_markdown(analysis), (left_img, right_img), *panel_files]

    def analyze_upload(
        image: Any, previous: Analysis | None, left: str, right: str, request: gr.Request = None
    ):
        """A user upload: analyse it without ground truth and clear the gallery pick (one round trip)."""
        return [None, *analyze(image, None, previous, left, right, request)]

    def render_slider(analysis: Analysis | None, left: str, right: str, request: gr.Request = None):
        if analysis is None:
            return gr.skip()
        return tuple(
            pictures(
                [studio.slider_image(analysis, left), studio.slider_image(analysis, right)], request, "slider"
            )
        )

    def render_tokens(analysis: Analysis | None, model: str, task: str, class_choice: str | None,
                      request: gr.Request = None):  # fmt: skip
        """Confidence, global-token and fine-token maps and the token plots of one model."""
        out = studio.tokens_view(need(analysis), model, task, class_choice)
        conf = [out["confidence"].get(t) for t in task_slots]
        glob = [out["global"].get(t) for t in task_slots]
        images = pictures([*conf, *glob, out["fine"]], request, "tokens")
        return [*images, out["affinity"], out["self_affinity"], out["pca"], out["markdown"]]

    def class_picker(model: str, task: str):
        choices = studio.class_choices(model, task)
        return gr.Dropdown(choices=["(max over classes)", *choices], value="(max over classes)")

    def render_pseudo(request: gr.Request, analysis: Analysis | None, model: str, *taus: float):
        """Pseudo labels at the given tau per task, coverage, and accuracy vs coverage with ground truth.

        (``request`` comes first: Gradio injects it only among the positional parameters.)"""
        out = studio.pseudo_view(need(analysis), model, dict(zip(token_tasks, taus)))
        images = pictures([out["panels"].get(t) for t in task_slots], request, "pseudo")
        return [*images, out["markdown"], out["curve"]]

    def render_3d(analysis: Analysis | None, model: str, focal: float | None, colour_by: str,
                  request: gr.Request = None):  # fmt: skip
        """Point cloud of the predicted depth: GLB for the viewer, PLY for download."""
        glb, ply, md = studio.point_cloud(need(analysis), model, focal, colour_by, folder(request))
        return str(glb), str(ply), md

    def render_3d_if_open(open_tab: str, analysis: Analysis | None, model: str, focal: float | None, colour_by: str,
                          request: gr.Request = None):  # fmt: skip
        """After a new analysis: refresh the point cloud only if the 3D tab is open (else on opening it;
        gr.Model3D does not draw a value that arrived while its tab was hidden)."""
        if open_tab != CLOUD_TAB:
            return gr.skip(), gr.skip(), gr.skip()
        return render_3d(analysis, model, focal, colour_by, request)

    def download_zip(analysis: Analysis | None, request: gr.Request = None):
        """All raw outputs of the last analysis in one zip (README inside states the encodings)."""
        return str(studio.raw_zip(need(analysis), folder(request)))

    def predict(image: Any, model: str, request: gr.Request = None):
        """Image -> one raw file per task (labels palette PNG, depth 16-bit PNG in mm, normals RGB PNG)
        and a JSON description of the encodings."""
        paths, info = studio.predict_files(image, model, folder(request))
        return [*(str(p) if p else None for p in paths), info]

    def render_metrics(curve_key: str | None, table_key: str | None):
        """Run records vs the paper, Delta_MTL, one paper table and learning curves."""
        out = studio.metrics_view(curve_key, table_key)
        picker = gr.Dropdown(choices=out["keys"], value=out["key"])
        return out["runs"], out["delta"], out["paper"], out["curves"], picker, out["markdown"]

    def track_tab(evt: gr.SelectData) -> str:
        return evt.value

    def pick_gallery(evt: gr.SelectData):
        return studio.gallery[evt.index].name

    def load_gallery_image(name: str | None):
        """The gallery item's image, shown in the image box (then analysed with its ground truth)."""
        if not name:
            return gr.skip()
        return load_rgb(studio.gallery_item(name)).rgb

    # --- layout ----------------------------------------------------------------------------------
    with gr.Blocks(title="HiTTs Studio", delete_cache=CACHE_SWEEP) as demo:
        analysis = gr.State(None, time_to_live=STATE_TTL_S)
        gr.Markdown(
            "# HiTTs Studio\nMulti-task dense prediction (semantic segmentation, depth, surface normals) with "
            "**Hierarchical Task Tokens**, run by ONNX Runtime. Upload an image or pick a gallery item."
        )
        gr.Markdown(studio.status_markdown(), elem_classes="hitts-status")
        with gr.Row():
            with gr.Column(scale=2):
                image_in = UploadImage(label="Image", type="filepath", sources=["upload", "clipboard"],
                                       format="png", height=IMAGE_HEIGHT)  # fmt: skip
                with gr.Row():
                    gallery_dd = gr.Dropdown(choices=[g.name for g in studio.gallery], value=None,
                                             label="Gallery item (with ground truth)", scale=3)  # fmt: skip
                    run_btn = gr.Button("Run", variant="primary", scale=1)
                status = gr.Markdown("", elem_classes="hitts-status")
            with gr.Column(scale=3):
                thumbs = [t for i in range(len(studio.gallery)) if (t := _thumbnail(studio, i))]
                gallery = gr.Gallery(value=thumbs or None, label="Gallery: synthetic samples and nyuv2-mini frames",
                                     columns=5, height=IMAGE_HEIGHT, allow_preview=False, interactive=False)  # fmt: skip

        open_tab = gr.State(PREDICTIONS_TAB)
        with gr.Tabs() as tabs:
            with gr.Tab(PREDICTIONS_TAB):
                with gr.Row():
                    left_dd = gr.Dropdown(slider_choices, value=left0, label="Slider: left side")
                    right_dd = gr.Dropdown(slider_choices, value=right0, label="Slider: right side")
                slider = gr.ImageSlider(label="Compare", type="numpy", max_height=600)
                task_panels = []
                with gr.Row():
                    for name in models:
                        with gr.Column():
                            gr.Markdown(f"### {name}")
                            for task in task_slots:
                                task_panels.append(
                                    gr.Image(label=f"{name}: {task}", interactive=False, format="webp")
                                )
                with gr.Row():
                    zip_btn = gr.Button("Prepare raw-output zip (PNG 16-bit depth in mm, .npy, .npz, labels)")
                    zip_file = gr.File(label="Raw outputs", interactive=False, height=FILE_BOX_PX)
                with gr.Accordion("API: per-task raw files (the `predict` endpoint)", open=False):
                    gr.Markdown("`from gradio_client import Client, handle_file; Client(URL).predict("
                                "handle_file('photo.jpg'), 'hitts', api_name='/predict')` returns one file "
                                "per task and a JSON description of the encodings.")  # fmt: skip
                    with gr.Row():
                        api_model = gr.Dropdown(models, value=primary, label="Model")
                        api_btn = gr.Button("Run predict")
                    with gr.Row():
                        api_files = [gr.File(label=f"{t}", interactive=False) for t in task_slots]
                    api_json = gr.JSON(label="Encodings")

            with gr.Tab("Confidence and tokens"):
                tokens_md = gr.Markdown()
                with gr.Row():
                    tokens_model = gr.Radio(models, value=primary, label="Model")
                    fine_task = gr.Dropdown(
                        token_tasks,
                        value=token_tasks[0] if token_tasks else None,
                        label="Fine tokens of task",
                    )
                    first = ["(max over classes)"] + (
                        studio.class_choices(primary, token_tasks[0]) if token_tasks else []
                    )
                    fine_class = gr.Dropdown(first, value=first[0], label="Class / bin / centre")
                with gr.Row():
                    conf_imgs = [gr.Image(label=f"confidence {t}", interactive=False) for t in task_slots]
                with gr.Row():
                    global_imgs = [
                        gr.Image(label=f"global-token map {t}", interactive=False) for t in task_slots
                    ]
                with gr.Row():
                    fine_img = gr.Image(label="fine-token score map", interactive=False)
                    affinity_plot = gr.Plot(label="Task affinity A")
                self_aff_plot = gr.Plot(label="Fine tokens: self-affinity")
                pca_plot = gr.Plot(label="Fine tokens: PCA")

            with gr.Tab("Pseudo labels"):
                pseudo_md = gr.Markdown()
                with gr.Row():
                    pseudo_model = gr.Radio(models, value=primary, label="Model")
                    tau_sliders = [
                        gr.Slider(0.0, 0.99, value=primary_manifest.task(t).tau, step=0.01, label=f"tau {t}")
                        for t in token_tasks
                    ]
                with gr.Row():
                    pseudo_imgs = [gr.Image(label=f"pseudo label {t}", interactive=False) for t in task_slots]
                curve_plot = gr.Plot(label="Accuracy vs coverage")

            with gr.Tab("Metrics"):
                metrics_md = gr.Markdown()
                with gr.Row():
                    curve_key = gr.Dropdown(
                        studio.log_keys(), label="Learning curve of", allow_custom_value=True
                    )
                    table_key = gr.Dropdown(
                        [(lbl, k) for lbl, k in studio.table_choices()], value="table1", label="Paper table"
                    )
                    reload_btn = gr.Button("Reload run records")
                runs_plot = gr.Plot(label="Runs vs paper")
                delta_plot = gr.Plot(label="Delta_MTL")
                curves_plot = gr.Plot(label="Learning curves")
                paper_plot = gr.Plot(label="Paper table")

            with gr.Tab(CLOUD_TAB) as cloud_tab:
                with gr.Row():
                    cloud_model = gr.Radio(models, value=primary, label="Model")
                    focal = gr.Number(
                        value=0,
                        minimum=0,
                        label=f"Focal length (px); 0 = NYU's {default_focal(NYU_WIDTH_PX):.1f} px at 640 wide, "
                        "scaled to the image width",
                    )
                    colour_by = gr.Radio(list(COLOUR_BY), value="class", label="Colour points by")
                    cloud_btn = gr.Button("Rebuild point cloud")
                cloud_md = gr.Markdown()
                cloud_view = gr.Model3D(
                    label="Point cloud (GLB)",
                    display_mode="point_cloud",
                    clear_color=(1, 1, 1, 1),
                    camera_position=FRONT_VIEW,
                    height=520,
                )
                ply_file = gr.File(label="PLY download", interactive=False, height=FILE_BOX_PX)

        # --- events --------------------------------------------------------------------------
        analysis_inputs = [image_in, gallery_dd, analysis, left_dd, right_dd]
        analysis_outputs = [analysis, status, slider, *task_panels]
        tokens_io = ([analysis, tokens_model, fine_task, fine_class],
                     [*conf_imgs, *global_imgs, fine_img, affinity_plot, self_aff_plot, pca_plot, tokens_md])  # fmt: skip
        pseudo_io = ([analysis, pseudo_model, *tau_sliders], [*pseudo_imgs, pseudo_md, curve_plot])
        cloud_io = ([analysis, cloud_model, focal, colour_by], [cloud_view, ply_file, cloud_md])

        def run_chain(trigger, fn, inputs, outputs, named: bool = False) -> None:
            """``fn`` (an analysis) on ``trigger``, then, in parallel once it succeeded, the tokens and
            pseudo-label views and (if its tab is open) the 3D view."""
            visibility = "undocumented" if named else "private"

            def opts(api_name: str) -> dict[str, Any]:
                return {"api_name": api_name if named else None, "api_visibility": visibility}

            done = trigger(_guard("Analysis", fn), inputs, outputs, **opts("analyze"))
            done.success(_guard("Tokens view", render_tokens), *tokens_io, **opts("render_tokens"))
            done.success(_guard("Pseudo-label view", render_pseudo), *pseudo_io, **opts("render_pseudo"))
            done.success(_guard("3D view", render_3d_if_open), [open_tab, *cloud_io[0]], cloud_io[1],
                         api_visibility="private")  # fmt: skip

        run_chain(run_btn.click, analyze, analysis_inputs, analysis_outputs, named=True)
        upload_inputs = [image_in, analysis, left_dd, right_dd]
        run_chain(image_in.upload, analyze_upload, upload_inputs, [gallery_dd, *analysis_outputs])
        picked = gallery.select(pick_gallery, None, gallery_dd, api_visibility="private").then(
            _guard("Gallery", load_gallery_image), gallery_dd, image_in, api_visibility="private"
        )
        run_chain(picked.success, analyze, analysis_inputs, analysis_outputs)
        chosen = gallery_dd.input(
            _guard("Gallery", load_gallery_image), gallery_dd, image_in, api_visibility="private"
        )
        run_chain(chosen.success, analyze, analysis_inputs, analysis_outputs)

        gr.on([left_dd.change, right_dd.change], _guard("Slider", render_slider), [analysis, left_dd, right_dd], slider,
              api_visibility="private", trigger_mode="always_last")  # fmt: skip
        fine_task.change(class_picker, [tokens_model, fine_task], fine_class, api_visibility="private")
        gr.on([tokens_model.change, fine_class.change], _guard("Tokens view", render_tokens), *tokens_io,
              api_visibility="private", trigger_mode="always_last")  # fmt: skip
        gr.on([pseudo_model.change, *[s.change for s in tau_sliders]], _guard("Pseudo-label view", render_pseudo),
              *pseudo_io, api_visibility="private", trigger_mode="always_last")  # fmt: skip
        tabs.select(track_tab, None, open_tab, api_visibility="private")
        cloud_btn.click(
            _guard("3D view", render_3d), *cloud_io, api_name="render_3d", api_visibility="undocumented"
        )
        gr.on([cloud_tab.select, colour_by.change, cloud_model.change], _guard("3D view", render_3d), *cloud_io,
              api_visibility="private", trigger_mode="always_last")  # fmt: skip
        zip_btn.click(_guard("Download", download_zip), analysis, zip_file, api_name="download_zip",
                      api_visibility="undocumented")  # fmt: skip
        api_btn.click(
            _guard("predict", predict), [image_in, api_model], [*api_files, api_json], api_name="predict"
        )
        metrics_io = (
            [curve_key, table_key],
            [runs_plot, delta_plot, paper_plot, curves_plot, curve_key, metrics_md],
        )
        reload_btn.click(
            _guard("Metrics", render_metrics),
            *metrics_io,
            api_name="render_metrics",
            api_visibility="undocumented",
        )
        gr.on(
            [curve_key.input, table_key.input],
            _guard("Metrics", render_metrics),
            *metrics_io,
            api_visibility="private",
        )
        demo.load(_guard("Metrics", render_metrics), *metrics_io, api_visibility="private")
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
    files = SessionFiles().start()
    demo = build_app(studio, files)
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
