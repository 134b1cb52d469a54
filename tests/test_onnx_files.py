"""trainer.onnx_files: models saved with every file below a limit, weights byte for byte (torch-free)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from trainer.onnx_files import ShardError, model_files, reshard, save_onnx, shard_files

DIM = 48
LAYERS = 4
WEIGHT_BYTES = DIM * DIM * 4  # 9216
IR_VERSION = 10  # what this onnxruntime reads (onnx.helper defaults to its newest)


def small_model() -> onnx.ModelProto:
    """x (1, DIM) -> LAYERS MatMuls with seeded weights -> Unsqueeze/Squeeze on int64 axes -> y (1, DIM)."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((DIM, DIM)).astype(np.float32), f"w{i}")
        for i in range(LAYERS)
    ]
    inits.append(numpy_helper.from_array(np.zeros(300, np.int64), "axes_pad"))  # 2400 bytes, integer
    inits.append(numpy_helper.from_array(np.array([0], np.int64), "axes"))
    nodes, prev = [], "x"
    for i in range(LAYERS):
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"h{i}"]))
        prev = f"h{i}"
    nodes.append(helper.make_node("Unsqueeze", [prev, "axes"], ["u"]))
    nodes.append(helper.make_node("Squeeze", ["u", "axes"], ["y"]))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, DIM])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, DIM])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=IR_VERSION)


def run(path: Path) -> np.ndarray:
    x = np.ones((1, DIM), np.float32)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def weights(path: Path) -> dict[str, bytes]:
    return {t.name: numpy_helper.to_array(t).tobytes() for t in onnx.load(str(path)).graph.initializer}


def weights_of(model: onnx.ModelProto) -> dict[str, bytes]:
    return {t.name: numpy_helper.to_array(t).tobytes() for t in model.graph.initializer}


def test_a_small_model_stays_one_file(tmp_path):
    files = save_onnx(small_model(), tmp_path / "model.onnx")
    assert files == [tmp_path / "model.onnx"] and not shard_files(tmp_path / "model.onnx")


def test_a_large_model_is_sharded_below_the_limit_with_identical_weights(tmp_path):
    inline = tmp_path / "inline" / "model.onnx"
    inline.parent.mkdir()
    save_onnx(small_model(), inline)
    path = tmp_path / "model.onnx"
    limit = 2 * WEIGHT_BYTES + 100  # the whole model (4 weights) is over it
    files = save_onnx(small_model(), path, max_file_bytes=limit, shard_bytes=2 * WEIGHT_BYTES)
    assert [f.name for f in files] == ["model.onnx", "model.onnx.data-0", "model.onnx.data-1"]
    assert all(f.stat().st_size < limit for f in files)
    assert weights(path) == weights(inline)
    np.testing.assert_array_equal(run(path), run(inline))
    onnx.checker.check_model(str(path), full_check=True)
    stored = {t.name: t for t in onnx.load(str(path), load_external_data=False).graph.initializer}
    assert stored["axes_pad"].data_location == TensorProto.DEFAULT  # integers stay in the graph
    assert stored["w0"].data_location == TensorProto.EXTERNAL


def test_resaving_removes_stale_shards(tmp_path):
    path = tmp_path / "model.onnx"
    save_onnx(small_model(), path, max_file_bytes=2 * WEIGHT_BYTES + 100, shard_bytes=WEIGHT_BYTES)
    assert len(shard_files(path)) == LAYERS
    before = weights(path)
    reshard(path)  # default limit: one file again
    assert model_files(path) == [path] and weights(path) == before


def test_a_tensor_larger_than_a_shard_gets_its_own_and_one_over_the_file_limit_is_flagged(tmp_path):
    path = tmp_path / "model.onnx"
    files = save_onnx(small_model(), path, max_file_bytes=WEIGHT_BYTES + 100, shard_bytes=WEIGHT_BYTES // 2)
    assert len(files) == 1 + LAYERS and all(f.stat().st_size < WEIGHT_BYTES + 100 for f in files)
    with pytest.raises(ShardError, match="one tensor is larger"):
        save_onnx(small_model(), path, max_file_bytes=WEIGHT_BYTES, shard_bytes=WEIGHT_BYTES // 2)
    with pytest.warns(UserWarning, match="Space would refuse"):  # not strict: saved, and loads
        save_onnx(
            small_model(), path, max_file_bytes=WEIGHT_BYTES, shard_bytes=WEIGHT_BYTES // 2, strict=False
        )
    assert weights(path) == weights_of(small_model())
