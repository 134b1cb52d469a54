"""Gallery items: images with ground truth for the pseudo-label accuracy / coverage curves.

Two sources:

* synthetic samples shipped with the repo, ``exports/gallery/<name>/`` with ``rgb.png``,
  ``semseg.png`` (uint8 class index, 255 = ignore), ``depth.png`` (uint16 mm, 0 = missing) and
  optionally ``normals.png`` (uint8 RGB of (n + 1) / 2 * 255);
* the 10 real NYUD-v2 frames of ``nyuv2-mini`` (read in place, never copied): ``rgb_NNNN.png``,
  ``depth_NNNN.png`` (uint16 mm) and ``semantic13_NNNN.png`` (0 = ignore, 1..13 -> class 0..12).
  nyuv2-mini has no surface-normal ground truth, so none is claimed for it.

Ground truth is returned keyed by the NYUD task names (semseg, depth, normals) in the target
conventions of ``docs/architecture.md``: classes int64 with -1 = ignore, depth float32 metres with
0 = missing, normals (H, W, 3) float32 with the zero vector = missing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from hitts_demo import postprocess as pp
from hitts_demo.preprocess import LoadedImage, load_image

NYUV2_ENV = "HITTS_NYUV2_MINI"
SYNTHETIC_IGNORE = 255
NYUV2_IGNORE = 0
NYUV2_RGB = re.compile(r"^rgb_(\d{4})\.png$")
SYNTHETIC = "synthetic"
NYUV2 = "nyuv2-mini"


@dataclass(frozen=True)
class GalleryItem:
    """One gallery image and its ground-truth files (None where absent)."""

    name: str
    source: str
    rgb: Path
    semseg: Path | None = None
    depth: Path | None = None
    normals: Path | None = None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.source})"


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def resolve_nyuv2_dir(flag: str | None, repo_root: Path) -> Path | None:
    """``--nyuv2-mini`` flag, else ``$HITTS_NYUV2_MINI``, else ``../shared/data/nyuv2-mini``; None if absent."""
    candidate = flag or os.environ.get(NYUV2_ENV) or str(repo_root.parent / "shared" / "data" / "nyuv2-mini")
    path = Path(candidate).expanduser().resolve()
    return path if path.is_dir() else None


def list_gallery(gallery_dir: Path | None, nyuv2_dir: Path | None) -> list[GalleryItem]:
    """Synthetic items (sorted by name), then the nyuv2-mini frames (sorted by index)."""
    items: list[GalleryItem] = []
    if gallery_dir is not None and gallery_dir.is_dir():
        for folder in sorted(p for p in gallery_dir.iterdir() if p.is_dir()):
            if (folder / "rgb.png").is_file():
                items.append(
                    GalleryItem(
                        name=folder.name,
                        source=SYNTHETIC,
                        rgb=folder / "rgb.png",
                        semseg=_existing(folder / "semseg.png"),
                        depth=_existing(folder / "depth.png"),
                        normals=_existing(folder / "normals.png"),
                    )
                )
    if nyuv2_dir is not None and nyuv2_dir.is_dir():
        for path in sorted(nyuv2_dir.iterdir()):
            match = NYUV2_RGB.match(path.name)
            if match:
                index = match.group(1)
                items.append(
                    GalleryItem(
                        name=f"nyuv2-{index}",
                        source=NYUV2,
                        rgb=path,
                        semseg=_existing(nyuv2_dir / f"semantic13_{index}.png"),
                        depth=_existing(nyuv2_dir / f"depth_{index}.png"),
                    )
                )
    return items


def load_rgb(item: GalleryItem) -> LoadedImage:
    """The item's image, through the same checks as an upload."""
    return load_image(item.rgb)


def load_ground_truth(item: GalleryItem) -> dict[str, np.ndarray]:
    """Ground truth of the item keyed by task name (see the module docstring for conventions)."""
    gt: dict[str, np.ndarray] = {}
    if item.semseg is not None:
        raw = np.asarray(Image.open(item.semseg)).astype(np.int64)
        if raw.ndim == 3:
            raw = raw[..., 0]
        if item.source == NYUV2:
            gt["semseg"] = np.where(raw == NYUV2_IGNORE, pp.IGNORE_INDEX, raw - 1)
        else:
            gt["semseg"] = np.where(raw == SYNTHETIC_IGNORE, pp.IGNORE_INDEX, raw)
    if item.depth is not None:
        gt["depth"] = pp.png16_to_depth(np.asarray(Image.open(item.depth)))
    if item.normals is not None:
        gt["normals"] = pp.png_to_normals(np.asarray(Image.open(item.normals).convert("RGB")))
    return gt
