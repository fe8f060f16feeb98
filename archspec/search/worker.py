"""A worker process of `archspec search --workers N`: `python -m archspec.search.worker DIR ...`.
It runs trials of the search in DIR until the budget is claimed; its output goes to DIR/logs/."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import SpecError
from .study import worker_main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m archspec.search.worker")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--target", type=int, default=0, help="trials in all; 0: until the deadline")
    parser.add_argument("--deadline", type=float, default=0.0, help="time.time() after which no trial starts; 0: none")
    parser.add_argument("--profile", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        worker_main(args.directory, args.index, args.target, args.deadline, args.profile)
    except SpecError as exc:
        sys.stderr.write(f"worker {args.index}: {exc.line()}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
