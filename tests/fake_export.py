"""A tiny stand-in for the trainer's ONNX export, honouring the export contract exactly.

``make_fake_export(out_dir)`` builds a small torch module whose outputs have the names, shapes and
dtypes of ``docs/architecture.md`` ("Export (ONNX) outputs"), exports it with ``torch.onnx.export``
(opset 18, dynamo exporter first, the legacy exporter as a fall-back) and writes a matching
``manifest.json``. The weights are seeded random numbers mixed with the pixel colours and
coordinates, so the maps have some structure to look at; nothing here is trained.

Also writes the other files the dashboard reads: a synthetic gallery item
(``make_fake_gallery_item``) and run records (``make_fake_runs``).

Only tests and local manual runs import this module (it imports torch; ``hitts_demo`` never does).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
OPSET = 18
NYUD_CLASSES = (
    "bed", "books", "ceiling", "chair", "floor", "furniture", "objects",
    "picture", "sofa", "table", "tv", "wall", "window",
)  # fmt: skip
NYUD_PALETTE = (
    (0, 0, 255), (232, 88, 47), (0, 217, 0), (148, 0, 240), (222, 241, 23), (255, 205, 205),
    (0, 223, 228), (106, 135, 204), (116, 28, 41), (240, 35, 235), (0, 166, 156), (249, 139, 0),
    (225, 228, 194),
)  # fmt: skip
DEPTH_BINS = 30
DEPTH_RANGE_M = (0.5, 10.0)
NORMAL_CENTRES = 20
FEATURE_STRIDE = 8
DECODER_STRIDE = 4
TOKEN_DIM = 16
LOGIT_GAIN = 4.0
"""Scale of the fake logits: large enough for confidences to spread over (0, 1)."""


def nyud_task_entries(seed: int = 0) -> list[dict]:
    """Manifest ``tasks`` entries for the NYUD-v2 tasks (semseg 13, depth 30 log bins, normals 20)."""
    rng = np.random.default_rng(seed)
    lo, hi = DEPTH_RANGE_M
    bins = np.exp(np.linspace(math.log(lo), math.log(hi), DEPTH_BINS))
    centres = rng.normal(size=(NORMAL_CENTRES, 3))
    centres[:, 2] = -np.abs(centres[:, 2])  # facing the camera (camera looks along +z)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return [
        {
            "name": "semseg",
            "kind": "segmentation",
            "num_outputs": len(NYUD_CLASSES),
            "class_names": list(NYUD_CLASSES),
            "palette": [list(c) for c in NYUD_PALETTE],
            "tau": 0.9,
        },
        {
            "name": "depth",
            "kind": "depth",
            "num_outputs": DEPTH_BINS,
            "bin_centres": [round(float(b), 6) for b in bins],
            "tau": 0.45,
        },
        {
            "name": "normals",
            "kind": "normals",
            "num_outputs": NORMAL_CENTRES,
            "normal_centres": [[round(float(v), 6) for v in c] for c in centres],
            "tau": 0.6,
        },
    ]


class FakeMultiTaskNet(nn.Module):
    """Seeded random multi-task network with the export's output contract.

    Per task ``t``: ``t_pred``, ``t_confidence`` (max softmax of G'), ``t_label`` (argmax of G');
    with tokens: ``t_global_score`` (1, h, w), ``t_fine_scores`` (1, C_p, h, w), ``t_fine_tokens``
    (C_p, D) and one ``affinity`` (T, T) with rows summing to 1.
    """

    def __init__(self, tasks: list[dict], has_tokens: bool, token_dim: int, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.tasks = tasks
        self.has_tokens = has_tokens
        in_ch = 5  # RGB + y + x
        self.feature = nn.Conv2d(in_ch, token_dim, 1)
        self.heads = nn.ModuleList(
            nn.Conv2d(in_ch + token_dim, t["num_outputs"], 3, padding=1) for t in tasks
        )
        self.theta = nn.Parameter(torch.randn(len(tasks), token_dim, generator=gen))
        self.fine = nn.ParameterList(
            nn.Parameter(torch.randn(t["num_outputs"], token_dim, generator=gen)) for t in tasks
        )
        self.query = nn.Linear(token_dim, token_dim, bias=False)
        self.key = nn.Linear(token_dim, token_dim, bias=False)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        for i, t in enumerate(tasks):
            if t["kind"] == "depth":
                self.register_buffer(f"centres_{i}", torch.tensor(t["bin_centres"], dtype=torch.float32))
            elif t["kind"] == "normals":
                self.register_buffer(f"centres_{i}", torch.tensor(t["normal_centres"], dtype=torch.float32))

    def output_names(self) -> list[str]:
        """ONNX output names, in the order ``forward`` returns them."""
        names = []
        for t in self.tasks:
            names += [f"{t['name']}_pred", f"{t['name']}_confidence", f"{t['name']}_label"]
            if self.has_tokens:
                names += [f"{t['name']}_global_score", f"{t['name']}_fine_scores", f"{t['name']}_fine_tokens"]
        if self.has_tokens:
            names.append("affinity")
        return names

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        _, _, height, width = image.shape
        ys = torch.linspace(-1.0, 1.0, height).view(1, 1, height, 1).expand(1, 1, height, width)
        xs = torch.linspace(-1.0, 1.0, width).view(1, 1, 1, width).expand(1, 1, height, width)
        x = torch.cat([image, ys, xs], dim=1)  # (1, 5, H, W)
        mid = F.avg_pool2d(x, DECODER_STRIDE)  # (1, 5, H/4, W/4)
        small = F.avg_pool2d(x, FEATURE_STRIDE)  # (1, 5, h, w)
        feat = torch.tanh(self.feature(small))  # (1, D, h, w)
        affinity = torch.softmax(
            self.query(self.theta) @ self.key(self.theta).T / math.sqrt(feat.shape[1]), -1
        )
        mixed_theta = affinity @ self.theta  # (T, D)
        outputs: list[torch.Tensor] = []
        for i, (t, head) in enumerate(zip(self.tasks, self.heads)):
            gate = torch.sigmoid(
                (feat * mixed_theta[i].view(1, -1, 1, 1)).sum(1, keepdim=True)
            )  # (1, 1, h, w)
            task_feat = feat * gate
            tokens = self.fine[i] + 0.1 * task_feat.mean(dim=(2, 3))  # (C_p, D)
            fine_scores = F.softplus(torch.einsum("kd,bdhw->bkhw", tokens, task_feat))  # (1, C_p, h, w)
            # decoder at stride 4, logits upsampled to the input size (as real dense heads do)
            up = F.interpolate(task_feat, size=mid.shape[2:], mode="bilinear", align_corners=False)
            low = LOGIT_GAIN * head(torch.cat([mid, up], dim=1))  # (1, C_p, H/4, W/4)
            logits = F.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)
            # softmax over channels written out: ONNX Runtime's CPU Softmax on axis 1 of NCHW is about
            # 10x slower (it transposes), which dominated this model's run time
            unnorm = torch.exp(logits - logits.amax(dim=1, keepdim=True))
            prob = unnorm / unnorm.sum(dim=1, keepdim=True)
            confidence, label = prob.max(dim=1)  # (1, H, W)
            if t["kind"] == "depth":
                centres = getattr(self, f"centres_{i}")
                pred = (prob * centres.view(1, -1, 1, 1)).sum(1, keepdim=True)  # (1, 1, H, W) metres
            elif t["kind"] == "normals":
                centres = getattr(self, f"centres_{i}")
                vec = torch.einsum("bkhw,kc->bchw", prob, centres)  # (1, 3, H, W)
                pred = vec / vec.norm(dim=1, keepdim=True).clamp_min(1e-6)
            else:
                pred = label
            outputs += [pred, confidence, label]
            if self.has_tokens:
                outputs += [gate[:, 0], fine_scores, tokens]
        if self.has_tokens:
            outputs.append(affinity)
        return tuple(outputs)


def _export(model: nn.Module, dummy: torch.Tensor, path: Path, output_names: list[str], opset: int) -> None:
    """``torch.onnx.export`` with the dynamo exporter, the legacy TorchScript one as a fall-back."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model, (dummy,), str(path), input_names=["image"], output_names=output_names,
                opset_version=opset, dynamo=True, optimize=True, verbose=False,
            )  # fmt: skip
        except Exception:  # noqa: BLE001 - any dynamo failure: retry with the legacy exporter
            torch.onnx.export(
                model, (dummy,), str(path), input_names=["image"], output_names=output_names,
                opset_version=opset, dynamo=False,
            )  # fmt: skip
    _inline_external_data(path)


def _inline_external_data(path: Path) -> None:
    """Fold a ``.data`` side file (some exporter versions write one) back into the ``.onnx``."""
    side = path.with_name(path.name + ".data")
    if side.exists():
        import onnx

        model = onnx.load(str(path), load_external_data=True)
        onnx.save_model(model, str(path), save_as_external_data=False)
        side.unlink()


def make_fake_export(
    out_dir: str | Path,
    arch: str = "hitts",
    height: int = 64,
    width: int = 96,
    *,
    name: str | None = None,
    tasks: list[dict] | None = None,
    token_dim: int = TOKEN_DIM,
    seed: int = 0,
    opset: int = OPSET,
) -> Path:
    """Write ``model.onnx`` + ``manifest.json`` into ``out_dir`` and return ``out_dir``.

    arch: "hitts" exports the token outputs (``has_tokens``: true); "mtl"/"stl" only per-task
    pred/confidence/label. height, width: the model input size (multiples of 8).
    """
    if height % FEATURE_STRIDE or width % FEATURE_STRIDE:
        raise ValueError(f"height and width must be multiples of {FEATURE_STRIDE}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tasks = tasks if tasks is not None else nyud_task_entries(seed)
    has_tokens = arch == "hitts"
    model = FakeMultiTaskNet(tasks, has_tokens, token_dim, seed).eval()
    dummy = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(seed))
    names = model.output_names()
    _export(model, dummy, out / "model.onnx", names, opset)
    with torch.no_grad():
        shapes = {n: list(v.shape) for n, v in zip(names, model(dummy))}
    manifest = {
        "format_version": 1,
        "name": name or arch,
        "arch": arch,
        "backbone": "fake",
        "onnx_file": "model.onnx",
        "opset": opset,
        "input": {
            "name": "image",
            "height": height,
            "width": width,
            "mean": list(IMAGE_MEAN),
            "std": list(IMAGE_STD),
        },
        "tasks": tasks,
        "outputs": shapes,
        "has_tokens": has_tokens,
        "has_affinity": has_tokens,
        "trained_on": {
            "dataset": "synthetic",
            "setting": "one-label",
            "num_train": 0,
            "notes": "fake test export",
        },
        "metrics": {"semseg": {"miou": 0.1, "pacc": 0.2}, "delta_mtl": 0.0},
        "parity": {},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out


def make_fake_gallery_item(gallery_dir: str | Path, name: str = "synthetic_000", height: int = 120, width: int = 160,
                           seed: int = 0) -> Path:  # fmt: skip
    """A synthetic gallery item: ``rgb.png``, ``semseg.png`` (255 = ignore), ``depth.png`` (uint16 mm,
    0 = missing) and ``normals.png`` (uint8 RGB, (n + 1) / 2 * 255)."""
    rng = np.random.default_rng(seed)
    item = Path(gallery_dir) / name
    item.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 128)], -1).astype(np.uint8)
    rgb = np.clip(rgb.astype(int) + rng.integers(-10, 10, rgb.shape), 0, 255).astype(np.uint8)
    semseg = ((yy * 3) // height * 4 + (xx * 4) // width).astype(np.uint8) % len(NYUD_CLASSES)
    semseg[:4] = 255
    depth_mm = (1000 + 4000 * yy / height).astype(np.uint16)
    depth_mm[:, :3] = 0
    normals = np.zeros((height, width, 3), np.float32)
    normals[..., 1] = -1.0
    normals[: height // 2, :, :] = (0.0, 0.0, -1.0)
    Image.fromarray(rgb).save(item / "rgb.png")
    Image.fromarray(semseg).save(item / "semseg.png")
    Image.fromarray(depth_mm).save(item / "depth.png")
    Image.fromarray(np.round((normals + 1) / 2 * 255).astype(np.uint8)).save(item / "normals.png")
    return item


def make_fake_runs(runs_dir: str | Path, run_name: str = "fake-run", epochs: int = 4) -> Path:
    """A run record: ``metrics.json`` (stl/mtl/hitts/hitts_pseudo) and a ``log.jsonl`` learning curve."""
    run = Path(runs_dir) / run_name
    run.mkdir(parents=True, exist_ok=True)

    def block(miou: float, abs_err: float, mean_angle: float, delta: float) -> dict:
        return {
            "semseg": {"miou": miou, "pacc": miou + 0.2},
            "depth": {"abs_err": abs_err, "rel_err": abs_err / 3, "rmse": abs_err * 1.4},
            "normals": {"mean_angle": mean_angle, "median_angle": mean_angle - 5, "within_11_25": 0.2},
            "delta_mtl": delta,
        }

    metrics = {
        "stl": block(0.20, 0.80, 35.0, 0.0),
        "mtl": block(0.22, 0.75, 36.0, 1.0),
        "hitts": block(0.25, 0.70, 33.0, 6.0),
        "hitts_pseudo": block(0.27, 0.66, 32.0, 9.0),
    }
    (run / "metrics.json").write_text(json.dumps(metrics, indent=1))
    lines = []
    for epoch in range(epochs):
        lines.append({"epoch": epoch, "split": "train", "L_s": 2.0 / (epoch + 1), "total": 2.5 / (epoch + 1)})
        lines.append(
            {"epoch": epoch, "split": "val", "semseg/miou": 0.05 * epoch, "depth/abs_err": 1 - 0.1 * epoch}
        )
    (run / "log.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{not json\n")
    return run


def make_fake_exports_root(root: str | Path, height: int = 64, width: int = 96) -> Path:
    """A complete ``exports/`` folder: ``hitts/`` and ``mtl/`` fake exports, one gallery item, one run."""
    root = Path(root)
    make_fake_export(root / "hitts", "hitts", height, width, seed=0)
    make_fake_export(root / "mtl", "mtl", height, width, seed=1, tasks=nyud_task_entries(0))
    make_fake_gallery_item(root / "gallery")
    make_fake_runs(root / "runs")
    return root


def cached_fake_exports_root(height: int = 64, width: int = 96) -> Path:
    """``make_fake_exports_root`` built once per version of this file and reused (exporting takes seconds).

    The cache lives in the system temp folder, keyed by a hash of this file and the sizes; it is
    built in a scratch folder and renamed into place, so a crash never leaves a half-built cache.
    """
    import hashlib
    import shutil
    import tempfile

    digest = hashlib.sha256(Path(__file__).read_bytes() + f"{height}x{width}".encode()).hexdigest()[:16]
    final = Path(tempfile.gettempdir()) / f"hitts_fake_exports_{digest}"
    if (final / "hitts" / "manifest.json").is_file() and (final / "mtl" / "manifest.json").is_file():
        return final
    scratch = Path(tempfile.mkdtemp(prefix="hitts_fake_build_"))
    make_fake_exports_root(scratch, height, width)
    try:
        scratch.rename(final)
    except OSError:  # built concurrently by someone else: use theirs
        shutil.rmtree(scratch, ignore_errors=True)
    return final
