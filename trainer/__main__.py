"""``python -m trainer {prepare,train,discover,evaluate,export,pipeline}``: see ``trainer.cli``."""

from __future__ import annotations

import sys

from .cli import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
