"""Cross-task consistency tab: derived vs predicted normals, boundaries vs depth edges, per-class geometry."""

from __future__ import annotations

from typing import Any

import gradio as gr

from hitts_demo.service import Analysis
from hitts_demo.ui.common import PRIVATE, Context, api_opts, guard, need
from hitts_demo.views.consistency import ConsistencyView, consistency_view

TITLE = "Cross-task consistency"


class ConsistencyTab:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        with gr.Row():
            self.model = gr.Radio(ctx.models, value=ctx.studio.primary, label="Model")
            self.focal = gr.Number(
                value=0, minimum=0, label="Focal length (px); 0 = the upload's EXIF, else NYU's"
            )
        self.markdown = gr.Markdown()
        with gr.Row():
            self.angle = gr.Image(
                label="Angle: normals from depth vs predicted normals (deg)", interactive=False
            )
            self.edges = gr.Image(
                label="Seg boundaries (magenta) vs depth edges (cyan), both white", interactive=False
            )
        self.table = gr.Dataframe(
            label="Per-class geometry (also in the raw-output zip as CSV)", interactive=False
        )
        gr.on(
            [self.model.change, self.focal.submit],
            guard("Consistency view", self.render),
            self.inputs,
            self.outputs,
            trigger_mode="always_last",
            **PRIVATE,
        )

    @property
    def inputs(self) -> list:
        return [self.ctx.analysis, self.model, self.focal]

    @property
    def outputs(self) -> list:
        return [self.angle, self.edges, self.table, self.markdown]

    def show(self, view: ConsistencyView, request: gr.Request | None) -> list[Any]:
        return [
            *self.ctx.pictures([view.angle_map, view.boundaries], request, "consistency"),
            view.table,
            view.markdown,
        ]

    def render(self, analysis: Analysis | None, model: str, focal: float | None, request: gr.Request = None):
        """The consistency view of one model from the kept analysis."""
        return self.show(consistency_view(need(analysis), model, focal), request)

    def after(self, done, named: bool = False) -> None:
        done.success(
            guard("Consistency view", self.render),
            self.inputs,
            self.outputs,
            **api_opts("render_consistency", named),
        )
