"""3D tab: point cloud of the predicted depth (GLB viewer, PLY download)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from hitts_demo.pointcloud import NYU_WIDTH_PX, default_focal
from hitts_demo.service import Analysis
from hitts_demo.ui.common import FILE_BOX_PX, PRIVATE, Context, guard, need
from hitts_demo.views.cloud import COLOUR_BY, CloudView, cloud_view

TITLE = "3D"
FRONT_VIEW = (90, 90, None)
"""Model3D camera (alpha, beta, radius): looking from the camera centre along the optical axis."""


class CloudTab:
    def __init__(self, ctx: Context, tab: gr.Tab) -> None:
        self.ctx, self.tab = ctx, tab
        with gr.Row():
            self.model = gr.Radio(ctx.models, value=ctx.studio.primary, label="Model")
            self.focal = gr.Number(
                value=0,
                minimum=0,
                label="Focal length (px); 0 = the upload's EXIF, else NYU's "
                f"{default_focal(NYU_WIDTH_PX):.1f} px at 640 wide scaled to the width",
            )
            self.min_conf = gr.Slider(
                0.0, 0.99, value=0.0, step=0.01, label="Keep points with depth confidence above"
            )
            self.colour_by = gr.Radio(list(COLOUR_BY), value="class", label="Colour points by")
            self.button = gr.Button("Rebuild point cloud")
        self.markdown = gr.Markdown()
        self.view = gr.Model3D(
            label="Point cloud (GLB)",
            display_mode="point_cloud",
            clear_color=(1, 1, 1, 1),
            camera_position=FRONT_VIEW,
            height=520,
        )
        self.ply = gr.File(label="PLY download", interactive=False, height=FILE_BOX_PX)
        fn = guard("3D view", self.render)
        self.button.click(fn, self.inputs, self.outputs, api_name="render_3d", api_visibility="undocumented")
        gr.on(
            [tab.select, self.colour_by.change, self.model.change, self.min_conf.release],
            fn,
            self.inputs,
            self.outputs,
            trigger_mode="always_last",
            **PRIVATE,
        )

    @property
    def inputs(self) -> list:
        return [self.ctx.analysis, self.model, self.focal, self.colour_by, self.min_conf]

    @property
    def outputs(self) -> list:
        return [self.view, self.ply, self.markdown]

    def show(self, view: CloudView) -> list[Any]:
        return [str(view.glb), str(view.ply), view.markdown]

    def render(
        self,
        analysis: Analysis | None,
        model: str,
        focal: float | None,
        colour_by: str,
        min_conf: float = 0.0,
        request: gr.Request = None,
    ):
        """Point cloud of the predicted depth: GLB for the viewer, PLY for download."""
        folder = self.ctx.folder(request)
        return self.show(cloud_view(need(analysis), model, focal, colour_by, folder, float(min_conf or 0.0)))

    def render_if_open(
        self,
        open_tab: str,
        analysis: Analysis | None,
        model: str,
        focal: float | None,
        colour_by: str,
        min_conf: float = 0.0,
        request: gr.Request = None,
    ):
        """After a new analysis: refresh only if the 3D tab is open (else on opening it; gr.Model3D does
        not draw a value that arrived while its tab was hidden)."""
        if open_tab != TITLE:
            return gr.skip(), gr.skip(), gr.skip()
        return self.render(analysis, model, focal, colour_by, min_conf, request)

    def after(self, done, open_tab: gr.State) -> None:
        done.success(guard("3D view", self.render_if_open), [open_tab, *self.inputs], self.outputs, **PRIVATE)
