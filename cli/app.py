"""The `archspec` command line (typer). Commands stay thin: they parse flags, call the core, render.

Bad input of any kind ends in one line on stderr and exit status 2; `--json` prints one JSON
object on stdout and nothing else. Heavy imports (torch, matplotlib, jinja2) happen inside the
commands that need them, so `validate` and `stats` start fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn, Optional

import typer

from archspec.errors import SpecError

app = typer.Typer(
    name="archspec",
    help="Declarative architecture-spec compiler for efficient CNNs (EfficientNet, G16, LN+PN).",
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

SPEC_HELP = "A spec file (YAML) or a preset name (efficientnet-b0 ... b7)."


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def fail(message: str) -> NoReturn:
    """Bad input that is not a spec's: one line, exit 2."""
    raise SpecError(message)


def emit_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def warn(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")


def _resolution(value: Optional[str], resolved) -> Optional[int]:
    """--resolution: a pixel count, 'native', 'half' or 'train' (the spec's training resolution)."""
    if value is None:
        return None
    named = {"native": resolved.resolution.native, "half": resolved.resolution.half,
             "train": resolved.resolution.train}
    if value in named:
        if named[value] is None:
            fail(f"--resolution: this spec has no {value} resolution")
        return named[value]
    try:
        pixels = int(value)
    except ValueError:
        fail(f"--resolution: expected a pixel count, 'native', 'half' or 'train', got {value!r}")
    if not 8 <= pixels <= 4096:
        fail(f"--resolution: must be from 8 to 4096, got {pixels}")
    return pixels


def _load(spec: str):
    from archspec.api import as_resolved

    return as_resolved(spec)


# --------------------------------------------------------------------------------------------
# validate / schema


@app.command()
def validate(specs: list[str] = typer.Argument(..., help=SPEC_HELP, metavar="SPEC...")) -> None:
    """Check specs; exit 0 when all are valid, 2 otherwise (one line per bad spec)."""
    bad = 0
    for spec in specs:
        try:
            res = _load(spec)
        except SpecError as exc:
            bad += 1
            sys.stderr.write(exc.line() + "\n")
            continue
        rounded = f", {len(res.roundings)} roundings" if res.roundings else ""
        sys.stdout.write(f"ok  {spec}  ({res.name}: {res.num_stages} stages, {len(res.blocks)} blocks{rounded})\n")
    if bad:
        raise typer.Exit(2)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the spec language (for editor completion)."""
    from archspec.spec import spec_json_schema

    emit_json(spec_json_schema())


# --------------------------------------------------------------------------------------------
# compile / stats


def _write_outputs(out: Path, files: dict[str, str]) -> None:
    """Write each file atomically (temp file + rename) so a failed run never leaves half a file."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            tmp = out / f".{name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, out / name)
    except OSError as exc:
        fail(f"--out {out}: cannot write ({exc.strerror or exc})")


def _span(values: list[int]) -> str:
    return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"


def _print_summary(report: dict[str, Any]) -> None:
    from rich.table import Table

    from archspec.cost import human

    console = _console()
    console.width = max(console.width, 100)
    r = report
    res = r["resolution"]
    expansion = r["expansion_ratio"] if r["expansion_ratio"] is not None else "per stage"
    console.print(f"[bold]{r['name']}[/bold]  ({' <- '.join(r['sources'])})")
    console.print(f"{res[0]}x{res[1]} px (train {r['train_resolution']}, test {r['test_resolutions']}), "
                  f"norm {r['norm']}, {r['activation']}, group size {r['group_size']}, expansion {expansion}, "
                  f"{r['downsampling_layers']} stride-2 layers")
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    for col in ("stage", "blocks", "k", "s", "mid ch", "G used", "output", "params", "MACs",
                f"act mem B={r['batch_size']}"):
        table.add_column(col, justify="left" if col == "stage" else "right", no_wrap=True)
    for row in r["stages"]:
        stage = row["stage"]
        shape = "x".join(str(v) for v in row["out_shape"])
        if isinstance(stage, int):
            used = row["group_sizes"]
            mark = "*" if used != [row["group_size_requested"]] else ""
            cells = [str(stage), str(row["repeats"]), str(row["kernel"]), str(row["stride"]),
                     _span(row["mid_channels"]), _span(used) + mark]
        else:
            cells = [stage, "", "", "", "", ""]
        table.add_row(*cells, shape, human(row["params"]), human(row["macs"]), human(row["activation_bytes"], "B"))
    t = r["totals"]
    table.add_section()
    table.add_row("total", "", "", "", "", "", "", human(t["params"]), human(t["macs"]),
                  human(t["activation_bytes"], "B"))
    console.print(table)
    rounded = r["roundings"]
    console.print(f"roundings ({len(rounded)}){':' if rounded else ''}  (* = group size rounded to a divisor)")
    for item in rounded:
        console.print(f"  {item['where']}: {item['what']} {item['requested']:g} -> {item['used']}")
    console.print(f"totals: {t['params']:,} params, {t['macs']:,} MACs ({t['flops']:,} FLOPs), "
                  f"{t['elementwise']:,} elementwise ops, {t['activations']:,} activation elements per sample, "
                  f"mean arithmetic intensity {t['mean_intensity']} (eq. 7, B={r['batch_size']})")


@app.command("compile")
def compile_(
    spec: str = typer.Argument(..., help=SPEC_HELP),
    out: Optional[Path] = typer.Option(None, "--out", help="Write resolved.yaml and report.json here."),
    resolution: Optional[str] = typer.Option(None, help="Pixels, native, half or train (default: train)."),
    batch_size: int = typer.Option(1, "--batch-size", min=1, max=1 << 20, help="For activation memory."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Resolve a spec, lower it to the IR and print its per-stage costs."""
    import yaml

    from archspec.graph import build_graph
    from archspec.report import compile_report, resolved_document

    res = _load(spec)
    g = build_graph(res, _resolution(resolution, res))
    report = compile_report(g, batch_size)
    if out is not None:
        document = json.loads(json.dumps(resolved_document(res)))
        _write_outputs(out, {
            "resolved.yaml": yaml.safe_dump(document, sort_keys=False),
            "report.json": json.dumps(report, indent=2) + "\n",
        })
    if as_json:
        emit_json(report)
    else:
        _print_summary(report)
        if out is not None:
            _console().print(f"wrote {out}/resolved.yaml, {out}/report.json")


@app.command()
def stats(
    spec: str = typer.Argument(..., help=SPEC_HELP),
    resolution: Optional[str] = typer.Option(None, help="Pixels, native, half or train (default: train)."),
    batch_size: int = typer.Option(1, "--batch-size", min=1, max=1 << 20, help="For activation memory."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Params, MACs, FLOPs and activation memory, from the analytic cost model."""
    from archspec.cost import mean_intensity, totals
    from archspec.graph import build_graph

    res = _load(spec)
    g = build_graph(res, _resolution(resolution, res))
    payload = {**totals(g).as_dict(batch_size), "resolution": g.graph["resolution"][0],
               "batch_size": batch_size, "downsampling_layers": g.graph["downsampling_layers"],
               "mean_intensity": round(mean_intensity(g, batch_size), 3)}
    if as_json:
        emit_json(payload)
        return
    for key, value in payload.items():
        sys.stdout.write(f"{key:>20}  {value:,}\n" if isinstance(value, int) else f"{key:>20}  {value}\n")


# --------------------------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> NoReturn:
    """Console entry point: every bad input is one line on stderr and exit status 2."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="archspec", standalone_mode=False)
    except SpecError as exc:
        sys.stderr.write(f"{exc.line()}\n")
        code = 2
    except BrokenPipeError:  # e.g. `archspec schema | head`
        code = 0
    except typer.Abort:
        sys.stderr.write("archspec: aborted\n")
        code = 130
    except Exception as exc:
        # click's exception family (typer vendors its own click, so match by shape, not by class)
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `archspec`: show the help
            sys.stdout.write(exc.format_message() + "\n")
            sys.exit(0)
        ctx = getattr(exc, "ctx", None)
        where = f"archspec {ctx.info_name}" if ctx is not None and ctx.info_name != "archspec" else "archspec"
        hint = " (see --help)" if ctx is not None else ""
        sys.stderr.write(f"{where}: {exc.format_message()}{hint}\n")
        code = exc.exit_code
    sys.exit(code if isinstance(code, int) else 0)
