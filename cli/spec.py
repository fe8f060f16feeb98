"""`archspec validate` and `archspec schema`: the spec language itself."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from archspec.api import as_resolved
from archspec.errors import SpecError
from archspec.reader import SPEC
from archspec.resolution import congruence_warnings

from . import render
from .options import SPEC_HELP
from .paths import Reads
from .render import emit_json

# each spec is read by load_spec (through the reader) in turn: a bad one is reported, and the next read
Specs = Annotated[
    list[str],
    typer.Argument(help=SPEC_HELP, metavar="SPEC", show_default=False, parser=Reads(SPEC, None, now=False, text=True)),
]
AllErrors = Annotated[bool, typer.Option("--all-errors", help="Every error of a spec, one line each, not the first.")]


def validate(specs: Specs, all_errors: AllErrors = False) -> None:
    """Check specs; exit 0 when all are valid, 2 otherwise (one line per bad spec). Warns where a
    test resolution is not congruent to the training resolution."""
    bad = 0
    for spec in specs:
        try:
            res = as_resolved(spec)
        except SpecError as exc:
            bad += 1
            sys.stderr.write("".join(e.line() + "\n" for e in (exc.every if all_errors else (exc,))))
            continue
        for message in congruence_warnings(res.resolution.train, res.resolution.test, res.downsampling_layers):
            render.warn(f"{spec}: {message}")
        rounded = f", {len(res.roundings)} roundings" if res.roundings else ""
        sys.stdout.write(f"ok  {spec}  ({res.name}: {res.num_stages} stages, {len(res.blocks)} blocks{rounded})\n")
    if bad:
        raise typer.Exit(2)


SearchSchema = Annotated[bool, typer.Option("--search", help="The schema of search files (archspec search) instead.")]


def schema(search: SearchSchema = False) -> None:
    """Print the JSON Schema of the spec language, or with --search of search files (for editor completion)."""
    if search:
        from archspec.search.space import search_json_schema

        emit_json(search_json_schema())
        return
    from archspec.spec import spec_json_schema

    emit_json(spec_json_schema())


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command()(schema)
