"""Pseudo labels tab."""

from __future__ import annotations

from typing import Any

import gradio as gr

from hitts_demo.service import Analysis
from hitts_demo.ui.common import PRIVATE, Context, api_opts, guard, need
from hitts_demo.views.pseudo import PseudoView, pseudo_view

TITLE = "Pseudo labels"


class PseudoTab:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        studio = ctx.studio
        primary = studio.manifests.get(studio.primary) if studio.primary else None
        self.tasks = list(primary.task_names) if primary else []
        self.markdown = gr.Markdown()
        with gr.Row():
            self.model = gr.Radio(ctx.models, value=studio.primary, label="Model")
            self.taus = [
                gr.Slider(0.0, 0.99, value=primary.task(t).tau, step=0.01, label=f"tau {t}")
                for t in self.tasks
            ]
        with gr.Row():
            self.panels = [gr.Image(label=f"pseudo label {t}", interactive=False) for t in ctx.task_slots]
        self.curve = gr.Plot(label="Accuracy vs coverage")
        gr.on(
            [self.model.change, *[s.change for s in self.taus]],
            guard("Pseudo-label view", self.render),
            self.inputs,
            self.outputs,
            trigger_mode="always_last",
            **PRIVATE,
        )

    @property
    def inputs(self) -> list:
        return [self.ctx.analysis, self.model, *self.taus]

    @property
    def outputs(self) -> list:
        return [*self.panels, self.markdown, self.curve]

    def show(self, view: PseudoView, request: gr.Request | None) -> list[Any]:
        images = self.ctx.pictures([view.panels.get(t) for t in self.ctx.task_slots], request, "pseudo")
        return [*images, view.markdown, view.curve]

    def render(self, request: gr.Request, analysis: Analysis | None, model: str, *taus: float):
        """Pseudo labels at the given tau per task, coverage, and accuracy vs coverage with ground truth.

        (``request`` comes first: Gradio injects it only among the positional parameters.)"""
        return self.show(pseudo_view(need(analysis), model, dict(zip(self.tasks, taus))), request)

    def after(self, done, named: bool = False) -> None:
        """Refresh once a new analysis succeeded."""
        done.success(
            guard("Pseudo-label view", self.render),
            self.inputs,
            self.outputs,
            **api_opts("render_pseudo", named),
        )
