"""What a Hugging Face Space upload of this repository contains, checked against the Space's file limit.

    python scripts/space_files.py                       # dry run: list, sizes, total; exit 1 if a file is too big
    python scripts/space_files.py --upload USER/SPACE   # the same check, then upload (needs `hf auth login`)

The Space runs ``app.py`` (README front matter: ``sdk: gradio``, ``app_file: app.py``) after installing
``requirements.txt``. ``app.py`` imports only ``hitts_demo`` (which imports ``hitts_schema``) and
reads ``exports/`` (models, gallery, run records); ``hitts_demo/data/`` holds the paper's tables. So
the upload is exactly ``ALLOW_PATTERNS`` minus ``IGNORE_PATTERNS``: no trainer, tests, scripts,
benchmarks, results or docs. The listing uses the very filter ``HfApi.upload_folder`` applies
(``huggingface_hub.utils.filter_repo_objects`` with the same patterns and the library's default
ignores), over the files on disk, as the upload does: a stray file in an allowed folder shows here.

A file of ``MAX_FILE_BYTES`` (10 MB) or more is refused by a Space's git unless stored with Git LFS;
this repository keeps every file below it (large ONNX models are sharded by the export), so both
``upload_folder`` and a plain ``git push`` to the Space work.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from hitts_schema.manifest import MAX_FILE_BYTES

REPO = Path(__file__).resolve().parents[1]
ALLOW_PATTERNS = [
    "README.md",  # the Space's configuration (front matter) and its page
    "requirements.txt",  # what the Space installs
    "app.py",
    "hitts_demo/*",
    "hitts_schema/*",
    "exports/*",
]
IGNORE_PATTERNS = ["*.pyc", "__pycache__/*", "*/__pycache__/*", "*.tmp", "*/.gradio/*", "*.DS_Store"]
DELETE_PATTERNS = ["hitts_demo/*", "hitts_schema/*", "exports/*"]
"""Remote files under these folders that the upload does not bring are deleted in the same commit
(e.g. a shard ``model.onnx.data-2`` left by an earlier, larger model)."""
COMMIT_MESSAGE = "Update HiTTs Studio from the repository (scripts/space_files.py)"


def space_files(root: Path = REPO) -> list[tuple[str, int]]:
    """(path relative to ``root``, size in bytes) of every file an upload of ``root`` would send."""
    root = Path(root).resolve()
    on_disk = {p.relative_to(root).as_posix(): p for p in sorted(root.glob("**/*")) if p.is_file()}
    kept = filter_repo_objects(
        on_disk, allow_patterns=ALLOW_PATTERNS, ignore_patterns=IGNORE_PATTERNS + DEFAULT_IGNORE_PATTERNS
    )
    return [(rel, on_disk[rel].stat().st_size) for rel in kept]


def untracked(root: Path, paths: list[str]) -> set[str]:
    """Those of ``paths`` that git does not track (empty when ``root`` is not a git checkout)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return set()
    tracked = set(out.decode().split("\0"))
    return {p for p in paths if p not in tracked}


def report(files: list[tuple[str, int]], stray: set[str]) -> list[str]:
    """Print the listing; returns the files at or over the limit."""
    too_big = [path for path, size in files if size >= MAX_FILE_BYTES]
    for path, size in files:
        marks = (" TOO BIG" if path in too_big else "") + (" (not in git)" if path in stray else "")
        print(f"{size / 1e6:9.3f} MB  {path}{marks}")
    total = sum(size for _, size in files)
    print(f"{len(files)} files, {total / 1e6:.2f} MB in all; limit per file {MAX_FILE_BYTES / 1e6:.0f} MB")
    if too_big:
        print(
            f"{len(too_big)} file(s) at or over the limit: {too_big}. Re-export (the export shards large "
            "models) or run scripts/shard_exports.py",
            file=sys.stderr,
        )
    return too_big


def upload(root: Path, repo_id: str) -> None:
    """Upload the listed files to the Space ``repo_id`` (created if missing), in one commit."""
    api = HfApi()
    api.create_repo(repo_id, repo_type="space", space_sdk="gradio", exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        repo_type="space",
        folder_path=str(root),
        allow_patterns=ALLOW_PATTERNS,
        ignore_patterns=list(IGNORE_PATTERNS),
        delete_patterns=DELETE_PATTERNS,
        commit_message=COMMIT_MESSAGE,
    )
    print(f"uploaded to https://huggingface.co/spaces/{repo_id}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO, help="the folder to upload (default: this repo)")
    parser.add_argument("--upload", metavar="REPO_ID", help="upload to this Space (e.g. user/hitts-studio)")
    args = parser.parse_args(argv)
    files = space_files(args.root)
    if report(files, untracked(args.root, [p for p, _ in files])):
        return 1
    if args.upload:
        upload(args.root, args.upload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
