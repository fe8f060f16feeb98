"""The one reader: every file archspec reads goes through here, whoever named it. Specs, recipes
and search files (YAML), profiles, run.json, search.json and the other records a run or a search
keeps (JSON), metrics.csv, checkpoints (bytes, which the runner hands to torch.load), images, and
the directories a command is given to read from (ImageFolder roots, run and search directories,
--spec-root) are all opened, checked and bounded by the same rules:

- The path passes `limits.checked_path` (no NUL byte, nothing unencodable, within the OS's length
  limits, no loop of symbolic links).
- The kernel's files are not read: a path that leads, once every symbolic link is followed, into
  /proc, /sys or /dev, or a file on the same device as /proc or /sys, is refused before it is
  opened (opening some device files has effects) and checked again on the open descriptor.
- Symbolic links (the allowed roots): a link is followed wherever it leads except into those
  kernel file systems, and must end at a regular file (or, for a directory check, a directory).
  Links are common where datasets, runs and specs are shared, and a path given on the command line
  could name the link's target itself, so no narrower root protects anything; the one narrower
  rule is `base:`, whose file must lie under the spec roots (archspec.spec.base_file), because a
  shared spec names it rather than the user.
- Regular files only: the path is stat'ed before it is opened, opened with O_NONBLOCK | O_NOCTTY
  (a FIFO or a terminal put there meanwhile cannot block the open or become the controlling
  terminal) and checked again with fstat on the descriptor, so that what is checked is what is
  read. No read can block: a regular file's reads always return.
- A size limit per kind of file (archspec.limits), checked on the descriptor before anything is
  read and again while reading (a file that grows meanwhile stops at the limit).
- Structure: YAML through archspec.yaml_source (node, alias-expansion and depth bounds while it
  is composed); JSON with its nesting depth counted on the text before json.loads recurses.

Anything else ends in a `SpecError` naming the file and the reason (`parameter`: the argument, or
the command-line flag, that named it), which the CLI prints as one line with exit status 2.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any, Optional, Union

from .errors import SpecError
from .limits import (
    MAX_CHECKPOINT_BYTES,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_IMAGE_BYTES,
    MAX_JOURNAL_BYTES,
    MAX_METRICS_BYTES,
    MAX_PROFILE_BYTES,
    MAX_RECORD_BYTES,
    checked_path,
)
from .yaml_source import Document, parse_yaml

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Kind:
    """A kind of file archspec reads: what it is called in messages, and its size limit."""

    name: str  # "a spec may be at most ..."
    noun: str  # "not a spec file (...)"
    limit: int


SPEC = Kind("spec", "spec file", MAX_FILE_BYTES)
RECIPE = Kind("recipe", "recipe file", MAX_FILE_BYTES)
SEARCH = Kind("search file", "search file", MAX_FILE_BYTES)
PROFILE = Kind("profile", "profile", MAX_PROFILE_BYTES)
# run.json, search.json, finetune-rR.json, a launched process's report
RECORD = Kind("record", "record file", MAX_RECORD_BYTES)
JOURNAL = Kind("study journal", "study journal", MAX_JOURNAL_BYTES)  # Optuna's, which Optuna reads
METRICS = Kind("metrics log", "metrics log", MAX_METRICS_BYTES)
CHECKPOINT = Kind("checkpoint", "checkpoint", MAX_CHECKPOINT_BYTES)
IMAGE = Kind("image", "image", MAX_IMAGE_BYTES)
KINDS = (SPEC, RECIPE, SEARCH, PROFILE, RECORD, JOURNAL, METRICS, CHECKPOINT, IMAGE)

SYSTEM = ("/proc", "/sys", "/dev")  # the kernel's file systems: endless, blocking or with effects when read
_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def _at_most(kind: Kind) -> str:
    return f"a {kind.name} may be at most {kind.limit} ({_size(kind.limit)})"


def _system(resolved: str) -> Optional[str]:
    """The kernel file system `resolved` (a path without links) lies in, or None."""
    return next((d for d in SYSTEM if resolved == d or resolved.startswith(d + "/")), None)


def _kernel_devices() -> set[int]:
    """The devices of /proc and /sys, wherever else they are mounted too."""
    found = set()
    for d in SYSTEM[:2]:
        with contextlib.suppress(OSError):
            found.add(os.stat(d).st_dev)
    return found


def _what(mode: int) -> str:
    """A file that is not regular, in words."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a plain file"


class _Refused:
    """Raises the reader's errors, all naming the same file and flag."""

    def __init__(self, shown: str, parameter: Optional[str]) -> None:
        self.shown, self.parameter = shown, parameter

    def __call__(self, message: str) -> SpecError:
        return SpecError(message, file=self.shown, parameter=self.parameter)


def _resolved(path: PathLike, refuse: _Refused, kind: Kind) -> str:
    """`path` with every link followed; refused if that lands in a kernel file system."""
    checked_path(path, file=refuse.shown, parameter=refuse.parameter)
    try:
        resolved = os.path.realpath(path)
    except (OSError, ValueError) as exc:
        raise refuse(f"cannot be followed ({getattr(exc, 'strerror', None) or exc})") from None
    system = _system(resolved)
    if system is not None:
        raise refuse(f"not a {kind.noun} (a system file under {system})")
    return resolved


def _not_regular(mode: int) -> str:
    what = _what(mode)
    return "not a regular file" if what == "a directory" else f"not a regular file ({what})"


def _open(path: PathLike, kind: Kind, refuse: _Refused) -> int:
    """A descriptor on the regular file `path` leads to, checked before and after it is opened."""
    resolved = _resolved(path, refuse, kind)
    try:
        before = os.stat(resolved)
    except FileNotFoundError:
        raise refuse("no such file") from None
    except OSError as exc:
        raise refuse(f"cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(before.st_mode):
        raise refuse(_not_regular(before.st_mode))
    try:
        fd = os.open(resolved, _FLAGS | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise refuse("no such file") from None
    except OSError as exc:
        raise refuse(f"cannot read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # replaced between the two looks
            raise refuse(_not_regular(info.st_mode))
        if info.st_dev in _kernel_devices():
            raise refuse(f"not a {kind.noun} (a file of the kernel's)")
        if info.st_size > kind.limit:
            raise refuse(f"file is {info.st_size} bytes; {_at_most(kind)}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_file(path: PathLike, kind: Kind, *, shown_as: Optional[str] = None, parameter: Optional[str] = None) -> Path:
    """`path`, once it is a file the reader would read (without reading it): for a command line's
    flags, which are checked as they are parsed, before any slow import or any work."""
    os.close(_open(path, kind, _Refused(str(path) if shown_as is None else shown_as, parameter)))
    return Path(path)


def read_bytes(path: PathLike, kind: Kind, *, shown_as: Optional[str] = None, parameter: Optional[str] = None) -> bytes:
    """The bytes of the regular file `path`, at most `kind.limit` of them, read once."""
    refuse = _Refused(str(path) if shown_as is None else shown_as, parameter)
    fd = _open(path, kind, refuse)
    try:
        size = os.fstat(fd).st_size
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(size + 1)  # one allocation of the file's size
            parts = [data]
            total = len(data)
            while len(data) and total <= kind.limit and total > size:  # grown while read
                data = f.read(min(1 << 20, kind.limit + 1 - total))
                parts.append(data)
                total += len(data)
    except OSError as exc:
        raise refuse(f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if total > kind.limit:
        raise refuse(f"file is over {kind.limit} bytes; {_at_most(kind)}")
    return parts[0] if len(parts) == 1 else b"".join(parts)


def read_text(path: PathLike, kind: Kind, *, shown_as: Optional[str] = None, parameter: Optional[str] = None) -> str:
    """The file as UTF-8 text."""
    shown = str(path) if shown_as is None else shown_as
    raw = read_bytes(path, kind, shown_as=shown, parameter=parameter)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"not UTF-8 text (byte {exc.start})", file=shown, parameter=parameter) from None


def read_yaml(
    path: PathLike, kind: Kind = SPEC, *, shown_as: Optional[str] = None, parameter: Optional[str] = None
) -> Document:
    """A YAML mapping (spec, recipe, search file) with the location of every value."""
    shown = str(path) if shown_as is None else shown_as
    return parse_yaml(read_text(path, kind, shown_as=shown, parameter=parameter), shown)


# a JSON string, as json.loads reads it: quote, then characters other than quote and backslash, or
# a backslash and whatever follows it, to the closing quote (or, unterminated, to the end)
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
# outside strings: +1 (as a signed byte) for each opening bracket, -1 for each closing one, nothing else
_SIGNS = bytes(1 if c in b"[{" else 255 if c in b"]}" else 0 for c in range(256))
_OTHERS = bytes(c for c in range(256) if c not in b"[]{}")
_PAIR = b"\x01\xff"
_CHUNK = 1 << 16


def json_too_deep(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether `text` nests arrays and objects more than `limit` deep, counted without recursion
    and outside strings (as json.loads would open them)."""
    signs = _JSON_STRING.sub("", text).encode("utf-8", "surrogatepass").translate(_SIGNS, _OTHERS)
    # each pass takes out the innermost pairs (in C): the depth drops by one at most per pass
    reduced, passes = signs, 0
    while passes < 4 and len(shorter := reduced.replace(_PAIR, b"")) < len(reduced):
        reduced, passes = shorter, passes + 1
    low = _depth(reduced, limit)  # the depth is from low to low + passes
    if low > limit or low + passes <= limit:
        return low > limit
    return _depth(signs, limit) > limit


def _depth(signs: bytes, limit: int) -> int:
    """The deepest running sum of `signs`, stopping once it passes `limit`."""
    depth = peak = 0
    view = memoryview(signs).cast("b")
    for start in range(0, len(view), _CHUNK):
        running = list(accumulate(view[start : start + _CHUNK], initial=depth))
        peak, depth = max(peak, max(running)), running[-1]
        if peak > limit:
            break
    return peak


def parse_json(text: str, shown: str, parameter: Optional[str] = None) -> Any:
    """JSON text, its depth bounded before it is parsed."""
    if json_too_deep(text):
        raise SpecError(f"JSON nested deeper than {MAX_DEPTH} levels", file=shown, parameter=parameter)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"not a JSON file ({exc})", file=shown, parameter=parameter) from None
    except (ValueError, RecursionError) as exc:  # a number of more than 4,300 digits, say
        raise SpecError(f"not a JSON file ({str(exc)[:120]})", file=shown, parameter=parameter) from None


def read_json(path: PathLike, kind: Kind, *, shown_as: Optional[str] = None, parameter: Optional[str] = None) -> Any:
    """A JSON file (profile, run.json, search.json, ...), parsed; what it holds is the caller's to check."""
    shown = str(path) if shown_as is None else shown_as
    return parse_json(read_text(path, kind, shown_as=shown, parameter=parameter), shown, parameter)


def check_directory(path: PathLike, *, parameter: Optional[str] = None, what: str = "directory") -> Path:
    """`path`, once it is a directory archspec may read from (an ImageFolder root, a run or search
    directory, a spec root): it exists, is a directory once its links are followed, and is not the
    kernel's. Refusals name the path in the message: `DIR: no such directory`."""
    checked_path(path, parameter=parameter)
    resolved = os.path.realpath(path)
    system = _system(resolved)
    if system is not None:
        raise SpecError(f"{path}: not a {what} archspec reads ({system} is the kernel's)", parameter=parameter)
    try:
        info = os.stat(resolved)
    except FileNotFoundError:
        raise SpecError(f"{path}: no such directory", parameter=parameter) from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read ({exc.strerror or exc})", parameter=parameter) from None
    if not stat.S_ISDIR(info.st_mode):
        raise SpecError(f"{path}: not a directory ({_what(info.st_mode)})", parameter=parameter)
    if info.st_dev in _kernel_devices():
        raise SpecError(f"{path}: not a {what} archspec reads (the kernel's)", parameter=parameter)
    return Path(path)


def regular_or_absent(path: PathLike, kind: Kind, *, parameter: Optional[str] = None) -> Path:
    """`path`, if it is absent or a regular file the reader would read: for a file a library
    opens itself (Optuna's journal), so that it never opens a FIFO or a device there."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return Path(path)
    except OSError:
        pass  # any other failure to stat is check_file's to name, in its one line
    return check_file(path, kind, parameter=parameter)
