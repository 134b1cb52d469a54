"""Low-level readers of the on-disk layouts, with validation that fails with one clear error.

Torch-free and scipy-free (the dashboard imports ``trainer.data.nyuv2_mini``, which uses this module,
in an environment without either).

Numpy sample convention (what readers return, before augmentation and ``to_tensor_sample``): the same
shapes as the tensor sample of ``docs/architecture.md``, channel-first:

* ``image``: (3, H, W) float32 in [0, 1] (not yet normalised);
* classification targets: (H, W) int64, ``IGNORE_LABEL`` (-1) = no label;
* ``depth``: (1, H, W) float32, ``MISSING_DEPTH`` (0) = missing;
* ``normals``: (3, H, W) float32 unit vectors, the zero vector = missing.

Every problem with the data raises ``DatasetError`` naming the file or folder and what was expected.
Folder and count checks run when a dataset is constructed; per-file checks when a file is loaded.
Nothing is ever skipped silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..tasks import IGNORE_LABEL, MISSING_DEPTH, TaskSpec

RGB_CHANNELS = 3
NORMAL_CHANNELS = 3
UINT8_MAX = 255.0
RANGE_TOLERANCE = 1e-3
"""Slack on the [0, 1] image and [-1, 1] normal ranges (float rounding in preprocessed files)."""
NORMAL_MIN_NORM = 1e-6
"""A normal vector shorter than this is treated as missing (zero vector)."""
NPY_IGNORE_VALUES = (-1, 255)
"""Ignore values accepted in ``.npy`` label maps (MTAN / XTC use -1; some exports use 255)."""
MAX_LISTED = 5
"""How many missing file names an error message lists before summarising."""


class DatasetError(ValueError):
    """The data on disk does not match the layout a dataset reads (message: which file, what was expected)."""


# ----------------------------------------------------------------------------------------------------
# Folders and files
# ----------------------------------------------------------------------------------------------------


def require_dir(path: str | Path, what: str) -> Path:
    """``path`` as a Path if it is a directory; else ``DatasetError`` saying what it should hold."""
    path = Path(path)
    if not path.is_dir():
        state = "is not a directory" if path.exists() else "does not exist"
        raise DatasetError(f"{path} {state}; expected {what}")
    return path


def require_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path} does not exist; expected {what}")
    return path


def first_existing_dir(parent: Path, names: Sequence[str], what: str) -> Path:
    """The first of ``parent/<name>`` that is a directory (layouts with alternative folder names)."""
    for name in names:
        if (parent / name).is_dir():
            return parent / name
    options = " or ".join(str(parent / n) for n in names)
    raise DatasetError(f"missing folder {options}; expected {what}")


def check_files_exist(paths: Iterable[Path], what: str) -> None:
    """One ``DatasetError`` listing the missing files among ``paths`` (none missing: returns)."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        listed = ", ".join(str(p) for p in missing[:MAX_LISTED])
        more = f" and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
        raise DatasetError(f"{len(missing)} {what} file(s) missing: {listed}{more}")


def scan_npy_split(split_dir: Path, folders: dict[str, Path]) -> int:
    """Number of images N of an MTAN-style split, checking every folder holds exactly ``0.npy .. N-1.npy``.

    split_dir: ``<root>/<split>``, only used in messages.
    folders: modality name -> folder (already checked to exist).
    Raises ``DatasetError`` on an empty folder, a file that is not ``<int>.npy``, a gap in the
    numbering, or different counts between modalities.
    """
    counts: dict[str, int] = {}
    for name, folder in folders.items():
        stems = [p.stem for p in folder.iterdir() if p.suffix == ".npy"]
        if not stems:
            raise DatasetError(f"{folder} holds no .npy files; expected <i>.npy for i = 0..N-1 ({name})")
        bad = [s for s in stems if not s.isdigit()]
        if bad:
            raise DatasetError(f"{folder / (bad[0] + '.npy')}: file names must be <i>.npy with i = 0..N-1")
        indices = {int(s) for s in stems}
        gaps = sorted(set(range(len(indices))) - indices)
        if gaps:
            raise DatasetError(f"{folder}: missing {gaps[0]}.npy; expected 0.npy..{len(indices) - 1}.npy")
        counts[name] = len(indices)
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{folders[k]}: {v}" for k, v in counts.items())
        raise DatasetError(f"mismatched file counts between modalities in {split_dir} ({listed})")
    return next(iter(counts.values()))


def read_npy(path: Path) -> np.ndarray:
    """``np.load`` that names the file when it is unreadable (truncated, not an array, pickled)."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DatasetError(f"{path} is not a readable .npy array ({e})") from e


def npy_shape(path: Path) -> tuple[int, ...]:
    """Shape of a ``.npy`` array from its header only (memory-mapped, no data read)."""
    try:
        return tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape)
    except (OSError, ValueError, EOFError) as e:
        raise DatasetError(f"{path} is not a readable .npy array ({e})") from e


def read_png(path: Path, mode: str | None = None) -> np.ndarray:
    """Pixels of an image file (any PIL format), optionally converted to ``mode`` ("RGB", "L")."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert(mode) if mode else im)
    except OSError as e:
        raise DatasetError(f"{path} is not a readable image ({e})") from e


# ----------------------------------------------------------------------------------------------------
# Array validation and conversion to the numpy sample convention
# ----------------------------------------------------------------------------------------------------


def _check_finite(arr: np.ndarray, path: Path, what: str) -> None:
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise DatasetError(f"{path}: {what} contains NaN or inf values")


def _check_hw(arr: np.ndarray, path: Path, what: str, hw: tuple[int, int] | None) -> None:
    if hw is not None and tuple(arr.shape[:2]) != tuple(hw):
        raise DatasetError(
            f"{path}: {what} has size {arr.shape[:2]}, expected {tuple(hw)} (size of its image)"
        )


def image_to_chw(arr: np.ndarray, path: Path, hw: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W, 3) uint8 0..255 or float in [0, 1] -> (3, H, W) float32 in [0, 1]."""
    if arr.ndim != 3 or arr.shape[2] != RGB_CHANNELS:
        raise DatasetError(f"{path}: image has shape {arr.shape}, expected (H, W, 3)")
    _check_hw(arr, path, "image", hw)
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / UINT8_MAX
    elif np.issubdtype(arr.dtype, np.floating):
        _check_finite(arr, path, "image")
        if arr.min() < -RANGE_TOLERANCE or arr.max() > 1.0 + RANGE_TOLERANCE:
            raise DatasetError(
                f"{path}: float image values span [{arr.min():.3g}, {arr.max():.3g}], expected [0, 1] "
                "(or uint8 0..255)"
            )
        out = np.clip(arr.astype(np.float32), 0.0, 1.0)
    else:
        raise DatasetError(f"{path}: image dtype {arr.dtype}, expected uint8 or float in [0, 1]")
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def labels_to_int(
    arr: np.ndarray,
    path: Path,
    num_classes: int,
    ignore_values: Sequence[int],
    hw: tuple[int, int] | None = None,
) -> np.ndarray:
    """(H, W) or (H, W, 1) class map (int or integral float) -> (H, W) int64 with ``IGNORE_LABEL``.

    Values must be in 0..num_classes-1 or one of ``ignore_values`` (mapped to -1).
    """
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise DatasetError(f"{path}: label map has shape {arr.shape}, expected (H, W)")
    _check_hw(arr, path, "label map", hw)
    if np.issubdtype(arr.dtype, np.floating):
        _check_finite(arr, path, "label map")
        if not np.array_equal(arr, np.round(arr)):
            raise DatasetError(f"{path}: label map holds non-integer values, expected class indices")
    elif not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise DatasetError(f"{path}: label dtype {arr.dtype}, expected integers")
    out = arr.astype(np.int64)
    ignore = np.isin(out, np.asarray(ignore_values, dtype=np.int64))
    bad = ~ignore & ((out < 0) | (out >= num_classes))
    if bad.any():
        values = np.unique(out[bad])[:MAX_LISTED].tolist()
        raise DatasetError(
            f"{path}: label values {values} out of range; expected 0..{num_classes - 1} or ignore "
            f"{list(ignore_values)}"
        )
    out[ignore] = IGNORE_LABEL
    return out


def depth_to_chw(arr: np.ndarray, path: Path, hw: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W) or (H, W, 1) depth (0 = missing, never negative) -> (1, H, W) float32."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise DatasetError(f"{path}: depth has shape {arr.shape}, expected (H, W) or (H, W, 1)")
    _check_hw(arr, path, "depth", hw)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise DatasetError(f"{path}: depth dtype {arr.dtype}, expected float")
    _check_finite(arr, path, "depth")
    if (arr < 0).any():
        raise DatasetError(f"{path}: depth has negative values, expected >= 0 (0 = missing)")
    return arr.astype(np.float32)[None]


def normals_to_chw(arr: np.ndarray, path: Path, hw: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W, 3) normals in [-1, 1] -> (3, H, W) float32 unit vectors (zero vector = missing)."""
    if arr.ndim != 3 or arr.shape[2] != NORMAL_CHANNELS:
        raise DatasetError(f"{path}: normals have shape {arr.shape}, expected (H, W, 3)")
    _check_hw(arr, path, "normals", hw)
    if not np.issubdtype(arr.dtype, np.floating):
        raise DatasetError(f"{path}: normals dtype {arr.dtype}, expected float in [-1, 1]")
    _check_finite(arr, path, "normals")
    if np.abs(arr).max() > 1.0 + RANGE_TOLERANCE:
        raise DatasetError(f"{path}: normal components reach {np.abs(arr).max():.3g}, expected [-1, 1]")
    return unit_normals(np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32))


def npy_target_to_sample(arr: np.ndarray, spec: TaskSpec, path: Path, hw: tuple[int, int]) -> np.ndarray:
    """A ``.npy`` target of an MTAN-style layout -> the numpy sample convention of its task kind.

    classification: (H, W) class map, ignore -1 or 255 -> (H, W) int64; depth: (H, W) or (H, W, 1)
    -> (1, H, W); normals: (H, W, 3) in [-1, 1] -> (3, H, W) unit vectors.
    """
    if spec.is_classification:
        return labels_to_int(arr, path, spec.num_outputs, NPY_IGNORE_VALUES, hw)
    if spec.kind == "depth":
        return depth_to_chw(arr, path, hw)
    return normals_to_chw(arr, path, hw)


def unit_normals(normals: np.ndarray) -> np.ndarray:
    """(3, H, W) vectors -> unit vectors; vectors shorter than ``NORMAL_MIN_NORM`` become zero."""
    norm = np.linalg.norm(normals, axis=0, keepdims=True)
    valid = norm > NORMAL_MIN_NORM
    return np.where(valid, normals / np.where(valid, norm, 1.0), 0.0).astype(np.float32)


def ignore_target(spec: TaskSpec, hw: tuple[int, int]) -> np.ndarray:
    """The target of a task that is not labelled for an image: all ignore / missing.

    classification: (H, W) int64 of ``IGNORE_LABEL``; depth: (1, H, W) float32 of ``MISSING_DEPTH``;
    normals: (3, H, W) float32 zeros.
    """
    if spec.is_classification:
        return np.full(hw, IGNORE_LABEL, dtype=np.int64)
    if spec.kind == "depth":
        return np.full((1, *hw), MISSING_DEPTH, dtype=np.float32)
    return np.zeros((spec.target_channels, *hw), dtype=np.float32)


def check_labelled_mask(
    mask: np.ndarray | None, num_full: int, num_used: int, task_names: Sequence[str]
) -> np.ndarray:
    """(num_used, T) bool label mask of a dataset.

    mask: None (every task labelled) or (N, T) bool / 0-1 with N = the split's image count
        (``num_full``) or the count after ``max_images`` (``num_used``).
    """
    num_tasks = len(task_names)
    if mask is None:
        return np.ones((num_used, num_tasks), dtype=bool)
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.shape[1] != num_tasks or mask.shape[0] not in (num_full, num_used):
        expected = f"({num_full}, {num_tasks})" + (
            f" or ({num_used}, {num_tasks})" if num_used != num_full else ""
        )
        raise DatasetError(
            f"labelled_mask has shape {mask.shape}, expected {expected} for tasks {list(task_names)}"
        )
    if mask.dtype != bool:
        if not np.isin(mask, (0, 1)).all():
            raise DatasetError("labelled_mask must be boolean (or 0/1)")
        mask = mask.astype(bool)
    return np.ascontiguousarray(mask[:num_used])


# ----------------------------------------------------------------------------------------------------
# Resampling in normalised coordinates (shared by resizing and the joint augmentation)
# ----------------------------------------------------------------------------------------------------


def source_coords(
    n_in: int, n_out: int, start: float = 0.0, extent: float = 1.0, flip: bool = False
) -> np.ndarray:
    """(n_out,) float64 source pixel coordinates of the output pixel centres along one axis.

    Normalised coordinates: 0 = the left edge of the first pixel, 1 = the right edge of the last
    (pixel centres at (j + 0.5) / n). Output pixel j covers ``u = (j + 0.5) / n_out`` (mirrored to
    ``1 - u`` when ``flip``); it samples the input at ``start + u * extent``, i.e. at pixel coordinate
    ``(start + u * extent) * n_in - 0.5`` (align_corners=False convention). Grids of any resolution
    thereby see the same geometry.
    """
    u = (np.arange(n_out, dtype=np.float64) + 0.5) / n_out
    if flip:
        u = 1.0 - u
    return (start + u * extent) * n_in - 0.5


def _nearest_index(coords: np.ndarray, n_in: int) -> np.ndarray:
    return np.clip(np.floor(coords + 0.5), 0, n_in - 1).astype(np.int64)


def _linear_weights(coords: np.ndarray, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    low = np.floor(coords)
    frac = (coords - low).astype(np.float32)
    i0 = np.clip(low, 0, n_in - 1).astype(np.int64)
    i1 = np.clip(low + 1, 0, n_in - 1).astype(np.int64)
    return i0, i1, frac


def resample(
    arr: np.ndarray,
    out_hw: tuple[int, int],
    mode: str,
    window: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0),
    flip: bool = False,
) -> np.ndarray:
    """Resample the last two axes of ``arr`` (..., H, W) to (..., out_h, out_w).

    window: (top, left, height, width) of the source region in normalised coordinates (see
        ``source_coords``); the default is the whole array (a plain resize).
    flip: mirror horizontally (output column j samples the window at 1 - u).
    mode: "nearest" (exact values, keeps dtype: labels, ignore values, depth, normals) or "bilinear"
        (float32, edge pixels clamped).
    """
    in_h, in_w = arr.shape[-2:]
    top, left, height, width = window
    ys = source_coords(in_h, out_hw[0], top, height)
    xs = source_coords(in_w, out_hw[1], left, width, flip)
    if mode == "nearest":
        return np.ascontiguousarray(
            arr[..., _nearest_index(ys, in_h)[:, None], _nearest_index(xs, in_w)[None, :]]
        )
    if mode != "bilinear":
        raise ValueError(f"unknown resampling mode {mode!r}; expected 'nearest' or 'bilinear'")
    a = arr.astype(np.float32, copy=False)
    y0, y1, fy = _linear_weights(ys, in_h)
    x0, x1, fx = _linear_weights(xs, in_w)
    rows = a[..., y0, :] * (1.0 - fy)[:, None] + a[..., y1, :] * fy[:, None]
    return np.ascontiguousarray(rows[..., x0] * (1.0 - fx) + rows[..., x1] * fx, dtype=np.float32)


def resize_nearest(arr: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of the last two axes (no-op when already ``hw``)."""
    return arr if tuple(arr.shape[-2:]) == tuple(hw) else resample(arr, hw, "nearest")


def resize_image(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(3, H, W) float32 image -> (3, h, w), PIL bilinear (antialiased when shrinking); no-op at ``hw``."""
    if tuple(image.shape[-2:]) == tuple(hw):
        return image
    size = (hw[1], hw[0])  # PIL: (width, height)
    channels = [np.asarray(Image.fromarray(c.astype(np.float32)).resize(size, Image.BILINEAR)) for c in image]
    return np.clip(np.stack(channels), 0.0, 1.0).astype(np.float32)


def resize_uint8_rgb(rgb: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, h, w) float32 in [0, 1], PIL bilinear (antialiased when shrinking)."""
    im = Image.fromarray(rgb)
    if tuple(rgb.shape[:2]) != tuple(hw):
        im = im.resize((hw[1], hw[0]), Image.BILINEAR)
    return np.ascontiguousarray(np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / UINT8_MAX)
