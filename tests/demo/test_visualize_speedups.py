"""The faster picture code gives the pictures of the straightforward numpy / Pillow code it replaced
(reference implementations below, as they were)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from hitts_demo import postprocess as pp
from hitts_demo import visualize as vis

RNG = np.random.default_rng(0)


def ref_apply_colormap(values, vmin, vmax, lut):
    span = max(vmax - vmin, 1e-12)
    with np.errstate(over="ignore"):
        t = np.clip((np.nan_to_num(values, nan=vmin) - vmin) / span, 0.0, 1.0)
    out = lut[np.round(t * (len(lut) - 1)).astype(np.int64)]
    if np.isnan(values).any():
        out[np.isnan(values)] = 0
    return out


def ref_colorize(label, palette):
    lut = np.concatenate([palette, [[vis.IGNORED_GREY] * 3]]).astype(np.uint8)
    index = np.where((label >= 0) & (label < len(palette)), label, len(palette))
    return lut[index]


def ref_overlay(image, colours, alpha):
    mixed = image.astype(np.float32) * (1.0 - alpha) + colours.astype(np.float32) * alpha
    return np.clip(mixed.round(), 0, 255).astype(np.uint8)


def ref_normals_to_rgb(normals):
    return np.clip(np.round((normals + 1.0) / 2.0 * 255.0), 0, 255).astype(np.uint8)


def ref_hatch(colours, kept):
    h, w = kept.shape
    yy, xx = np.mgrid[0:h, 0:w]
    stripes = ((xx + yy) % vis.HATCH_PERIOD) < vis.HATCH_WIDTH
    grey = np.where(stripes[..., None], 90, 170).astype(np.uint8)
    out = colours.copy()
    out[~kept] = np.broadcast_to(grey, colours.shape)[~kept]
    return out


def ref_resize_normals(normals, size):
    chans = np.stack([pp.resize_bilinear(c, size) for c in normals], axis=-1)
    norm = np.linalg.norm(chans, axis=-1, keepdims=True)
    return (chans / np.maximum(norm, 1e-6)).astype(np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_colormap_equals_reference(dtype) -> None:
    values = (RNG.standard_normal((37, 53)) * 3).astype(dtype)
    values[3, 4], values[5, 6], values[7, 8] = np.nan, np.inf, -np.inf
    for lut in (vis.TURBO, vis.INFERNO):
        for vmin, vmax in ((-2.0, 2.5), (0.0, 0.0), (1.0, 0.5)):
            assert np.array_equal(
                vis.apply_colormap(values, vmin, vmax, lut), ref_apply_colormap(values, vmin, vmax, lut)
            )


def test_label_colours_overlay_and_hatching_equal_reference() -> None:
    palette = RNG.integers(0, 256, (13, 3)).astype(np.uint8)
    label = RNG.integers(-2, 16, (40, 60))
    image = RNG.integers(0, 256, (40, 60, 3)).astype(np.uint8)
    colours = vis.colorize_labels(label, palette)
    assert np.array_equal(colours, ref_colorize(label, palette))
    assert np.array_equal(vis.colorize_labels(label.astype(np.int32), palette), colours)
    for alpha in (vis.OVERLAY_ALPHA, 0.8, 0.0, 1.0):
        assert np.array_equal(vis.overlay(image, colours, alpha), ref_overlay(image, colours, alpha))
    kept = RNG.random((40, 60)) > 0.4
    assert np.array_equal(vis.hatch_rejected(colours, kept), ref_hatch(colours, kept))


def test_normals_equal_reference() -> None:
    normals = RNG.standard_normal((3, 12, 16)).astype(np.float32)
    normals /= np.linalg.norm(normals, axis=0, keepdims=True)
    normals[:, 0, 0] = 0.0  # a zero vector stays zero
    for size in ((16, 12), (40, 30)):
        got, ref = pp.resize_normals(normals, size), ref_resize_normals(normals, size)
        assert got.dtype == np.float32 and got.shape == ref.shape
        assert np.allclose(got, ref, atol=1e-6)
        assert np.array_equal(vis.normals_to_rgb(got), ref_normals_to_rgb(got))


def test_cached_text_draws_the_pixels_of_imagedraw() -> None:
    for text, xy in (("furniture 23%", (10, 5)), ("+x", (3, 7)), ("1.25 m", (0, 0)), ("", (4, 4))):
        expected = Image.new("RGB", (160, 30), (255, 255, 255))
        ImageDraw.Draw(expected).text(xy, text, fill=(20, 20, 20), font=vis._font(vis.LEGEND_FONT_PX))
        got = Image.new("RGB", (160, 30), (255, 255, 255))
        vis._draw_text(got, xy, text, (20, 20, 20))
        assert np.array_equal(np.asarray(got), np.asarray(expected)), text


def test_class_counts_ignore_out_of_range() -> None:
    label = RNG.integers(-1, 15, (30, 30))
    valid = label[(label >= 0) & (label < 13)]
    assert np.array_equal(vis.class_counts(label, 13), np.bincount(valid, minlength=13))
    inside = RNG.integers(0, 13, (30, 30))
    assert np.array_equal(vis.class_counts(inside, 13), np.bincount(inside.ravel(), minlength=13))
