"""Re-save the ONNX models of export folders so that every file is below the Space's file limit.

    python scripts/shard_exports.py [exports/hitts exports/mtl ...]   (default: every exports/*/)

A model at or over ``MAX_FILE_BYTES`` keeps its graph in ``model.onnx`` and its weights, byte for
byte, in ``model.onnx.data-0``, ``-1``, ... (``trainer.onnx_files.save_onnx``, what the export now
writes); smaller models are left as one file. Torch-free; checks that the re-saved model holds the
same weights and passes ``onnx.checker`` before it reports.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from trainer.onnx_files import model_files, reshard

REPO = Path(__file__).resolve().parents[1]


def initializer_bytes(path: Path) -> dict[str, bytes]:
    """Initializer name -> its data bytes, wherever they are stored."""
    model = onnx.load(str(path))
    return {t.name: onnx.numpy_helper.to_array(t).tobytes() for t in model.graph.initializer}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path, help="export folders (default: exports/*/)")
    args = parser.parse_args(argv)
    folders = args.folders or sorted(p for p in (REPO / "exports").iterdir() if p.is_dir())
    for folder in folders:
        for path in sorted(folder.glob("*.onnx")):
            before = initializer_bytes(path)
            reshard(path, strict=True)  # shipped files: every one below the limit, or fail
            if initializer_bytes(path) != before:
                print(f"{path}: the re-saved weights differ", file=sys.stderr)
                return 1
            onnx.checker.check_model(str(path), full_check=True)
            sizes = ", ".join(f"{f.name} {f.stat().st_size / 1e6:.2f} MB" for f in model_files(path))
            print(f"{path.relative_to(folder.parent)}: {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
