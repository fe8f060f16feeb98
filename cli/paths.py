"""The parsers of every argument and flag that names a path: a file or directory to read goes
through archspec's reader (archspec.reader), an output through the write check (archspec.atomic),
as it is parsed, so that a bad path is one line and exit status 2 before any slow import or any
work. tests/test_reader.py walks the command line and fails on a path that takes neither."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from archspec.atomic import check_writable, check_writable_dir
from archspec.limits import path_problem
from archspec.reader import Kind, check_directory, check_file


class Reads:
    """The parser of an argument or flag that names a file (of `kind`) or, with `kind` None, a
    directory to read. archspec's reader checks it as it is parsed, before any slow import or any
    work; the command then reads it through the reader too. `missing_ok`: a name that is not an
    existing path (a preset, `search show`, a run or spec the command will call missing) is left
    to the command; `runs`: a directory is a run (export's SOURCE); `now` False: the command alone
    checks it (`validate` reports each bad spec in turn rather than stopping at the first). The
    value is passed on as a Path, or with `text` as given (a spec may be a preset name)."""

    def __init__(
        self, kind: Optional[Kind], parameter: Optional[str], *, missing_ok: bool = False, runs: bool = False,
        now: bool = True, text: bool = False,
    ) -> None:  # fmt: skip
        self.kind, self.parameter, self.missing_ok, self.runs, self.now = kind, parameter, missing_ok, runs, now
        self.text = text
        self.__name__ = f"reads {kind.noun if kind else 'directory'}"  # click names its types

    def __call__(self, value: str) -> object:
        given = value if self.text else Path(value)
        if not self.now or (self.missing_ok and (path_problem(value) is not None or not os.path.lexists(value))):
            return given
        if self.kind is None or (self.runs and os.path.isdir(value)):
            check_directory(value, parameter=self.parameter)
        else:
            check_file(value, self.kind, parameter=self.parameter)
        return given


class Writes:
    """The parser of a flag that names an output (a file, or with `directory` a directory): the
    write check (archspec.atomic) refuses, before any work, a path that cannot take it."""

    def __init__(self, parameter: str, *, directory: bool = False, png: bool = False) -> None:
        self.parameter, self.directory, self.png = parameter, directory, png
        self.__name__ = "writes directory" if directory else "writes file"

    def __call__(self, value: str) -> Path:
        if self.png and not value.lower().endswith(".png"):  # a .txt written as PNG would mislead
            shown = repr(value) if len(value) <= 40 else repr(value[:36]) + "..."
            raise typer.BadParameter(f"the figure is a PNG: give a file name ending in .png, got {shown}")
        if self.directory:
            return check_writable_dir(Path(value), self.parameter)
        return check_writable(Path(value), self.parameter)
