"""The one writer: every file archspec writes, and the one check every output path passes.

Before any work, `check_writable` (a file: --write, --plot, export's and profile's --out) and
`check_writable_dir` (a directory: compile's, train's and search's --out) refuse, in one line with
exit status 2, a place that cannot take the output: a path the file system cannot be asked about
(`limits.checked_path`), a kernel file system (/proc, /sys, /dev), a missing or unwritable
directory, a read-only mount, or a disk without room (less than MIN_FREE_BYTES free, or what the
caller says it needs).

Files are then written whole or not at all: a temp file beside the target, flushed, then renamed
over it. A crash mid-write leaves the previous file as it was (and at worst a stray temp file, which
the next write replaces). Only regular files are replaced: a symbolic link or a device node where a
file is to be written is refused, not followed or clobbered. Logs that grow (metrics.csv, worker
logs) are appended to through `Appender`, a record at a time, a failed record cut back off.

A write that fails while a command runs is one line too: out of room (ENOSPC, a quota, a file-size
limit) raises `DiskFull` (exit status 1, naming the file; what was written before is intact), any
other failure a SpecError about the path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Optional

from .errors import DiskFull, SpecError
from .limits import MIN_FREE_BYTES, checked_path

SYSTEM = ("/proc", "/sys", "/dev")  # the kernel's file systems: nothing archspec writes goes there
OUT_OF_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def write_error(path: object, exc: OSError, parameter: Optional[str] = None) -> Exception:
    """The one-line error for an OSError met while writing `path`."""
    if exc.errno in OUT_OF_ROOM:
        return DiskFull(path, exc)
    return SpecError(f"{path}: cannot write ({exc.strerror or exc})", parameter=parameter)


def _target_problem(path: Path) -> str | None:
    """Why `path` may not be replaced: it must be absent or a regular file."""
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):  # nothing to replace: the place is judged apart
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


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def _place_problem(directory: Path, need: int, create: bool) -> str | None:
    """Why files cannot be written in `directory` (created, with its missing parents, if `create`):
    judged on the directory, or on its nearest existing ancestor."""
    resolved = os.path.realpath(directory)
    system = next((d for d in SYSTEM if resolved == d or resolved.startswith(d + "/")), None)
    if system is not None:
        return f"{system} is the kernel's, not a place for files"
    existing = Path(resolved)
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if existing != Path(resolved) and not create:
        return f"directory {directory} does not exist"
    if not existing.is_dir():
        return f"{existing} is not a directory"
    try:
        fs = os.statvfs(existing)
    except OSError as exc:
        return f"cannot be written ({exc.strerror or exc})"
    if fs.f_flag & os.ST_RDONLY:
        return f"{existing} is on a read-only file system"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"directory {existing} is not writable"
    free = fs.f_bavail * fs.f_frsize
    if free < MIN_FREE_BYTES:
        return f"the disk is full ({_size(free)} free on the file system of {existing})"
    if free < need:
        return f"not enough room ({_size(free)} free on the file system of {existing}; this needs {_size(need)})"
    return None


def check_writable(path: Path, parameter: str, need: int = 0) -> Path:
    """Refuse, before any work is done, a file path that cannot be written: `path` if it can."""
    path = checked_path(path, parameter=parameter)
    problem = _target_problem(path)
    if problem is None:
        parent = path.parent if str(path.parent) else Path(".")
        place = _place_problem(parent, need, create=False)
        problem = f"cannot write: {place}" if place else None
        if problem is None and path.exists() and not os.access(path, os.W_OK):
            problem = "not writable"
    if problem is not None:
        raise SpecError(f"{path}: {problem}", parameter=parameter)
    return path


def check_writable_dir(directory: Path, parameter: str, need: int = 0) -> Path:
    """Refuse, before any work is done, an output directory that cannot be created or written."""
    directory = checked_path(directory, parameter=parameter)
    problem = None
    if os.path.lexists(directory) and not directory.is_dir():
        problem = "not a directory"
    place = None if problem else _place_problem(directory, need, create=True)
    problem = problem or (f"cannot write: {place}" if place else None)
    if problem is not None:
        raise SpecError(f"{directory}: {problem}", parameter=parameter)
    return directory


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
    except OSError as exc:
        raise write_error(path, exc, parameter) from None
    finally:
        with contextlib.suppress(OSError):  # a directory that vanished or became read-only: nothing there
            tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str, *, parameter: str | None = None) -> None:
    def write(f: BinaryIO) -> None:
        f.write(text.encode())

    write_atomically(path, write, parameter=parameter)


def write_files(directory: Path, files: dict[str, str], parameter: str = "out") -> None:
    """Each file written atomically into `directory` (created if need be)."""
    check_writable_dir(directory, parameter)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(directory, exc, parameter) from None
    for name, text in files.items():
        write_text(directory / name, text, parameter=parameter)


def open_append(path: Path, *, parameter: str | None = None) -> int:
    """A descriptor appending to the regular file `path` (created if absent): a link is not
    followed, and a FIFO or device there is refused rather than opened for good (the open does not
    block)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(checked_path(path, parameter=parameter), flags, 0o666)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):  # a link; a FIFO nobody reads
            raise SpecError(f"{path}: {_target_problem(path) or 'cannot be written'}", parameter=parameter) from None
        raise write_error(path, exc, parameter) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SpecError(f"{path}: {_target_problem(path) or 'not a regular file'}", parameter=parameter)
    os.set_blocking(fd, True)
    return fd


class Appender:
    """A log archspec appends to (metrics.csv, evaluations.jsonl): each record is written whole or
    not at all (a failed write is cut back off the file), and a full disk is `DiskFull`."""

    def __init__(self, path: Path, *, parameter: str | None = None) -> None:
        self.path = path
        self.fd = open_append(path, parameter=parameter)

    def write(self, text: str) -> None:
        data = text.encode()
        start = os.fstat(self.fd).st_size
        try:
            written = 0
            while written < len(data):
                written += os.write(self.fd, data[written:])
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, start)
            raise write_error(self.path, exc) from None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
