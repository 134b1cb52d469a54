"""Metrics tab: run records vs the paper, Delta_MTL on the paper's metric set, learning curves."""

from __future__ import annotations

from typing import Any

import gradio as gr

from hitts_demo.records import load_runs, log_keys
from hitts_demo.ui.common import PRIVATE, Context, guard
from hitts_demo.views.metrics import MetricsView, metrics_view, table_choices

TITLE = "Metrics"


class MetricsTab:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        studio = ctx.studio
        self.markdown = gr.Markdown()
        keys = log_keys(load_runs(studio.runs_dir))
        with gr.Row():
            self.curve_key = gr.Dropdown(
                keys, value=keys[0] if keys else None, label="Learning curve of", allow_custom_value=True
            )
            self.table_key = gr.Dropdown(
                table_choices(studio.paper_tables), value="table1", label="Paper table"
            )
            self.reload = gr.Button("Reload run records")
        self.runs = gr.Plot(label="Runs vs paper")
        self.delta = gr.Plot(label="Delta_MTL (paper's metric set)")
        self.table = gr.Dataframe(label="Delta_MTL per run and method", interactive=False, wrap=True)
        self.delta_all = gr.Plot(label="Secondary: Delta_MTL over every recorded metric")
        self.curves = gr.Plot(label="Learning curves")
        self.paper = gr.Plot(label="Paper table")

    @property
    def inputs(self) -> list:
        return [self.curve_key, self.table_key]

    @property
    def outputs(self) -> list:
        return [
            self.runs,
            self.delta,
            self.table,
            self.delta_all,
            self.paper,
            self.curves,
            self.curve_key,
            self.markdown,
        ]

    def show(self, view: MetricsView) -> list[Any]:
        picker = gr.Dropdown(choices=list(view.keys), value=view.key)
        return [
            view.runs,
            view.delta,
            view.table,
            view.delta_all,
            view.paper,
            view.curves,
            picker,
            view.markdown,
        ]

    def render(self, curve_key: str | None, table_key: str | None):
        """Run records vs the paper, Delta_MTL, one paper table and learning curves."""
        studio = self.ctx.studio
        return self.show(metrics_view(studio.runs_dir, studio.paper_tables, curve_key, table_key))

    def wire(self, demo: gr.Blocks) -> None:
        fn = guard("Metrics", self.render)
        self.reload.click(
            fn, self.inputs, self.outputs, api_name="render_metrics", api_visibility="undocumented"
        )
        gr.on([self.curve_key.input, self.table_key.input], fn, self.inputs, self.outputs, **PRIVATE)
        demo.load(fn, self.inputs, self.outputs, **PRIVATE)
