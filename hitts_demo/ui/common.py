"""What every tab shares: the context (studio, session files, the kept analysis), the error guard and
the fast picture encoder."""

from __future__ import annotations

import base64
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from gradio import component_meta

from hitts_demo import visualize as vis
from hitts_demo.downloads import SessionFiles
from hitts_demo.manifest import ExportError
from hitts_demo.preprocess import DEFAULT_LIMITS, InputError
from hitts_demo.service import Analysis, Studio

log = logging.getLogger("hitts_studio")
PRIVATE = {"api_visibility": "private"}
FILE_BOX_PX = 90


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


def guard(action: str, fn: Callable) -> Callable:
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


def api_opts(api_name: str, named: bool) -> dict[str, Any]:
    """An event's API name: callable but undocumented once (``named``), private on every other trigger."""
    return {"api_name": api_name, "api_visibility": "undocumented"} if named else dict(PRIVATE)


def need(analysis: Analysis | None) -> Analysis:
    if analysis is None:
        raise InputError("upload an image or pick a gallery item first")
    return analysis


@dataclass
class Context:
    """Shared by the tabs: the studio, per-session files, the kept analysis (``gr.State``) and the
    header's image box and precision picker."""

    studio: Studio
    files: SessionFiles
    analysis: gr.State
    image: gr.Image
    variant: gr.Dropdown

    @property
    def models(self) -> list[str]:
        return self.studio.model_names

    @property
    def task_slots(self) -> list[str]:
        return self.studio.api_task_names()

    def folder(self, request: gr.Request | None) -> Path:
        return self.files.new_dir(request.session_hash if request is not None else None)

    def pictures(
        self, images: list[np.ndarray | None], request: gr.Request | None, stem: str
    ) -> list[str | None]:
        """Encode pictures once, fast (WebP, method 0), into this session's folder."""
        out_dir = self.folder(request)
        return [vis.save_webp(img, out_dir / f"{stem}_{i}.webp") for i, img in enumerate(images)]
