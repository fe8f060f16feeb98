"""`archspec search FILE --out DIR` and `archspec search show DIR`: architecture search.

One command takes either a search file or the word `show` as its first argument (then DIR as its
second): the simplest way to give typer a command and a sub-verb that share a name, and the one
that keeps every flag of `search FILE` a flag of the command itself (so that an error about a
parameter is shown as its flag). A search file named `show` is given as ./show.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from archspec.reader import SEARCH

from . import render
from .options import Json, ProfilePath, UsageError
from .paths import Reads, Writes

Target = Annotated[
    str,
    typer.Argument(
        metavar="FILE",
        help="A search file (YAML); or the word show, then DIR.",
        show_default=False,
        parser=Reads(SEARCH, None, missing_ok=True, text=True),
    ),
]
Shown = Annotated[
    Optional[Path],
    typer.Argument(
        metavar="DIR", help="After show: a search's --out directory.", parser=Reads(None, "directory", missing_ok=True)
    ),
]
Out = Annotated[
    Optional[Path],
    typer.Option(
        "--out",
        metavar="DIR",
        help="Where the search lives and writes its results.",
        parser=Writes("out", directory=True),
    ),
]
Workers = Annotated[int, typer.Option("--workers", min=1, max=256, help="Worker processes on this machine.")]
Storage = Annotated[
    Optional[str],
    typer.Option(
        "--storage",
        metavar="URL",
        help="postgresql://user@host/db: one study shared by workers on several machines (default: a file in DIR).",
    ),
]
Resume = Annotated[
    bool, typer.Option("--resume", help="Continue the search in DIR (or join it): finished trials stay.")
]


def _show(directory: Optional[Path], storage: Optional[str], given: dict[str, Any], as_json: bool) -> None:
    if directory is None:
        raise UsageError("show needs the search's directory: archspec search show DIR")
    wrong = [flag for flag, value in given.items() if value]
    if wrong:
        raise UsageError(f"{', '.join(wrong)} go{'es' * (len(wrong) == 1)} with `archspec search FILE`, not show")
    from archspec.search.study import show_search

    _render(show_search(directory, storage), as_json)


def _render(payload: dict[str, Any], as_json: bool) -> None:
    if as_json:
        render.emit_json(payload)
    else:
        from .render.search import front_table

        front_table(payload)


def search(
    target: Target,
    directory: Shown = None,
    out: Out = None,
    workers: Workers = 1,
    storage: Storage = None,
    resume: Resume = False,
    profile: ProfilePath = None,
    as_json: Json = False,
) -> None:
    """Search a design space (a search file) for the Pareto front of its objectives; or re-render
    the table and figure of a finished or running search: archspec search show DIR."""
    if target == "show":
        _show(
            directory,
            storage,
            {"--out": out, "--workers": workers != 1, "--resume": resume, "--profile": profile},
            as_json,
        )
        return
    if directory is not None:
        raise UsageError(f"unexpected argument {directory}: the directory is --out DIR")
    if out is None:
        raise UsageError("--out DIR is required: the search keeps its study and results there")
    from archspec.search.study import run_search

    from .render.search import Progress

    with Progress(Path(target).stem) as progress:
        payload = run_search(
            Path(target), out, workers=workers, storage=storage, resume=resume, profile=profile, progress=progress
        )
    _render(payload, as_json)


def register(app: typer.Typer) -> None:
    app.command()(search)
