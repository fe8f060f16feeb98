"""The `archspec` command line (typer). Each command parses its flags, calls one function of the
core, and renders what it returns (render.py); the commands live by group in spec.py, compile.py,
decide.py, measure.py and run.py.

`main` is the one place that turns an outcome into an exit status: bad input of any kind is one
line on stderr and status 2 (a core error names a function parameter, shown here as the flag that
set it); a disk that fills while a command writes is one line naming the file, status 1
(archspec.errors.DiskFull); anything else that goes wrong is a bug, reported as one line naming
the command and status 1 (the traceback with `archspec --debug`); `--json` prints one JSON object
on stdout and nothing else. torch, timm and matplotlib are imported only by the commands that
need them, so `validate` and `stats` start fast and work without them.
"""

from __future__ import annotations

import re
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer
import typer.core

from archspec._version import __version__
from archspec.errors import DiskFull, Diverged, Interrupted, ProcessFailed, SpecError, one_line
from archspec.spec import SPEC_ROOTS_VARIABLE, more_spec_roots

from . import compile, decide, export, measure, run, search, spec
from .options import UsageError
from .paths import Reads


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
for group in (spec, compile, decide, measure, run, search, export):
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


SpecRoots = Annotated[
    Optional[list[Path]],
    typer.Option(
        "--spec-root",
        metavar="DIR",
        parser=Reads(None, "spec_root"),
        help=f"A directory whose spec files `base:` may name, besides the spec's own directory tree "
        f"(repeatable; also {SPEC_ROOTS_VARIABLE}, separated by ':').",
    ),
]
Debug = Annotated[bool, typer.Option("--debug", help="On an internal error, print its traceback.")]


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
    spec_root: SpecRoots = None,
    debug: Debug = False,
) -> None:
    """Declarative architecture-spec compiler for efficient CNNs (EfficientNet, G16, LN+PN)."""
    if spec_root:  # for the life of the command (and the processes it starts)
        ctx.with_resource(more_spec_roots(spec_root))


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
    params = [*getattr(_command(args), "params", []), *typer.main.get_command(app).params]
    for param in params if exc.parameter else []:
        if param.name == exc.parameter:
            option = param.param_type_name == "option"
            return exc.shown_as(param.opts[0] if option else param.metavar or param.name.upper())
    return exc


def _where(args: list[str]) -> str:
    command = _command(args)
    return f"archspec {command.name}" if command is not None else "archspec"


def _say(text: str) -> None:
    sys.stderr.write(one_line(text) + "\n")


def _debugging(args: list[str]) -> bool:
    """--debug among the options before the command."""
    command = _command(args)
    name = command.name if command is not None else None
    return "--debug" in (args[: args.index(name)] if name in args else args)


def _internal(exc: Exception, args: list[str]) -> int:
    """A bug: one line naming the command, and the traceback only when asked for."""
    if _debugging(args):
        traceback.print_exception(exc)
    first = next(iter(str(exc).strip().splitlines()), "")
    what = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    _say(f"{_where(args)}: internal error: {one_line(what, 300)}; run with --debug for the traceback")
    return 1


def _failure(exc: Exception, args: list[str]) -> int:
    """The exit status of a command that raised `exc`, its one line written on stderr."""
    if isinstance(exc, SpecError):
        _say(_as_flag(exc, args).line())
        return 2
    if isinstance(exc, UsageError):
        _say(f"{_where(args)}: {exc}")
        return 2
    if isinstance(exc, ClickError):
        hint = " (see --help)" if getattr(exc, "ctx", None) is not None else ""
        _say(f"{_where(args)}: {exc.format_message()}{hint}")  # type: ignore[attr-defined]
        return int(getattr(exc, "exit_code", 2))
    extra = EXTRAS.get((exc.name or "").split(".")[0]) if isinstance(exc, ModuleNotFoundError) else None
    if extra is not None:
        _say(f"{_where(args)}: needs {exc.name}, which is not installed: pip install 'archspec[{extra}]'")  # type: ignore[attr-defined]
        return 2
    if isinstance(exc, DiskFull):  # a run that filled the disk: what is kept is said
        _say(str(exc))
        return 1
    if isinstance(exc, (Diverged, Interrupted)):
        _say(f"archspec: {exc}")
        return 1 if isinstance(exc, Diverged) else 130
    if isinstance(exc, ProcessFailed):
        return exc.code
    if isinstance(exc, typer.Abort):
        _say("archspec: aborted")
        return 130
    return _internal(exc, args)


def run_command(args: list[str]) -> int:
    """Run the command line `args`; the exit status, every failure rendered as one line."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="archspec", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except BrokenPipeError:  # e.g. `archspec schema | head`
        return 0
    except Exception as exc:  # every outcome, a bug's included, is one line and a status
        return _failure(exc, args)


def main(argv: Optional[list[str]] = None) -> NoReturn:
    """Console entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:  # bare `archspec`: the help
        typer.main.get_command(app).main(args=["--help"], prog_name="archspec", standalone_mode=False)
        sys.exit(0)
    sys.exit(run_command(args))
