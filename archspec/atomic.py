"""Files written whole or not at all: a temp file beside the target, flushed, then renamed over it.

A crash mid-write leaves the previous file as it was (and at worst a stray temp file, which the
next write replaces)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import SpecError


def write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    def write(f: BinaryIO) -> None:
        f.write(text.encode())

    write_atomically(path, write)


def check_writable(path: Path, parameter: str) -> None:
    """Refuse, before any work is done, a file path that cannot be written."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise SpecError(f"{path}: is a directory", parameter=parameter)
    if not parent.is_dir():
        raise SpecError(f"{path}: directory {parent} does not exist", parameter=parameter)
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise SpecError(f"{path}: not writable", parameter=parameter)


def write_files(directory: Path, files: dict[str, str], parameter: str = "out") -> None:
    """Each file written atomically into `directory` (created if need be)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            write_text(directory / name, text)
    except OSError as exc:
        raise SpecError(f"{directory}: cannot write ({exc.strerror or exc})", parameter=parameter) from None
