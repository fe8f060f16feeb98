"""`archspec validate` and `archspec schema`: the spec language itself."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from archspec.api import as_resolved
from archspec.errors import SpecError

from .options import SPEC_HELP
from .render import emit_json


def validate(
    specs: Annotated[list[str], typer.Argument(help=SPEC_HELP, metavar="SPEC...", show_default=False)],
) -> None:
    """Check specs; exit 0 when all are valid, 2 otherwise (one line per bad spec)."""
    bad = 0
    for spec in specs:
        try:
            res = as_resolved(spec)
        except SpecError as exc:
            bad += 1
            sys.stderr.write(exc.line() + "\n")
            continue
        rounded = f", {len(res.roundings)} roundings" if res.roundings else ""
        sys.stdout.write(f"ok  {spec}  ({res.name}: {res.num_stages} stages, {len(res.blocks)} blocks{rounded})\n")
    if bad:
        raise typer.Exit(2)


def schema() -> None:
    """Print the JSON Schema of the spec language (for editor completion)."""
    from archspec.spec import spec_json_schema

    emit_json(spec_json_schema())


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command()(schema)
