"""``manifest.json``: load, validate, and check against the ONNX model it describes.

The manifest is the contract between the trainer's exporter and this package (schema in
``docs/architecture.md``). Everything the dashboard needs to know about a model (tasks, classes,
palette, depth bins, normal centres, tau, input size and normalisation) comes from it, so the app
never repeats a constant.

Every problem surfaces as one ``ExportError`` at load time, naming the export folder and each thing
that is wrong (missing file, truncated ``.onnx``, wrong output names or shapes, opset newer than this
onnxruntime, tasks that do not match the outputs), never later as a failure inside ``run()``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
from onnx import external_data_helper

from hitts_schema import MANIFEST_FILE, MANIFEST_FORMAT_VERSION
from hitts_schema.manifest import model_files
from hitts_schema.methods import ARCH_NAMES as ARCHS

KINDS = ("segmentation", "binary", "depth", "normals")
CLASSIFICATION_KINDS = ("segmentation", "binary")
PER_TASK_OUTPUTS = ("pred", "confidence", "label")
TOKEN_OUTPUTS = ("global_score", "fine_scores", "fine_tokens")
AFFINITY_OUTPUT = "affinity"
DEFAULT_VARIANT = "fp32"
INT64 = "tensor(int64)"
FLOAT = "tensor(float)"
DIGEST_BLOCK_BYTES = 2**20


class ExportError(RuntimeError):
    """An export folder that cannot be served; the message says which folder and what is wrong."""


@dataclass(frozen=True)
class TaskInfo:
    """One task as the manifest describes it (see ``trainer/tasks.py`` for the meaning of fields)."""

    name: str
    kind: str
    num_outputs: int
    tau: float
    class_names: tuple[str, ...] = ()
    palette: tuple[tuple[int, int, int], ...] = ()
    bin_centres: tuple[float, ...] = ()
    normal_centres: tuple[tuple[float, float, float], ...] = ()

    @property
    def is_classification(self) -> bool:
        return self.kind in CLASSIFICATION_KINDS


@dataclass(frozen=True)
class InputInfo:
    """The model input: name, size, and per-channel normalisation of RGB in [0, 1]."""

    name: str
    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class Manifest:
    """A validated manifest. ``outputs`` maps each ONNX output name to its shape."""

    export_dir: Path
    name: str
    arch: str
    backbone: str
    onnx_path: Path
    opset: int
    input: InputInfo
    tasks: tuple[TaskInfo, ...]
    outputs: dict[str, tuple[int | None, ...]]
    has_tokens: bool
    has_affinity: bool = False
    trained_on: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, Path] = field(default_factory=dict)
    """Other precisions of the same graph (``quantized`` in the manifest): "fp16" -> its .onnx file."""
    stage: int | None = None
    eval_split: str = ""
    """Which split ``metrics`` was measured on ("val": held-out training scenes, "test"); "" = not recorded."""
    val_metrics: dict[str, Any] = field(default_factory=dict)
    """The run's last-epoch figures on its held-out validation scenes ({} when it held none out)."""
    evaluations: dict[str, Any] = field(default_factory=dict)
    """Figures measured on the exported model through this package's runtime, by source ("nyuv2-mini",
    "synthetic"), written by ``scripts/evaluate_shipped.py --update-manifest``; {} = not measured."""

    @property
    def variant_names(self) -> tuple[str, ...]:
        """ "fp32" (``onnx_path``) and every exported variant whose file exists."""
        return (DEFAULT_VARIANT, *(k for k, p in self.variants.items() if p.is_file()))

    def variant_path(self, variant: str | None) -> Path:
        if variant in (None, DEFAULT_VARIANT):
            return self.onnx_path
        if variant not in self.variants or not self.variants[variant].is_file():
            raise ExportError(
                f"model {self.name!r} has no {variant} export; it has {list(self.variant_names)}"
            )
        return self.variants[variant]

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    def task(self, name: str) -> TaskInfo:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(f"model {self.name!r} has no task {name!r}; tasks: {list(self.task_names)}")

    def has_output(self, name: str) -> bool:
        return name in self.outputs


def _fail(export_dir: Path, problems: list[str]) -> ExportError:
    listing = "\n".join(f"  - {p}" for p in problems)
    return ExportError(f"export {export_dir} is not usable:\n{listing}")


def _get(
    d: dict, key: str, kind: type | tuple[type, ...], where: str, problems: list[str], default: Any = None
):
    """``d[key]`` if it has type ``kind``, else record a problem and return ``default``."""
    if key not in d:
        problems.append(f"{where}: missing key {key!r}")
        return default
    value = d[key]
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        problems.append(f"{where}: {key!r} must be a number, got {value!r}")
        return default
    if not isinstance(value, kind):
        problems.append(f"{where}: {key!r} has the wrong type ({type(value).__name__})")
        return default
    return value


def _parse_task(raw: Any, index: int, problems: list[str]) -> TaskInfo | None:
    where = f"tasks[{index}]"
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be an object")
        return None
    name = _get(raw, "name", str, where, problems)
    kind = _get(raw, "kind", str, where, problems)
    num = _get(raw, "num_outputs", int, where, problems)
    tau = _get(raw, "tau", (int, float), where, problems, 0.5)
    if name is None or kind is None or num is None:
        return None
    where = f"task {name!r}"
    if kind not in KINDS:
        problems.append(f"{where}: unknown kind {kind!r}, expected one of {KINDS}")
        return None
    if num < 2:
        problems.append(f"{where}: num_outputs must be >= 2, got {num}")
    if not 0.0 <= float(tau) <= 1.0:
        problems.append(f"{where}: tau must be in [0, 1], got {tau}")
    info: dict[str, Any] = {}
    if kind in CLASSIFICATION_KINDS:
        names = raw.get("class_names") or [f"class {i}" for i in range(num)]
        if len(names) != num:
            problems.append(f"{where}: {len(names)} class_names for num_outputs {num}")
        palette = raw.get("palette")
        if palette is not None and (
            len(palette) != num or any(len(c) != 3 or not all(0 <= int(v) <= 255 for v in c) for c in palette)
        ):
            problems.append(f"{where}: palette must hold {num} [r, g, b] triples in 0..255")
            palette = None
        info["class_names"] = tuple(str(n) for n in names)
        info["palette"] = tuple(tuple(int(v) for v in c) for c in palette) if palette else ()
    elif kind == "depth":
        bins = raw.get("bin_centres")
        if not isinstance(bins, list) or len(bins) != num:
            problems.append(f"{where}: bin_centres must list {num} depths in metres")
        else:
            info["bin_centres"] = tuple(float(b) for b in bins)
    else:
        centres = raw.get("normal_centres")
        if not isinstance(centres, list) or len(centres) != num or any(len(c) != 3 for c in centres):
            problems.append(f"{where}: normal_centres must list {num} [x, y, z] unit vectors")
        else:
            info["normal_centres"] = tuple(tuple(float(v) for v in c) for c in centres)
    return TaskInfo(name=name, kind=kind, num_outputs=num, tau=float(tau), **info)


def _variants(raw: dict, export_dir: Path) -> dict[str, Path]:
    """``quantized: {kind: {"file": name}}`` -> kind -> path; a name that is not a plain file name
    of the export folder (a path, ``..``) is ignored, as are variants the exporter failed to write."""
    out = {}
    for kind, entry in (raw.get("quantized") or {}).items():
        name = entry.get("file") if isinstance(entry, dict) else None
        if isinstance(name, str) and name == Path(name).name and name not in ("", ".", ".."):
            out[str(kind)] = export_dir / name
    return out


def _figures(raw: dict) -> dict[str, Any]:
    """The optional provenance fields (older manifests lack them; a malformed one reads as absent)."""

    def obj(key: str) -> dict[str, Any]:
        value = raw.get(key)
        return dict(value) if isinstance(value, dict) else {}

    stage = raw.get("stage")
    split = raw.get("eval_split")
    return {
        "stage": stage if isinstance(stage, int) and not isinstance(stage, bool) else None,
        "eval_split": split if isinstance(split, str) else "",
        "val_metrics": obj("val_metrics"),
        "evaluations": obj("evaluations"),
    }


def _parse_input(inp: dict, problems: list[str]) -> InputInfo | None:
    """The manifest's ``input`` block (None, with problems recorded, when it is unusable)."""
    if not inp:
        return None
    h = _get(inp, "height", int, "input", problems)
    w = _get(inp, "width", int, "input", problems)
    mean = _get(inp, "mean", list, "input", problems)
    std = _get(inp, "std", list, "input", problems)
    iname = _get(inp, "name", str, "input", problems, "image")
    if mean is not None and len(mean) != 3 or std is not None and len(std) != 3:
        problems.append("input: mean and std must have 3 values (RGB)")
    elif std is not None and any(float(s) <= 0 for s in std):
        problems.append("input: std values must be positive")
    elif None not in (h, w, mean, std):
        if h < 8 or w < 8:
            problems.append(f"input: size {h}x{w} is too small")
        return InputInfo(iname, h, w, tuple(float(m) for m in mean), tuple(float(s) for s in std))
    return None


def parse_manifest(raw: Any, export_dir: Path) -> Manifest:
    """Validate the JSON content of a manifest (not yet the ONNX file); ``ExportError`` lists all problems."""
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise _fail(export_dir, ["manifest.json must hold a JSON object"])
    version = raw.get("format_version")
    if version != MANIFEST_FORMAT_VERSION:
        problems.append(
            f"format_version is {version!r}; this dashboard reads format_version {MANIFEST_FORMAT_VERSION}"
        )
    name = _get(raw, "name", str, "manifest", problems, export_dir.name)
    arch = _get(raw, "arch", str, "manifest", problems, "mtl")
    if arch not in ARCHS:
        problems.append(f"arch {arch!r} is not one of {ARCHS}")
    onnx_file = _get(raw, "onnx_file", str, "manifest", problems, "model.onnx")
    opset = _get(raw, "opset", int, "manifest", problems, 0)
    input_info = _parse_input(_get(raw, "input", dict, "manifest", problems, {}), problems)
    raw_tasks = _get(raw, "tasks", list, "manifest", problems, [])
    tasks = [t for i, r in enumerate(raw_tasks) if (t := _parse_task(r, i, problems)) is not None]
    if raw_tasks is not None and not raw_tasks:
        problems.append("tasks: the list is empty")
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        problems.append(f"tasks: duplicate task names {names}")
    outputs_raw = _get(raw, "outputs", dict, "manifest", problems, {})
    outputs: dict[str, tuple[int | None, ...]] = {}
    for key, shape in (outputs_raw or {}).items():
        if not isinstance(shape, list) or not all(isinstance(d, (int, str)) or d is None for d in shape):
            problems.append(f"outputs[{key!r}]: shape must be a list of sizes")
        else:  # a symbolic (named) dimension is recorded as None: any size
            outputs[key] = tuple(d if isinstance(d, int) else None for d in shape)
    has_tokens = bool(raw.get("has_tokens", False))
    has_affinity = bool(raw.get("has_affinity", has_tokens))
    if problems:
        raise _fail(export_dir, problems)
    manifest = Manifest(
        export_dir=export_dir,
        name=name,
        arch=arch,
        backbone=str(raw.get("backbone", "")),
        onnx_path=(export_dir / onnx_file),
        opset=opset,
        input=input_info,  # type: ignore[arg-type]
        tasks=tuple(tasks),
        outputs=outputs,
        has_tokens=has_tokens,
        has_affinity=has_affinity,
        trained_on=dict(raw.get("trained_on") or {}),
        metrics=dict(raw.get("metrics") or {}),
        parity=dict(raw.get("parity") or {}),
        variants=_variants(raw, export_dir),
        **_figures(raw),
    )
    problems = contract_problems(manifest)
    if problems:
        raise _fail(export_dir, problems)
    return manifest


def expected_outputs(manifest: Manifest) -> dict[str, tuple[int | None, ...]]:
    """Output name -> shape required by the export contract (None: any size, e.g. h, w, D)."""
    h, w = manifest.input.height, manifest.input.width
    t_count = len(manifest.tasks)
    out: dict[str, tuple[int | None, ...]] = {}
    for t in manifest.tasks:
        pred = {"depth": (1, 1, h, w), "normals": (1, 3, h, w)}.get(t.kind, (1, h, w))
        out[f"{t.name}_pred"] = pred
        out[f"{t.name}_confidence"] = (1, h, w)
        out[f"{t.name}_label"] = (1, h, w)
        if manifest.has_tokens:
            out[f"{t.name}_global_score"] = (1, None, None)
            out[f"{t.name}_fine_scores"] = (1, t.num_outputs, None, None)
            out[f"{t.name}_fine_tokens"] = (t.num_outputs, None)
    if manifest.has_affinity:
        out[AFFINITY_OUTPUT] = (t_count, t_count)
    return out


def expected_dtype(output_name: str, manifest: Manifest) -> str:
    """ONNX type of an output: int64 for labels and classification predictions, float otherwise."""
    for t in manifest.tasks:
        if output_name == f"{t.name}_label" or (output_name == f"{t.name}_pred" and t.is_classification):
            return INT64
    return FLOAT


def shape_matches(actual: tuple, expected: tuple) -> bool:
    """Same rank and equal sizes wherever both are known (None or a name: any size)."""
    return len(actual) == len(expected) and all(
        not isinstance(e, int) or not isinstance(a, int) or a == e for a, e in zip(actual, expected)
    )


def contract_problems(manifest: Manifest) -> list[str]:
    """What in the manifest's ``outputs`` breaks the export contract (names, ranks, sizes, tasks)."""
    problems = []
    expected = expected_outputs(manifest)
    missing = [n for n in expected if n not in manifest.outputs]
    if missing:
        problems.append(f"outputs: missing {missing} (required by the tasks {list(manifest.task_names)})")
    known_suffixes = PER_TASK_OUTPUTS + TOKEN_OUTPUTS
    for n in manifest.outputs:
        if n in expected or n == AFFINITY_OUTPUT:
            continue
        task = next((n[: -len(s) - 1] for s in known_suffixes if n.endswith("_" + s)), None)
        if task is not None and task not in manifest.task_names:
            problems.append(
                f"outputs: {n!r} belongs to task {task!r}, which is not in tasks {list(manifest.task_names)}"
            )
        elif task is None:
            problems.append(f"outputs: unexpected output name {n!r}")
    for n, shape in expected.items():
        if n in manifest.outputs and not shape_matches(manifest.outputs[n], shape):
            problems.append(f"outputs: {n!r} has shape {list(manifest.outputs[n])}, expected {_fmt(shape)}")
    if manifest.has_tokens:
        sizes = {
            manifest.outputs[f"{t.name}_global_score"][1:]
            for t in manifest.tasks
            if f"{t.name}_global_score" in manifest.outputs
        }
        sizes |= {
            manifest.outputs[f"{t.name}_fine_scores"][2:]
            for t in manifest.tasks
            if f"{t.name}_fine_scores" in manifest.outputs
        }
        if len(sizes) > 1:
            problems.append(f"outputs: token score maps disagree on their size: {sorted(sizes)}")
    return problems


def _fmt(shape: tuple) -> str:
    return "[" + ", ".join("any" if d is None else str(d) for d in shape) + "]"


def load_manifest(export_dir: str | Path) -> Manifest:
    """Read and validate ``<export_dir>/manifest.json`` (JSON and contract; the ONNX file must exist)."""
    export_dir = Path(export_dir).resolve()
    path = export_dir / MANIFEST_FILE
    if not export_dir.is_dir():
        raise ExportError(f"export folder {export_dir} does not exist")
    if not path.is_file():
        raise ExportError(f"export {export_dir}: no {MANIFEST_FILE} (the trainer's `export` step writes it)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ExportError(f"export {export_dir}: {MANIFEST_FILE} is not valid JSON ({err})") from err
    manifest = parse_manifest(raw, export_dir)
    if not manifest.onnx_path.is_file():
        raise ExportError(
            f"export {export_dir}: the ONNX file {manifest.onnx_path.name!r} named by the manifest is missing"
        )
    return manifest


# --- The ONNX file: parsed and checked with the `onnx` package -------------------------------------
def check_onnx(path: str | Path) -> tuple[int, str | None]:
    """(default-domain opset, what ``onnx.checker.check_model`` objects to or None) of an ONNX file.

    Raises ``ExportError`` for an empty, truncated or non-ONNX file (no graph, no opset), or a model
    whose weights shards (ONNX external data, ``model.onnx.data-k``) are missing or short, before
    onnxruntime sees it. A checker complaint alone is not fatal: some converters (onnxruntime's fp16
    one) write graphs the checker rejects (e.g. nodes not topologically sorted) that onnxruntime runs;
    the session's load and dry run decide, and the complaint is reported with the model's status.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise ExportError(f"{path} is empty")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise ExportError(
            f"{path} is truncated or not an ONNX model ({size} bytes; {type(err).__name__}): "
            "re-copy or re-export the model"
        ) from err
    opsets = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not model.HasField("graph") or not model.graph.node or not opsets:
        raise ExportError(f"{path} is truncated or not an ONNX model (no graph or no opset)")
    problems = external_data_problems(model, path.parent)
    if problems:
        raise ExportError(
            f"{path}: its weights are stored beside it (ONNX external data) and {'; '.join(problems)}: "
            f"copy every {path.name}.data-* file together with {path.name}"
        )
    try:  # by path: the checker then reads the external data from the model's folder
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as err:
        return int(opsets[0]), (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    return int(opsets[0]), None


def external_data_problems(model: onnx.ModelProto, folder: Path) -> list[str]:
    """What is wrong with the external data files an ONNX graph names (missing, outside ``folder``,
    shorter than the tensors stored in them); [] for a model that holds its weights inline."""
    needed: dict[str, int] = {}
    for tensor in model.graph.initializer:
        if not external_data_helper.uses_external_data(tensor):
            continue
        info = external_data_helper.ExternalDataInfo(tensor)
        end = (info.offset or 0) + (info.length or 0)
        needed[info.location] = max(needed.get(info.location, 0), end)
    problems = []
    for location, end in sorted(needed.items()):
        file = folder / location
        if Path(location).name != location:
            problems.append(f"{location!r} is not a file name in the model's folder")
        elif not file.is_file():
            problems.append(f"{location} is missing")
        elif file.stat().st_size < end:
            problems.append(f"{location} is truncated ({file.stat().st_size} of {end} bytes)")
    return problems


def model_digest(onnx_path: str | Path) -> str:
    """SHA-256 of a model's files (the graph file, then its weight shards, in order): names the exact
    weights a figure was measured on (``evaluations[...]["model_sha256"]``)."""
    digest = hashlib.sha256()
    for path in model_files(onnx_path):
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(DIGEST_BLOCK_BYTES), b""):
                digest.update(block)
    return digest.hexdigest()


def read_onnx_opset(path: str | Path) -> int:
    """The default-domain opset of an ONNX file (``check_onnx``)."""
    return check_onnx(path)[0]


def check_session(manifest: Manifest, session: Any) -> None:
    """Compare an onnxruntime session's inputs and outputs with the manifest; ``ExportError`` if they differ."""
    problems: list[str] = []
    inputs = session.get_inputs()
    inp = manifest.input
    if len(inputs) != 1:
        problems.append(
            f"the model has {len(inputs)} inputs {[i.name for i in inputs]}, expected one ({inp.name!r})"
        )
    else:
        actual = inputs[0]
        if actual.name != inp.name:
            problems.append(f"the model input is named {actual.name!r}, the manifest says {inp.name!r}")
        if not shape_matches(tuple(actual.shape), (1, 3, inp.height, inp.width)):
            problems.append(
                f"the model input has shape {actual.shape}, the manifest says [1, 3, {inp.height}, {inp.width}]"
            )
        if actual.type != FLOAT:
            problems.append(f"the model input has type {actual.type}, expected {FLOAT}")
    actual_outputs = {o.name: o for o in session.get_outputs()}
    missing = sorted(set(manifest.outputs) - set(actual_outputs))
    extra = sorted(set(actual_outputs) - set(manifest.outputs))
    if missing:
        problems.append(f"outputs listed in the manifest but not in the model: {missing}")
    if extra:
        problems.append(f"outputs of the model not listed in the manifest: {extra}")
    for name, out in actual_outputs.items():
        if name not in manifest.outputs:
            continue
        if not shape_matches(tuple(out.shape), manifest.outputs[name]):
            problems.append(
                f"output {name!r} has shape {out.shape} in the model, {list(manifest.outputs[name])} in the manifest"
            )
        want = expected_dtype(name, manifest)
        if out.type != want:
            problems.append(f"output {name!r} has type {out.type}, expected {want}")
    if problems:
        raise _fail(manifest.export_dir, problems)
