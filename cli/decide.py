"""`archspec match-flops`, `resolutions` and `sweep`: choosing an expansion ratio, resolutions and
group sizes."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from archspec.api import as_resolved
from archspec.limits import MAX_EXPANSION, MAX_RESOLUTION, MIN_EXPANSION, MIN_RESOLUTION
from archspec.match import match_flops as run_match
from archspec.reader import SPEC
from archspec.report import resolutions_report
from archspec.spec import load_spec
from archspec.sweep import sweep_report

from . import render
from .options import (
    GROUP_ROUNDINGS,
    MID_CHANNEL_ROUNDINGS,
    CostBatch,
    Json,
    Metric,
    PlotPath,
    ResolutionFlag,
    SpecArg,
    UsageError,
    WritePath,
    count,
    ints,
    numbers,
)
from .paths import Reads

Target = Annotated[
    Optional[str],
    typer.Option(
        "--target",
        metavar="SPEC",
        help="Match the cost of this spec.",
        parser=Reads(SPEC, "target", missing_ok=True, text=True),
    ),
]
TargetMacs = Annotated[Optional[int], typer.Option(parser=count, metavar="N", help="Target MACs, e.g. 390M, 0.39G.")]
TargetParams = Annotated[Optional[int], typer.Option(parser=count, metavar="N", help="Target parameters, e.g. 5.3M.")]
MetricFlag = Annotated[Optional[Metric], typer.Option(help="Default: macs, or params with --target-params.")]
Integer = Annotated[bool, typer.Option("--integer", help="Only integer expansion ratios.")]
Low = Annotated[float, typer.Option("--min", min=MIN_EXPANSION, max=MAX_EXPANSION, help="Smallest E to consider.")]
High = Annotated[float, typer.Option("--max", min=MIN_EXPANSION, max=MAX_EXPANSION, help="Largest E to consider.")]
MatchResolution = Annotated[Optional[int], typer.Option(metavar="PX", help="Cost both here (default: each's train).")]
Show = Annotated[int, typer.Option(min=1, max=1000, help="Nearest candidates to list.")]
Largest = Annotated[int, typer.Option("--max", min=MIN_RESOLUTION, max=MAX_RESOLUTION, help="Largest to list.")]
GroupSizes = Annotated[Any, typer.Option(parser=ints, metavar="G,...", help="Comma-separated, e.g. 1,4,16,32,64.")]
Expansions = Annotated[Any, typer.Option(parser=numbers, metavar="E,...", help="Comma-separated, e.g. 6,5,4,3,2.")]
Grid = Annotated[bool, typer.Option("--grid", help="Every combination instead of pairs.")]
Rounding = Annotated[
    Optional[str],
    typer.Option(
        parser=GROUP_ROUNDINGS, metavar=GROUP_ROUNDINGS.metavar, help="Group-size rounding (default: the spec's)."
    ),
]
MidRounding = Annotated[
    Optional[str],
    typer.Option(
        parser=MID_CHANNEL_ROUNDINGS,
        metavar=MID_CHANNEL_ROUNDINGS.metavar,
        help="Expanded channels (default: the spec's).",
    ),
]


def _target(given: dict[str, Any], metric: Optional[Metric]) -> tuple[Any, Any]:
    """The one target given (a spec, or a count), and the metric to match."""
    named = [flag for flag, value in given.items() if value is not None]
    if len(named) != 1:
        got = f" (got {', '.join(named)})" if named else ""
        raise UsageError(f"give exactly one of --target, --target-macs, --target-params{got}")
    implied = {"--target-macs": Metric.macs, "--target-params": Metric.params}.get(named[0])
    if metric is not None and implied is not None and metric is not implied:
        raise UsageError(f"--metric {metric.value} contradicts {named[0]}")
    return given[named[0]], (metric or implied or Metric.macs).value


def match_flops(
    spec: SpecArg,
    target: Target = None,
    target_macs: TargetMacs = None,
    target_params: TargetParams = None,
    metric: MetricFlag = None,
    integer: Integer = False,
    lo: Low = 1.0,
    hi: High = 8.0,
    resolution: MatchResolution = None,
    write: WritePath = None,
    show: Show = 7,
    as_json: Json = False,
) -> None:
    """Find the global expansion ratio E that brings SPEC's cost closest to a target."""
    goal, chosen = _target({"--target": target, "--target-macs": target_macs, "--target-params": target_params}, metric)
    kwargs: dict[str, Any] = {
        "integer": integer,
        "resolution": resolution,
        "show": show,
        "shown_as": spec,
        "write": write,
    }
    payload, match = run_match(load_spec(spec), goal, chosen, lo, hi, **kwargs)
    if as_json:
        render.emit_json(payload)
    else:
        render.match_table(payload, match.shown(show), match, spec)


def resolutions(spec: SpecArg, maximum: Largest = 700, as_json: Json = False) -> None:
    """Native and half training resolutions (Table 1) and the test resolutions that keep the
    downsampling layers where training had them: r_test = r_train (mod 2^n)."""
    payload = resolutions_report(as_resolved(spec), maximum)
    if as_json:
        render.emit_json(payload)
    else:
        render.resolutions_text(payload)


def sweep(
    spec: SpecArg,
    group_sizes: GroupSizes,
    expansions: Expansions,
    grid: Grid = False,
    group_rounding: Rounding = None,
    mid_channel_rounding: MidRounding = None,
    resolution: ResolutionFlag = None,
    batch_size: CostBatch = 1,
    plot: PlotPath = None,
    as_json: Json = False,
) -> None:
    """Table-2-style costs across group sizes G and expansion ratios E, under the spec's rounding
    rules (or those given)."""
    rules = {
        k: v
        for k, v in (("group_rounding", group_rounding), ("mid_channel_rounding", mid_channel_rounding))
        if v is not None
    }
    result = sweep_report(
        load_spec(spec), group_sizes, expansions, grid=grid, resolution=resolution, batch_size=batch_size, **rules
    )
    if plot is not None:
        from archspec.plots import sweep_figure

        sweep_figure(result, plot)
    if as_json:
        render.emit_json(result.as_dict(spec))
        return
    render.sweep_table(result.as_dict(spec))
    if plot is not None:
        render.console().print(f"wrote {plot}")


def register(app: typer.Typer) -> None:
    app.command("match-flops")(match_flops)
    app.command()(resolutions)
    app.command()(sweep)
