"""Files written whole or not at all: a temp file beside the target, flushed, then renamed over it.

A crash mid-write leaves the previous file as it was (and at worst a stray temp file, which the
next write replaces). Only regular files are replaced: a symbolic link or a device node where a
file is to be written is refused, not followed or clobbered.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import SpecError
from .limits import checked_path


def _target_problem(path: Path) -> str | None:
    """Why `path` may not be replaced: it must be absent or a regular file."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be written ({exc.strerror or exc})"
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link; archspec replaces only regular files (remove it, or give its target)"
    if stat.S_ISDIR(info.st_mode):
        return "is a directory"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file (a device, FIFO or socket); archspec writes only regular files"
    return None


def write_atomically(path: Path, write: Callable[[BinaryIO], object], *, parameter: str | None = None) -> None:
    checked_path(path, parameter=parameter)
    problem = _target_problem(path)
    if problem is not None:
        raise SpecError(f"{path}: {problem}", parameter=parameter)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        # a stale temp file (or a link planted in its name) is removed, never followed
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str, *, parameter: str | None = None) -> None:
    def write(f: BinaryIO) -> None:
        f.write(text.encode())

    write_atomically(path, write, parameter=parameter)


def check_writable(path: Path, parameter: str) -> None:
    """Refuse, before any work is done, a file path that cannot be written."""
    checked_path(path, parameter=parameter)
    parent = path.parent if str(path.parent) else Path(".")
    problem = _target_problem(path)
    if problem is not None:
        raise SpecError(f"{path}: {problem}", parameter=parameter)
    if not parent.is_dir():
        raise SpecError(f"{path}: directory {parent} does not exist", parameter=parameter)
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise SpecError(f"{path}: not writable", parameter=parameter)


def write_files(directory: Path, files: dict[str, str], parameter: str = "out") -> None:
    """Each file written atomically into `directory` (created if need be)."""
    checked_path(directory, parameter=parameter)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            write_text(directory / name, text, parameter=parameter)
    except OSError as exc:
        raise SpecError(f"{directory}: cannot write ({exc.strerror or exc})", parameter=parameter) from None
