"""The `archspec` command line (typer). Each command parses its flags, calls one function of the
core, and renders what it returns (render.py); the commands live by group in spec.py, compile.py,
decide.py, measure.py and run.py.

`main` is the one place that turns an outcome into an exit status: bad input of any kind is one
line on stderr and status 2 (a core error names a function parameter, shown here as the flag that
set it); `--json` prints one JSON object on stdout and nothing else. torch, timm and matplotlib are
imported only by the commands that need them, so `validate` and `stats` start fast and work
without them.
"""

from __future__ import annotations

import re
import sys
from typing import Annotated, Any, NoReturn, Optional

import typer
import typer.core

from archspec._version import __version__
from archspec.errors import Diverged, Interrupted, ProcessFailed, SpecError

from . import compile, decide, measure, run, spec
from .options import UsageError


class Command(typer.core.TyperCommand):
    """typer's command, with help that reads like a man page: `SPEC`, not `{SPEC}` for a required
    argument, and no type annotations such as `<str>` beside arguments that name their values."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        super().format_help(ctx, formatter)
        text = "".join(formatter.buffer)
        text = re.sub(r"\{([A-Z][A-Z_.]*)\}", r"\1", text)
        text = re.sub(r"(\n  [A-Z][A-Z_.]*) <[a-z\[\]]+>", r"\1", text)
        formatter.buffer[:] = [text]


app = typer.Typer(
    name="archspec",
    help="Declarative architecture-spec compiler for efficient CNNs (EfficientNet, G16, LN+PN).",
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
for group in (spec, compile, decide, measure, run):
    group.register(app)
for registered in app.registered_commands:
    if registered.cls in (None, typer.core.TyperCommand):
        registered.cls = Command

# typer's click (its own copy in recent typer): every usage error derives from this class
ClickError: type[Exception] = typer.BadParameter.__mro__[2]
EXTRAS = {
    "torch": "torch",
    "torchvision": "torch",
    "timm": "torch",
    "matplotlib": "plot",
    "optuna": "search",
    "onnx": "export",
    "onnxscript": "export",
    "onnxruntime": "export",
}


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"archspec {__version__}\n")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
) -> None:
    """Declarative architecture-spec compiler for efficient CNNs (EfficientNet, G16, LN+PN)."""


def _command(args: list[str]) -> Any:
    """The click command the arguments name (None for the bare program)."""
    group: Any = typer.main.get_command(app)
    for arg in args:
        if not arg.startswith("-") and arg in getattr(group, "commands", {}):
            group = group.commands[arg]
            if not hasattr(group, "commands"):
                return group
    return None


def _as_flag(exc: SpecError, args: list[str]) -> SpecError:
    """A core error about a function parameter, shown as the flag (or argument) that set it."""
    command = _command(args)
    for param in getattr(command, "params", []) if exc.parameter else []:
        if param.name == exc.parameter:
            option = param.param_type_name == "option"
            return exc.shown_as(param.opts[0] if option else param.metavar or param.name.upper())
    return exc


def _where(args: list[str]) -> str:
    command = _command(args)
    return f"archspec {command.name}" if command is not None else "archspec"


def run_command(args: list[str]) -> int:
    """Run the command line `args`; the exit status, every failure rendered as one line."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="archspec", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except SpecError as exc:
        sys.stderr.write(f"{_as_flag(exc, args).line()}\n")
        return 2
    except UsageError as exc:
        sys.stderr.write(f"{_where(args)}: {exc}\n")
        return 2
    except ClickError as exc:
        hint = " (see --help)" if getattr(exc, "ctx", None) is not None else ""
        sys.stderr.write(f"{_where(args)}: {exc.format_message()}{hint}\n")  # type: ignore[attr-defined]
        return int(getattr(exc, "exit_code", 2))
    except ModuleNotFoundError as exc:
        extra = EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        sys.stderr.write(f"{_where(args)}: needs {exc.name}, which is not installed: pip install 'archspec[{extra}]'\n")
        return 2
    except Diverged as exc:
        sys.stderr.write(f"archspec: {exc}\n")
        return 1
    except Interrupted as exc:
        sys.stderr.write(f"archspec: {exc}\n")
        return 130
    except ProcessFailed as exc:
        return exc.code
    except BrokenPipeError:  # e.g. `archspec schema | head`
        return 0
    except typer.Abort:
        sys.stderr.write("archspec: aborted\n")
        return 130


def main(argv: Optional[list[str]] = None) -> NoReturn:
    """Console entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:  # bare `archspec`: the help
        typer.main.get_command(app).main(args=["--help"], prog_name="archspec", standalone_mode=False)
        sys.exit(0)
    sys.exit(run_command(args))
