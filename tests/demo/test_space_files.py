"""scripts/space_files.py: what a Space upload holds, the file-size check, and the upload call (faked)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import space_files  # noqa: E402

from hitts_schema.manifest import MAX_FILE_BYTES  # noqa: E402


@pytest.fixture(scope="module")
def listed() -> set[str]:
    return {path for path, _ in space_files.space_files(REPO)}


@pytest.mark.slow  # lists the whole repository as an upload would (3 s)
def test_the_upload_holds_the_app_and_the_shipped_exports(listed):
    expected = {"README.md", "requirements.txt", "app.py", "hitts_demo/service.py", "hitts_schema/metrics.py"}
    expected |= {
        "hitts_demo/data/paper_tables.json",
        "exports/hitts/manifest.json",
        "exports/hitts/model.onnx",
    }
    assert expected <= listed
    assert {p for p in listed if p.startswith("exports/hitts/model.onnx.data-")}  # the weight shards


@pytest.mark.slow  # lists the whole repository as an upload would (3 s)
def test_the_upload_leaves_out_training_tests_and_caches(listed):
    left_out = ("trainer/", "tests/", "scripts/", "benchmarks/", "results/", "docs/", ".git/", ".ci/")
    assert not [p for p in listed if p.startswith(left_out) or "__pycache__" in p or p.endswith(".pyc")]


def app_imports() -> set[str]:
    """Top-level names that app.py and hitts_demo import (absolute imports only)."""
    imported: set[str] = set()
    for path in [REPO / "app.py", *sorted((REPO / "hitts_demo").rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
    return imported


@pytest.mark.slow  # lists the whole repository as an upload would (3 s)
def test_every_project_module_the_app_imports_is_uploaded(listed):
    """app.py and hitts_demo import only packages that ship (or are installed from requirements.txt)."""
    project = {"app", "hitts_demo", "hitts_schema", "trainer", "scripts", "benchmarks", "tests"}
    imported = app_imports()
    needed = imported & project
    assert needed == {"hitts_demo", "hitts_schema"}
    assert all(any(p.startswith(f"{pkg}/") for p in listed) for pkg in needed)


@pytest.mark.slow  # lists the whole repository as an upload would (3 s)
def test_the_dry_run_passes_on_this_repository(capsys):
    assert space_files.main([]) == 0
    assert "MB in all" in capsys.readouterr().out


def test_a_file_over_the_limit_fails_the_check(tmp_path, capsys):
    (tmp_path / "app.py").write_text("print('hi')\n")
    (tmp_path / "exports" / "m").mkdir(parents=True)
    with (tmp_path / "exports" / "m" / "model.onnx").open("wb") as fh:
        fh.truncate(MAX_FILE_BYTES)  # exactly the limit: refused
    (tmp_path / "trainer").mkdir()
    (tmp_path / "trainer" / "big.bin").write_bytes(b"x")  # not uploaded, not counted
    assert space_files.main(["--root", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "exports/m/model.onnx" in captured.err and "trainer/big.bin" not in captured.out


def test_upload_calls_upload_folder_for_a_space_with_the_listed_patterns(tmp_path, monkeypatch):
    calls = {}

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            calls["create"] = (repo_id, kwargs)

        def upload_folder(self, **kwargs):
            calls["upload"] = kwargs

    monkeypatch.setattr(space_files, "HfApi", FakeApi)
    (tmp_path / "app.py").write_text("print('hi')\n")
    assert space_files.main(["--root", str(tmp_path), "--upload", "someone/hitts-studio"]) == 0
    assert calls["create"] == (
        "someone/hitts-studio",
        {"repo_type": "space", "space_sdk": "gradio", "exist_ok": True},
    )
    up = calls["upload"]
    assert up["repo_type"] == "space" and up["repo_id"] == "someone/hitts-studio"
    assert up["allow_patterns"] == space_files.ALLOW_PATTERNS and up["folder_path"] == str(tmp_path)


def test_an_oversized_repository_is_never_uploaded(tmp_path, monkeypatch):
    monkeypatch.setattr(space_files, "HfApi", lambda: pytest.fail("must not upload"))
    (tmp_path / "app.py").write_bytes(b"x" * MAX_FILE_BYTES)
    assert space_files.main(["--root", str(tmp_path), "--upload", "someone/hitts-studio"]) == 1


IMPORT_TO_REQUIREMENT = {"PIL": "pillow", "onnxruntime": "onnxruntime-gpu"}
"""Import names whose distribution (as requirements.txt names it) differs."""


def test_requirements_install_every_third_party_package_the_app_imports():
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    imported = app_imports()
    third_party = imported - stdlib - {"hitts_demo", "hitts_schema"}
    lines = [ln.split("#")[0].strip() for ln in (REPO / "requirements.txt").read_text().splitlines()]
    names = {ln.split(">")[0].split("<")[0].split("=")[0].strip().lower() for ln in lines if ln}
    missing = {m for m in third_party if IMPORT_TO_REQUIREMENT.get(m, m).lower() not in names}
    assert third_party and not missing, f"imported by the app but not in requirements.txt: {missing}"
