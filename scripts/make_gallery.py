"""Write synthetic gallery samples for the dashboard into ``exports/gallery/<name>/``.

Each sample: ``rgb.png`` (uint8 RGB), ``semseg.png`` (uint8 class 0..12, 255 = ignore),
``depth.png`` (uint16 millimetres, 0 = missing) and ``normals.png`` (uint8 RGB (n + 1) / 2 * 255).
The scenes are test-split scenes of the synthetic generator (seed 0), the same the models are
evaluated on: `python scripts/make_gallery.py [--count 6]`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from trainer.data.synthetic import generate_scene

REPO = Path(__file__).resolve().parents[1]
MM_PER_M = 1000.0
PNG_IGNORE = 255


def write_sample(out: Path, scene: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray((scene["image"] * 255).round().astype(np.uint8)).save(out / "rgb.png")
    label = scene["label"].astype(np.int64)
    Image.fromarray(np.where(label < 0, PNG_IGNORE, label).astype(np.uint8)).save(out / "semseg.png")
    depth_mm = np.clip(scene["depth"][..., 0] * MM_PER_M, 0, np.iinfo(np.uint16).max).round()
    Image.fromarray(depth_mm.astype(np.uint16)).save(out / "depth.png")
    normals = ((scene["normal"] + 1.0) / 2.0 * 255).round().clip(0, 255).astype(np.uint8)
    Image.fromarray(normals).save(out / "normals.png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=6)
    p.add_argument("--out", type=Path, default=REPO / "exports" / "gallery")
    a = p.parse_args()
    for i in range(a.count):
        write_sample(a.out / f"synthetic-test-{i:03d}", generate_scene(0, "val", i))


if __name__ == "__main__":
    main()
