"""`archspec compile`, `stats` and `plan`: a spec lowered to the IR, and what it costs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import networkx as nx
import typer

from archspec.api import as_graph, as_resolved, compile_files
from archspec.atomic import write_files
from archspec.conventions import NAMES
from archspec.conventions import report as convention_report
from archspec.cost import mean_intensity, totals
from archspec.graph import info
from archspec.limits import MAX_BATCH
from archspec.plan import costing, plan_at, plan_pipeline
from archspec.predict import speed_report
from archspec.report import compile_report
from archspec.resolution import congruence_warnings

from . import render
from .options import (
    BACKENDS,
    CONVENTIONS_CHOICE,
    CostBatch,
    Json,
    MemoryFraction,
    MicroBatch,
    ProfilePath,
    RecipePath,
    ResolutionFlag,
    SpecArg,
    UsageError,
)
from .paths import Writes
from .render import conventions as counters
from .render import measure as shown

Out = Annotated[
    Optional[Path],
    typer.Option(
        metavar="DIR", help="Write resolved.yaml, report.json and model.py.", parser=Writes("out", directory=True)
    ),
]
BackendFlag = Annotated[
    str,
    typer.Option(parser=BACKENDS, metavar=BACKENDS.metavar, help="poptorch also writes plan.json and ipu_train.py."),
]
Ipus = Annotated[Optional[int], typer.Option(min=1, max=64, help="poptorch: pipeline stages, one per IPU.")]
Replicas = Annotated[int, typer.Option(min=1, max=1024, help="poptorch: data-parallel replicas.")]
Accumulation = Annotated[int, typer.Option(min=0, max=1 << 20, help="poptorch: gradient accumulation (0: auto).")]
Iterations = Annotated[int, typer.Option(min=1, max=1 << 16, help="poptorch: weight updates per call to the IPUs.")]
Proportion = Annotated[float, typer.Option(help="poptorch: temporary memory for convolutions, per IPU.")]
Stages = Annotated[int, typer.Option(help="Pipeline stages (devices) K.")]
MemoryMb = Annotated[
    Optional[float], typer.Option(metavar="MB", help="Usable memory per device (default: half an IPU).")
]
Recompute = Annotated[bool, typer.Option(help="Recompute each stage's forward.")]
At = Annotated[Optional[str], typer.Option(metavar="BLOCK,...", help="Cost this split: where stages 2..K begin.")]


def _ipu_options(backend: str, out: Optional[Path], ipus: Optional[int], *options: Any) -> Any:
    """The IPU program's options with --backend poptorch, else None (and the flags that need it refused)."""
    if backend != "poptorch":
        if ipus is not None:
            raise UsageError("--ipus goes with --backend poptorch")
        return None
    if out is None or ipus is None:
        raise UsageError("--backend poptorch needs --out DIR and --ipus K")
    from archspec.backends.poptorch.codegen import IpuOptions

    return IpuOptions(ipus, *options)


def _backend_options(ipu: Any, recipe: Optional[Path]) -> dict[str, Any]:
    """The poptorch backend's options: its IPU options and the runner's recipe, as data."""
    if ipu is None:
        return {}
    from archspec.runner.recipe import backend_options

    return {"ipu": ipu, **backend_options(recipe)}


def compile_(
    spec: SpecArg,
    out: Out = None,
    resolution: ResolutionFlag = None,
    batch_size: CostBatch = 1,
    backend: BackendFlag = "torch",
    ipus: Ipus = None,
    replicas: Replicas = 1,
    micro_batch: MicroBatch = 8,
    accumulation: Accumulation = 0,
    device_iterations: Iterations = 1,
    available_memory_proportion: Proportion = 0.15,
    memory_fraction: MemoryFraction = 0.5,
    recipe: RecipePath = None,
    as_json: Json = False,
) -> None:
    """Resolve a spec, lower it to the IR and print its per-stage costs; --out writes the artefacts."""
    ipu_flags = (replicas, micro_batch, accumulation, device_iterations, available_memory_proportion, memory_fraction)
    ipu = _ipu_options(backend, out, ipus, *ipu_flags)
    res = as_resolved(spec)
    g = as_graph(res, res.resolution.pick(resolution))
    for message in congruence_warnings(res.resolution.train, res.resolution.test, res.downsampling_layers):
        render.warn(message)
    report = compile_report(g, batch_size)
    files = compile_files(g, batch_size, backend, _backend_options(ipu, recipe)) if out is not None else {}
    if out is not None:
        write_files(out, files)
    if as_json:
        render.emit_json(report)
        return
    render.compile_summary(report)
    if files:
        render.console().print(f"wrote {', '.join(f'{out}/{name}' for name in files)}")


StatsBatch = Annotated[
    Optional[int],
    typer.Option(
        "--batch-size",
        min=1,
        max=MAX_BATCH,
        help="Batch size for activation memory and arithmetic intensity (default 1), and for predicted "
        "speed (default: the profile's).",
    ),
]


ConventionFlag = Annotated[
    Optional[str],
    typer.Option(
        parser=CONVENTIONS_CHOICE,
        metavar=CONVENTIONS_CHOICE.metavar,
        help="What this counter prints for the model (one image, eval mode), from the IR, with its rule.",
    ),
]
AllConventions = Annotated[bool, typer.Option("--all", help="Every counter's numbers side by side, with their rules.")]


def _conventions(g: nx.DiGraph[str], convention: Optional[str], every: bool, other: bool, as_json: bool) -> None:
    """stats --convention / --all: what other counters print for the model, computed from the IR."""
    if convention is not None and every:
        raise UsageError("--convention and --all: give one of them")
    if other:
        raise UsageError("--convention and --all count one image: drop --batch-size and --profile")
    counters.show(convention_report(g, NAMES if convention is None else (convention,)), as_json)


def stats(
    spec: SpecArg,
    resolution: ResolutionFlag = None,
    batch_size: StatsBatch = None,
    profile: ProfilePath = None,
    convention: ConventionFlag = None,
    all_conventions: AllConventions = False,
    as_json: Json = False,
) -> None:
    """Params, MACs, FLOPs and activation memory, from the analytic cost model; with --profile,
    predicted images/s (inference, training), batch-1 latency and time per stage; with --convention
    or --all, what fvcore, ptflops, thop, torchinfo or torchvision report for the model."""
    res = as_resolved(spec)
    g = as_graph(res, res.resolution.pick(resolution))
    if convention is not None or all_conventions:
        _conventions(g, convention, all_conventions, batch_size is not None or profile is not None, as_json)
        return
    cost_batch = batch_size or 1
    payload: dict[str, Any] = {
        **totals(g).as_dict(cost_batch),
        "resolution": info(g)["resolution"][0],
        "batch_size": cost_batch,
        "downsampling_layers": res.downsampling_layers,
        "mean_intensity": round(mean_intensity(g, cost_batch), 3),
    }
    predicted = speed_report(g, profile, batch_size) if profile is not None else None
    if as_json:
        render.emit_json(payload if predicted is None else {**payload, "predicted": predicted})
        return
    render.stats_text(payload)
    if predicted is not None:
        shown.prediction(predicted)


def plan(
    spec: SpecArg,
    stages: Stages,
    micro_batch: MicroBatch = 8,
    memory_mb: MemoryMb = None,
    memory_fraction: MemoryFraction = 0.5,
    recompute: Recompute = True,
    resolution: ResolutionFlag = None,
    at: At = None,
    as_json: Json = False,
) -> None:
    """Split a network into K pipeline stages: the largest stage's time is minimal and every stage
    fits its device's memory (dynamic programming over block boundaries)."""
    res = as_resolved(spec)
    g = as_graph(res, res.resolution.pick(resolution))
    how = costing(micro_batch, memory_mb, memory_fraction, recompute)
    if at is None:
        result = plan_pipeline(g, stages, how)
    else:
        boundaries = [b.strip() for b in at.split(",") if b.strip()]
        if len(boundaries) != stages - 1:
            raise UsageError(f"--at: {stages} stages need {stages - 1} boundaries, got {len(boundaries)}")
        result = plan_at(g, boundaries, how)
    payload = {"spec": spec, "resolution": info(g)["resolution"][0], **result.as_dict()}
    if as_json:
        render.emit_json(payload)
    else:
        render.plan_table(payload, res.name)


def register(app: typer.Typer) -> None:
    app.command("compile")(compile_)
    app.command()(stats)
    app.command()(plan)
