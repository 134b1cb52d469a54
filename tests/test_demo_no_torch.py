"""Hard rule: nothing under hitts_demo/ or app.py imports torch, directly or transitively."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "demo"))
from fake_export import cached_fake_exports_root  # noqa: E402

SOURCES = sorted((REPO / "hitts_demo").rglob("*.py")) + [REPO / "app.py"]
FORBIDDEN = ("torch", "torchvision", "trainer")


def test_no_source_file_imports_torch_or_the_trainer():
    for path in SOURCES:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            assert not set(roots) & set(FORBIDDEN), f"{path.relative_to(REPO)}:{node.lineno} imports {roots}"


def test_importing_and_running_the_app_never_loads_torch():
    """In a fresh interpreter: import everything, build the app, run both models and every view."""
    exports = cached_fake_exports_root()
    code = f"""
import sys, pkgutil, importlib, numpy as np
import app, hitts_demo
for mod in pkgutil.walk_packages(hitts_demo.__path__, "hitts_demo."):
    importlib.import_module(mod.name)
from hitts_demo.downloads import SessionFiles
from hitts_demo.service import Studio
from hitts_demo.views import consistency, inspector, metrics, pseudo, tokens
studio = Studio({str(exports)!r}, nyuv2_dir=None)
studio.warm()
demo = app.build_app(studio, SessionFiles())
a = studio.analyze(np.zeros((40, 50, 3), np.uint8), variant="fp16")
tokens.tokens_view(a, "hitts", "semseg", None)
pseudo.pseudo_view(a, "hitts", {{}})
inspector.inspect_pixel(a, 3, 4)
consistency.consistency_view(a, "hitts")
metrics.metrics_view(studio.runs_dir, studio.paper_tables, None, None)
bad = sorted(m for m in sys.modules if m.split(".")[0] in {FORBIDDEN!r})
assert not bad, bad
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]
