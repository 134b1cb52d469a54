"""Batch tab: up to 32 images -> one zip of raw outputs and a CSV summary (the ``predict_batch`` API)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from hitts_demo.ui.common import FILE_BOX_PX, Context, guard
from hitts_demo.views.batch import MAX_BATCH, BatchResult, predict_batch

TITLE = "Batch"


class BatchTab:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        gr.Markdown(
            f"Up to **{MAX_BATCH} images** through one model: one zip with every raw output per image (the "
            "encodings of the single-image zip) and `summary.csv`."
        )
        with gr.Row():
            self.files = gr.File(
                label="Images",
                file_count="multiple",
                file_types=["image"],
                type="filepath",
                elem_id="batch-files",
            )
            with gr.Column():
                self.model = gr.Dropdown(ctx.models, value=ctx.studio.primary, label="Model")
                self.button = gr.Button("Run batch", variant="primary")
        self.markdown = gr.Markdown()
        self.zip = gr.File(label="Batch outputs (zip)", interactive=False, height=FILE_BOX_PX)
        self.table = gr.Dataframe(label="Summary (summary.csv)", interactive=False, wrap=True)
        self.button.click(
            guard("Batch", self.predict_batch),
            [self.files, self.model],
            self.outputs,
            api_name="predict_batch",
            concurrency_limit=1,
        )

    @property
    def outputs(self) -> list:
        return [self.zip, self.table, self.markdown]

    def show(self, result: BatchResult) -> list[Any]:
        return [str(result.zip_path), result.summary, result.markdown]

    def predict_batch(
        self,
        images: list[str] | None,
        model: str,
        request: gr.Request = None,
        progress=gr.Progress(),  # noqa: B008 - Gradio's documented way to report progress
    ):
        """Images (up to 32) and a model -> a zip of every raw output per image and a CSV summary."""

        def report(fraction: float, text: str) -> None:
            progress(fraction, desc=text)

        return self.show(predict_batch(self.ctx.studio, images, model, self.ctx.folder(request), report))
