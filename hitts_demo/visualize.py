"""Pictures of the outputs: colour maps, overlays, legends, heatmaps (numpy + Pillow only).

Colour maps are compact lookup tables: anchor colours of Turbo (Google's perceptual rainbow, for
depth) and Inferno (for confidences and scores), interpolated linearly to 256 entries.

Each picture comes in two forms: the bare map at the image's size (for the image slider, which
needs two aligned images) and a "panel" with a legend strip appended below (class swatches with
their share of pixels, or a colour bar with ticks in metres / probability).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from hitts_demo.manifest import TaskInfo

TURBO_ANCHORS = (
    "#30123b",
    "#4145ab",
    "#4675ed",
    "#39a2fc",
    "#1bcfd4",
    "#24eca6",
    "#61fc6c",
    "#a4fc3b",
    "#d1e834",
    "#f3c63a",
    "#fe9b2d",
    "#f36315",
    "#d93806",
    "#b11901",
    "#7a0402",
)
"""Turbo sampled at 15 evenly spaced points (Google, Apache-2.0; the same anchors as plotly's Turbo)."""
INFERNO_ANCHORS = (
    "#000004",
    "#1b0c41",
    "#4a0c6b",
    "#781c6d",
    "#a52c60",
    "#cf4446",
    "#ed6925",
    "#fb9b06",
    "#f7d13d",
    "#fcffa4",
)
"""Inferno sampled at 10 evenly spaced points (matplotlib's perceptually uniform map, CC0)."""
LUT_SIZE = 256
OVERLAY_ALPHA = 0.55
IGNORED_GREY = 128
HATCH_PERIOD = 8
HATCH_WIDTH = 2
LEGEND_FONT_PX = 14
LEGEND_PAD = 6
SWATCH_PX = 14
COLOUR_BAR_PX = 14
MIN_PANEL_WIDTH = 360
DEPTH_PERCENTILES = (2.0, 98.0)
"""Depth colour range: these percentiles of the predicted depth (robust to a few outliers)."""


def _hex_to_rgb(code: str) -> tuple[int, int, int]:
    return int(code[1:3], 16), int(code[3:5], 16), int(code[5:7], 16)


def make_lut(anchors: tuple[str, ...], size: int = LUT_SIZE) -> np.ndarray:
    """(size, 3) uint8 table interpolated linearly between anchor colours."""
    rgb = np.asarray([_hex_to_rgb(a) for a in anchors], np.float64)
    x = np.linspace(0.0, 1.0, len(anchors))
    xs = np.linspace(0.0, 1.0, size)
    return np.stack([np.interp(xs, x, rgb[:, c]) for c in range(3)], -1).round().astype(np.uint8)


TURBO = make_lut(TURBO_ANCHORS)
INFERNO = make_lut(INFERNO_ANCHORS)


def apply_colormap(values: np.ndarray, vmin: float, vmax: float, lut: np.ndarray = TURBO) -> np.ndarray:
    """(H, W) values -> (H, W, 3) uint8 through ``lut`` over [vmin, vmax] (NaN -> black)."""
    values = np.asarray(values)
    span = max(vmax - vmin, 1e-12)
    nan = np.isnan(values)
    has_nan = bool(nan.any())
    t = np.subtract(values, vmin, dtype=np.result_type(values.dtype, np.float32))
    if has_nan:
        t[nan] = 0.0
    t /= span
    np.clip(t, 0.0, 1.0, out=t)
    t *= len(lut) - 1
    np.rint(t, out=t)
    out = np.take(lut, t.astype(np.intp), axis=0)
    if has_nan:
        out[nan] = 0
    return out


def default_palette(n: int) -> np.ndarray:
    """``n`` distinct colours (golden-ratio hues) for tasks whose manifest has no palette."""
    hues = (np.arange(n) * 0.618033988749895) % 1.0
    return np.stack([hsv_to_rgb(h, 0.65, 0.95) for h in hues]).astype(np.uint8)


def hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.round(np.array([r, g, b]) * 255)


def task_palette(task: TaskInfo) -> np.ndarray:
    """(C_p, 3) uint8 colours of a task's classes / bins / normal centres."""
    if task.palette:
        return np.asarray(task.palette, np.uint8)
    if task.kind == "depth":
        return TURBO[np.linspace(0, LUT_SIZE - 1, task.num_outputs).round().astype(int)]
    if task.kind == "normals":
        return normals_to_rgb(np.asarray(task.normal_centres, np.float32))
    return default_palette(task.num_outputs)


def colorize_labels(label: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 (indices outside the palette -> grey)."""
    lut = np.concatenate([palette, [[IGNORED_GREY] * 3]]).astype(np.uint8)
    index = np.asarray(label).astype(np.int64, copy=False).view(np.uint64)  # negative -> huge
    return np.take(lut, np.minimum(index, len(palette)), axis=0)


def overlay(image: np.ndarray, colours: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """Blend ``colours`` over ``image`` with opacity ``alpha``."""
    mixed = image.astype(np.float32) * (1.0 - alpha) + colours.astype(np.float32) * alpha
    return np.clip(mixed.round(), 0, 255).astype(np.uint8)


def normals_to_rgb(normals: np.ndarray) -> np.ndarray:
    """Unit normals (..., 3) -> uint8 RGB of (n + 1) / 2."""
    t = np.add(normals, 1.0, dtype=np.result_type(np.asarray(normals).dtype, np.float32))
    t /= 2.0
    t *= 255.0
    np.rint(t, out=t)
    np.clip(t, 0, 255, out=t)
    return t.astype(np.uint8)


def depth_range(depth: np.ndarray) -> tuple[float, float]:
    """Robust colour range of a depth map (percentiles of the valid values), in metres."""
    valid = depth[np.isfinite(depth) & (depth > 0)]
    if valid.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(valid, DEPTH_PERCENTILES)
    if hi - lo < 1e-3:
        hi = lo + 1e-3
    return float(lo), float(hi)


def depth_to_rgb(depth: np.ndarray, vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """Depth in metres -> Turbo colours (near = blue, far = red)."""
    lo, hi = depth_range(depth) if vmin is None or vmax is None else (vmin, vmax)
    return apply_colormap(depth, lo, hi, TURBO)


def heatmap(values: np.ndarray, vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """Scalar map -> Inferno colours over [vmin, vmax]."""
    return apply_colormap(values, vmin, vmax, INFERNO)


@functools.lru_cache(maxsize=4)
def _hatch(h: int, w: int) -> np.ndarray:
    """(h, w, 3) uint8 diagonal grey stripes."""
    yy, xx = np.mgrid[0:h, 0:w]
    stripes = ((xx + yy) % HATCH_PERIOD) < HATCH_WIDTH
    grey = np.where(stripes[..., None], 90, 170).astype(np.uint8)
    return np.broadcast_to(grey, (h, w, 3))


def hatch_rejected(colours: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Grey out pixels not kept (``~kept``) with diagonal hatching, so rejected areas read at a glance."""
    return np.where(kept[..., None], colours, _hatch(*kept.shape))


@functools.lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType
        return ImageFont.load_default()


@functools.lru_cache(maxsize=2048)
def _text_tile(text: str) -> tuple[Image.Image, int, int, int]:
    """``text`` in the legend font, rendered once: an "L" mask cropped to its bounding box, the box's
    left and top offsets, and its width. Pasting the fill colour through the mask at (x + left,
    y + top) gives exactly the pixels of ``ImageDraw.text((x, y), text)`` for integer x, y
    (FreeType rendering was most of a legend's time, and legends repeat their labels)."""
    font = _font(LEGEND_FONT_PX)
    left, top, right, bottom = (int(v) for v in font.getbbox(text))
    mask = Image.new("L", (max(right - left, 1), max(bottom - top, 1)), 0)
    ImageDraw.Draw(mask).text((-left, -top), text, fill=255, font=font)
    return mask, left, top, right - left


def _text_width(text: str) -> int:
    return _text_tile(text)[3]


def _draw_text(im: Image.Image, xy: tuple[int, int], text: str, fill: tuple[int, int, int]) -> None:
    """``ImageDraw.text`` at integer ``xy`` with the legend font, from the cached tile."""
    mask, left, top, _ = _text_tile(text)
    im.paste(fill, (int(xy[0]) + left, int(xy[1]) + top), mask)


def legend_strip(entries: list[tuple[tuple[int, int, int], str]], width: int) -> np.ndarray:
    """Rows of colour swatches with labels, wrapped to ``width`` pixels (white background)."""
    line_h = LEGEND_FONT_PX + LEGEND_PAD
    rows: list[list[tuple[tuple[int, int, int], str, int]]] = [[]]
    x = LEGEND_PAD
    for colour, text in entries:
        item_w = SWATCH_PX + 4 + _text_width(text) + 2 * LEGEND_PAD
        if rows[-1] and x + item_w > width:
            rows.append([])
            x = LEGEND_PAD
        rows[-1].append((colour, text, x))
        x += item_w
    height = len(rows) * line_h + LEGEND_PAD
    im = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    for r, row in enumerate(rows):
        y = LEGEND_PAD + r * line_h
        for colour, text, x0 in row:
            draw.rectangle(
                [x0, y, x0 + SWATCH_PX, y + SWATCH_PX],
                fill=tuple(int(c) for c in colour),
                outline=(60, 60, 60),
            )
            _draw_text(im, (x0 + SWATCH_PX + 4, y - 1), text, (20, 20, 20))
    return np.asarray(im)


def colour_bar(
    lut: np.ndarray, vmin: float, vmax: float, width: int, unit: str, ticks: int = 5
) -> np.ndarray:
    """A horizontal colour bar with ``ticks`` labelled values (e.g. metres) under it."""
    bar_w = max(width - 2 * LEGEND_PAD, 2)
    height = COLOUR_BAR_PX + LEGEND_FONT_PX + 3 * LEGEND_PAD
    im = Image.new("RGB", (width, height), (255, 255, 255))
    ramp = lut[np.linspace(0, len(lut) - 1, bar_w).round().astype(int)]
    im.paste(Image.fromarray(np.repeat(ramp[None], COLOUR_BAR_PX, axis=0)), (LEGEND_PAD, LEGEND_PAD))
    draw = ImageDraw.Draw(im)
    for i in range(ticks):
        frac = i / (ticks - 1)
        value = vmin + frac * (vmax - vmin)
        text = f"{value:.2f}{unit}" if i < ticks - 1 else f"{value:.2f} {unit}".replace("  ", " ")
        x = LEGEND_PAD + frac * (bar_w - 1)
        draw.line([x, LEGEND_PAD + COLOUR_BAR_PX, x, LEGEND_PAD + COLOUR_BAR_PX + 3], fill=(20, 20, 20))
        tw = _text_width(text)
        tx = min(max(x - tw / 2, 0), width - tw - 1)
        _draw_text(im, (round(tx), LEGEND_PAD + COLOUR_BAR_PX + 4), text, (20, 20, 20))
    return np.asarray(im)


def _pad_width(arr: np.ndarray, width: int) -> np.ndarray:
    """Centre ``arr`` on a white canvas ``width`` pixels wide."""
    if arr.shape[1] >= width:
        return arr
    out = np.full((arr.shape[0], width, 3), 255, np.uint8)
    x0 = (width - arr.shape[1]) // 2
    out[:, x0 : x0 + arr.shape[1]] = arr
    return out


def stack_panel(image: np.ndarray, strip: np.ndarray) -> np.ndarray:
    """``image`` with ``strip`` below it (the narrower one centred on white)."""
    width = max(image.shape[1], strip.shape[1])
    return np.concatenate([_pad_width(image, width), _pad_width(strip, width)], axis=0)


def _legend_width(image: np.ndarray) -> int:
    return max(image.shape[1], MIN_PANEL_WIDTH)


def segmentation_overlay(image: np.ndarray, label: np.ndarray, task: TaskInfo, alpha: float = OVERLAY_ALPHA):
    """The class colours of ``label`` blended over ``image``."""
    return overlay(image, colorize_labels(label, task_palette(task)), alpha)


def class_counts(label: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixels of each class in [0, num_classes) (others ignored)."""
    flat = np.asarray(label).ravel()
    if flat.size and flat.min() >= 0 and flat.max() < num_classes:
        return np.bincount(flat, minlength=num_classes)
    return np.bincount(flat[(flat >= 0) & (flat < num_classes)], minlength=num_classes)


def segmentation_panel(image: np.ndarray, label: np.ndarray, task: TaskInfo, alpha: float = OVERLAY_ALPHA):
    """(overlay, overlay + legend of the classes present with their share of pixels)."""
    palette = task_palette(task)
    over = segmentation_overlay(image, label, task, alpha)
    counts = class_counts(label, task.num_outputs)
    total = max(int(counts.sum()), 1)
    present = [int(i) for i in np.argsort(-counts) if counts[i] > 0]
    entries = [(tuple(palette[i]), f"{task.class_names[i]} {100 * counts[i] / total:.0f}%") for i in present]
    strip = legend_strip(entries, _legend_width(over))
    return over, stack_panel(over, strip)


def depth_panel(depth: np.ndarray):
    """(Turbo depth, depth + colour bar in metres)."""
    lo, hi = depth_range(depth)
    coloured = depth_to_rgb(depth, lo, hi)
    bar = colour_bar(TURBO, lo, hi, _legend_width(coloured), "m")
    return coloured, stack_panel(coloured, bar)


def normals_panel(normals: np.ndarray):
    """(normals RGB, normals + a legend of the axis colours)."""
    rgb = normals_to_rgb(normals)
    entries = [
        (tuple(normals_to_rgb(np.array([1.0, 0, 0]))), "+x"),
        (tuple(normals_to_rgb(np.array([0, 1.0, 0]))), "+y"),
        (tuple(normals_to_rgb(np.array([0, 0, 1.0]))), "+z"),
        (tuple(normals_to_rgb(np.array([0, 0, -1.0]))), "-z"),
    ]
    return rgb, stack_panel(rgb, legend_strip(entries, _legend_width(rgb)))


def heatmap_panel(values: np.ndarray, vmin: float, vmax: float, unit: str = ""):
    """(heatmap, heatmap + colour bar)."""
    coloured = heatmap(values, vmin, vmax)
    bar = colour_bar(INFERNO, vmin, vmax, _legend_width(coloured), unit)
    return coloured, stack_panel(coloured, bar)


def label_colours(label: np.ndarray, task: TaskInfo) -> np.ndarray:
    """Pseudo labels coloured by their class / bin / centre colour."""
    return colorize_labels(label, task_palette(task))


def pseudo_panel(image: np.ndarray, label: np.ndarray, kept: np.ndarray, task: TaskInfo, coverage: float):
    """(pseudo labels with rejected pixels hatched, same + legend)."""
    colours = label_colours(label, task)
    base = overlay(image, colours, 0.8) if task.is_classification else colours
    shown = hatch_rejected(base, kept)
    entries = [((90, 90, 90), f"rejected (confidence <= tau): {100 * (1 - coverage):.1f}%")]
    entries.insert(0, ((255, 255, 255), f"kept: {100 * coverage:.1f}%"))
    return shown, stack_panel(shown, legend_strip(entries, _legend_width(shown)))


WEBP_QUALITY = 88
WEBP_METHOD = 0
"""Fastest WebP encoder setting: about 7 ms for 640x480 (Pillow's default method 4 takes about 26 ms)."""


def save_webp(image: np.ndarray | None, path: Path) -> str | None:
    """Write a picture for the browser (lossy WebP, quality ``WEBP_QUALITY``); returns the path."""
    if image is None:
        return None
    Image.fromarray(image).save(path, format="WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD)
    return str(path)
