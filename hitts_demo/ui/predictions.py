"""Predictions tab: the slider, every model x task panel, the raw-output zip and the ``predict`` API."""

from __future__ import annotations

from typing import Any

import gradio as gr

from hitts_demo.downloads import write_raw_zip
from hitts_demo.service import Analysis
from hitts_demo.ui.common import FILE_BOX_PX, PRIVATE, Context, guard, need
from hitts_demo.views import api
from hitts_demo.views.cloud import focal_in_use
from hitts_demo.views.consistency import class_geometry
from hitts_demo.views.predictions import (
    PredictionsView,
    default_pair,
    predictions_view,
    slider_choices,
    slider_image,
)

TITLE = "Predictions"


class PredictionsTab:
    """Built inside ``gr.Tab(TITLE)``; ``analyze`` is the event every new image runs."""

    def __init__(self, ctx: Context, status: gr.Markdown) -> None:
        self.ctx, self.status = ctx, status
        self.choices = slider_choices(ctx.studio.manifests)
        left0, right0 = default_pair(self.choices)
        with gr.Row():
            self.left = gr.Dropdown(list(self.choices), value=left0, label="Slider: left side")
            self.right = gr.Dropdown(list(self.choices), value=right0, label="Slider: right side")
        self.slider = gr.ImageSlider(label="Compare", type="numpy", max_height=600)
        self.panels: dict[tuple[str, str], gr.Image] = {}
        with gr.Row():
            for name in ctx.models:
                with gr.Column():
                    gr.Markdown(f"### {name}")
                    for task in ctx.task_slots:
                        self.panels[(name, task)] = gr.Image(
                            label=f"{name}: {task}", interactive=False, format="webp"
                        )
        gr.Markdown("Click a pixel of any panel to inspect it (opens the Pixel inspector).")
        with gr.Row():
            self.zip_btn = gr.Button(
                "Prepare raw-output zip (PNG 16-bit depth in mm, .npy, .npz, labels, CSV)"
            )
            self.zip_file = gr.File(label="Raw outputs", interactive=False, height=FILE_BOX_PX)
        self._api_box()
        self._wire()

    def _api_box(self) -> None:
        with gr.Accordion("API: per-task raw files (the `predict` endpoint)", open=False):
            gr.Markdown(
                "`from gradio_client import Client, handle_file; Client(URL).predict(handle_file('photo.jpg'), "
                "'hitts', api_name='/predict')` returns one file per task and a JSON description."
            )
            with gr.Row():
                self.api_model = gr.Dropdown(self.ctx.models, value=self.ctx.studio.primary, label="Model")
                self.api_btn = gr.Button("Run predict")
            with gr.Row():
                self.api_files = [gr.File(label=t, interactive=False) for t in self.ctx.task_slots]
            self.api_json = gr.JSON(label="Encodings")

    # --- outputs, declared next to the view they render ------------------------------------------
    @property
    def outputs(self) -> list[gr.components.Component]:
        return [self.status, self.slider, *self.panels.values()]

    def show(self, view: PredictionsView, request: gr.Request | None) -> list[Any]:
        left, right, *panels = self.ctx.pictures(
            [view.left, view.right, *view.panels.values()], request, "pred"
        )
        return [view.summary, (left, right), *panels]

    # --- events ----------------------------------------------------------------------------------
    def analyze(
        self,
        image: Any,
        gallery_name: str | None,
        previous: Analysis | None,
        left: str,
        right: str,
        variant: str | None,
        request: gr.Request = None,
    ):
        """Run every model once on the image; returns the kept analysis and the Predictions view."""
        studio = self.ctx.studio
        analysis = studio.analyze(image, gallery_name or None, previous, variant)
        providers = {n: studio.predictor(n, p.variant).providers for n, p in analysis.predictions.items()}
        view = predictions_view(analysis, self.choices, left, right, self.ctx.task_slots, providers)
        return [analysis, *self.show(view, request)]

    def render_slider(self, analysis: Analysis | None, left: str, right: str, request: gr.Request = None):
        if analysis is None:
            return gr.skip()
        images = [slider_image(analysis, self.choices, left), slider_image(analysis, self.choices, right)]
        return tuple(self.ctx.pictures(images, request, "slider"))

    def download_zip(self, analysis: Analysis | None, request: gr.Request = None) -> str:
        """All raw outputs of the last analysis in one zip (README inside states the encodings), with
        each model's per-class geometry as CSV."""
        analysis = need(analysis)
        focal, _ = focal_in_use(analysis, None)
        extra = {
            f"{m}/class_geometry.csv": class_geometry(p, focal).to_csv(index=False).encode()
            for m, p in analysis.predictions.items()
        }
        return str(
            write_raw_zip(analysis.predictions, self.ctx.folder(request) / "hitts_studio_outputs.zip", extra)
        )

    def predict(self, image: Any, model: str, request: gr.Request = None):
        """Image -> one raw file per task (labels palette PNG, depth 16-bit PNG in mm, normals RGB PNG)
        and a JSON description of the encodings."""
        paths, info = api.predict_files(self.ctx.studio, image, model, self.ctx.folder(request))
        return [*(str(p) if p else None for p in paths), info]

    def _wire(self) -> None:
        gr.on(
            [self.left.change, self.right.change],
            guard("Slider", self.render_slider),
            [self.ctx.analysis, self.left, self.right],
            self.slider,
            trigger_mode="always_last",
            **PRIVATE,
        )
        self.zip_btn.click(
            guard("Download", self.download_zip),
            self.ctx.analysis,
            self.zip_file,
            api_name="download_zip",
            api_visibility="undocumented",
        )
        self.api_btn.click(
            guard("predict", self.predict),
            [self.ctx.image, self.api_model],
            [*self.api_files, self.api_json],
            api_name="predict",
        )
