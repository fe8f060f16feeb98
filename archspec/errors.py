"""The one error type users see, and where in which file it points."""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass
from typing import Union

FieldPath = tuple[Union[str, int], ...]

MAX_LINE = 500  # characters of any one error line, however long the values it quotes
# what must not reach a terminal raw: control characters (a newline would make two lines), lone
# surrogates (unencodable), and the invisible or direction-changing format characters
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ud800-\udfff]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: re.Match[str]) -> str:
    c = char.group()
    return _ESCAPES.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def one_line(text: str, limit: int = MAX_LINE) -> str:
    """`text` as one printable line of at most `limit` characters: unsafe characters escaped, and
    a long text cut in the middle, so that both its start and its end (often the hint) survive."""
    if len(text) <= limit:
        escaped = _UNSAFE.sub(_escape, text)
        if len(escaped) <= limit:
            return escaped
    keep = max(limit - 5, 3)
    head = _UNSAFE.sub(_escape, text[:keep])[: keep - keep // 3]  # escaping only lengthens: cut after
    tail = _UNSAFE.sub(_escape, text[-keep:])
    return f"{head} ... {tail[len(tail) - (keep - len(head)) :]}"


def format_path(path: FieldPath) -> str:
    """`("stages", 2, "stride")` -> `stages[2].stride`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True)
class Location:
    file: str
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class SpecError(Exception):
    """Bad input: a spec, a function's argument or a file. Rendered as one line; the CLI exits
    with status 2.

    The line reads `file:line:col: field.path: message`, with the parts that are unknown left out.
    `field` names a spec (or recipe) field; `parameter` names the argument of the core function
    that was given a bad value, which the CLI shows as the flag that set it (`resolution` ->
    `--resolution`).
    """

    def __init__(
        self,
        message: str,
        *,
        field: FieldPath | str | None = None,
        parameter: str | None = None,
        location: Location | None = None,
        file: str | None = None,
    ) -> None:
        self.message = message
        self.field = format_path(field) if isinstance(field, tuple) else field
        self.parameter = parameter
        if parameter is not None and self.field is None:
            self.field = parameter
        self.location = location
        self.file = file if file is not None else (location.file if location else None)
        self.every: tuple[SpecError, ...] = (self,)  # all the errors found, where validation found several
        super().__init__(self.line())

    def shown_as(self, flag: str) -> SpecError:
        """This error with its parameter named as the command-line flag that set it."""
        self.field = flag
        self.args = (self.line(),)
        return self

    def line(self) -> str:
        """The one line users see: escaped and bounded here, whatever the file name, field or
        message quote (a key holding a newline, a megabyte-long name)."""
        parts = []
        if self.location is not None:
            parts.append(one_line(str(self.location), 200))
        elif self.file:
            parts.append(one_line(self.file, 200))
        if self.field:
            parts.append(one_line(self.field, 120))
        parts.append(one_line(self.message, MAX_LINE - sum(len(p) + 2 for p in parts)))
        return ": ".join(parts)


class Diverged(Exception):
    """Training's loss became NaN/Inf: the run stops, its last good checkpoint stays as it was.
    Rendered as one line; the CLI exits with status 1."""


_OUT_OF_ROOM = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "file size limit"}


class DiskFull(Exception):
    """A write ran out of room while a command ran (no space left, a quota, a file-size limit): one
    line naming the file, exit status 1. Files are replaced whole, so what was written before is
    intact; `kept` says what a run can go on from."""

    def __init__(self, path: object, error: OSError, kept: str = "") -> None:
        self.path, self.error, self.kept = path, error, kept
        what = _OUT_OF_ROOM.get(error.errno or 0, "cannot write")
        super().__init__(f"{what}: {path} ({error.strerror or error})" + (f"; {kept}" if kept else ""))

    def keeping(self, kept: str) -> DiskFull:
        """This error, saying what is kept."""
        return DiskFull(self.path, self.error, kept)


class ProcessFailed(Exception):
    """A process archspec started (launched workers, the IPU program) failed and has said why on
    stderr itself. The CLI exits with its status."""

    def __init__(self, what: str, code: int) -> None:
        super().__init__(f"{what} exited with status {code}")
        self.code = code


class Interrupted(Exception):
    """Training was stopped by the user (Ctrl-C); the message says what was kept and how to go on.
    The CLI exits with status 130."""
