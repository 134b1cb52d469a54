"""Pixel inspector tab: click the image (or any prediction panel) to see every model's outputs there."""

from __future__ import annotations

from typing import Any

import gradio as gr

from hitts_demo.service import Analysis
from hitts_demo.ui.common import PRIVATE, Context, guard, need
from hitts_demo.views.inspector import PixelReport, inspect_image, inspect_json, inspect_pixel

TITLE = "Pixel inspector"


class InspectorTab:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        gr.Markdown(
            "Click a pixel: each task's value, confidence and global-token gate for every model, and the "
            "fine-token score of every class / bin / centre (HiTTs). Read from the kept outputs: no model "
            "runs."
        )
        with gr.Row():
            self.image = gr.Image(
                label="Click a pixel", interactive=False, format="webp", height=420, elem_id="inspector-image"
            )
            self.markdown = gr.Markdown()
        self.figure = gr.Plot(label="Fine-token scores at the pixel")
        self.json = gr.JSON(label="At the pixel (the `inspect` endpoint's answer, per model)")
        self.image.select(guard("Inspector", self.click), self.ctx.analysis, self.outputs, **PRIVATE)
        self._api_box()

    def _api_box(self) -> None:
        with gr.Accordion("API: the `inspect` endpoint", open=False):
            gr.Markdown(
                "`Client(URL).predict(handle_file('photo.jpg'), 'hitts', 120, 80, api_name='/inspect')` runs "
                "the model once and returns the JSON above for pixel (x, y) of the uploaded image."
            )
            with gr.Row():
                self.api_model = gr.Dropdown(self.ctx.models, value=self.ctx.studio.primary, label="Model")
                self.api_x = gr.Number(value=0, precision=0, label="x (pixels)")
                self.api_y = gr.Number(value=0, precision=0, label="y (pixels)")
                self.api_btn = gr.Button("Run inspect")
            self.api_json = gr.JSON(label="inspect")
        self.api_btn.click(
            guard("inspect", self.inspect),
            [self.ctx.image, self.api_model, self.api_x, self.api_y],
            self.api_json,
            api_name="inspect",
        )

    @property
    def outputs(self) -> list:
        return [self.image, self.markdown, self.figure, self.json]

    def show(self, report: PixelReport, request: gr.Request | None) -> list[Any]:
        marked = self.ctx.pictures([report.marked], request, "inspect")[0]
        return [marked, report.markdown, report.figure, {m: inspect_json(report, m) for m in report.models}]

    def click(self, analysis: Analysis | None, evt: gr.SelectData, request: gr.Request = None):
        """A click on the image: (x, y) in the analysed image's pixels."""
        x, y = evt.index[:2]
        return self.show(inspect_pixel(need(analysis), x, y), request)

    def click_panel(self, analysis: Analysis | None, evt: gr.SelectData, request: gr.Request = None):
        """A click on a prediction panel (image on top, legend below): inspect it and open this tab."""
        analysis = need(analysis)
        x, y = evt.index[:2]
        h, w = analysis.image.shape[:2]
        if not (0 <= x < w and 0 <= y < h):
            return [gr.skip()] * (len(self.outputs) + 1)
        return [*self.show(inspect_pixel(analysis, x, y), request), gr.Tabs(selected=TITLE)]

    def hook(self, panel: gr.Image, tabs: gr.Tabs) -> None:
        panel.select(
            guard("Inspector", self.click_panel), self.ctx.analysis, [*self.outputs, tabs], **PRIVATE
        )

    def reset(self, analysis: Analysis | None, request: gr.Request = None):
        """A new analysis: show its image, clear the last report."""
        if analysis is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return self.ctx.pictures([analysis.image], request, "inspect")[0], "", None, None

    def after(self, done) -> None:
        done.success(self.reset, self.ctx.analysis, self.outputs, **PRIVATE)

    def inspect(self, image: Any, model: str, x: float, y: float) -> dict[str, Any]:
        """Image, model, pixel (x, y) of the uploaded image -> every task's value, confidence, gate and
        fine-token scores there (JSON)."""
        return inspect_image(self.ctx.studio, image, model, x, y)
