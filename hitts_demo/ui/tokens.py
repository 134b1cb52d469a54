"""Confidence and tokens tab."""

from __future__ import annotations

from typing import Any

import gradio as gr

from hitts_demo.service import Analysis
from hitts_demo.ui.common import PRIVATE, Context, api_opts, guard, need
from hitts_demo.views.common import token_labels
from hitts_demo.views.tokens import MAX_OVER_CLASSES, TokensView, tokens_view

TITLE = "Confidence and tokens"


class TokensTab:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        studio = ctx.studio
        primary = studio.manifests.get(studio.primary) if studio.primary else None
        tasks = list(primary.task_names) if primary else []
        self.markdown = gr.Markdown()
        with gr.Row():
            self.model = gr.Radio(ctx.models, value=studio.primary, label="Model")
            self.task = gr.Dropdown(tasks, value=tasks[0] if tasks else None, label="Fine tokens of task")
            first = [MAX_OVER_CLASSES] + (token_labels(primary.task(tasks[0])) if tasks else [])
            self.fine_class = gr.Dropdown(first, value=first[0], label="Class / bin / centre")
        with gr.Row():
            self.confidence = [gr.Image(label=f"confidence {t}", interactive=False) for t in ctx.task_slots]
        with gr.Row():
            self.global_maps = [
                gr.Image(label=f"global-token map {t}", interactive=False) for t in ctx.task_slots
            ]
        with gr.Row():
            self.fine = gr.Image(label="fine-token score map", interactive=False)
            self.affinity = gr.Plot(label="Task affinity A")
        self.self_affinity = gr.Plot(label="Fine tokens: self-affinity")
        self.pca = gr.Plot(label="Fine tokens: PCA")
        self._wire()

    @property
    def inputs(self) -> list:
        return [self.ctx.analysis, self.model, self.task, self.fine_class]

    @property
    def outputs(self) -> list:
        return [
            *self.confidence,
            *self.global_maps,
            self.fine,
            self.affinity,
            self.self_affinity,
            self.pca,
            self.markdown,
        ]

    def show(self, view: TokensView, request: gr.Request | None) -> list[Any]:
        slots = self.ctx.task_slots
        images = (
            [view.confidence.get(t) for t in slots] + [view.global_maps.get(t) for t in slots] + [view.fine]
        )
        return [
            *self.ctx.pictures(images, request, "tokens"),
            view.affinity,
            view.self_affinity,
            view.pca,
            view.markdown,
        ]

    def render(
        self,
        analysis: Analysis | None,
        model: str,
        task: str,
        class_choice: str | None,
        request: gr.Request = None,
    ):
        """Confidence, global-token and fine-token maps and the token plots of one model."""
        return self.show(tokens_view(need(analysis), model, task, class_choice), request)

    def class_picker(self, model: str, task: str):
        m = self.ctx.studio.manifests.get(model)
        choices = token_labels(m.task(task)) if m and task in m.task_names else []
        return gr.Dropdown(choices=[MAX_OVER_CLASSES, *choices], value=MAX_OVER_CLASSES)

    def after(self, done, named: bool = False) -> None:
        """Refresh once a new analysis succeeded."""
        done.success(
            guard("Tokens view", self.render), self.inputs, self.outputs, **api_opts("render_tokens", named)
        )

    def _wire(self) -> None:
        self.task.change(self.class_picker, [self.model, self.task], self.fine_class, **PRIVATE)
        gr.on(
            [self.model.change, self.fine_class.change],
            guard("Tokens view", self.render),
            self.inputs,
            self.outputs,
            trigger_mode="always_last",
            **PRIVATE,
        )
