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
    from archspec.resolution import parse_resolution

    return parse_resolution(value, resolved)


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
    from archspec.atomic import write_text

    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            write_text(out / name, text)
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
    console.print(f"roundings ({len(rounded)}){':' if rounded else ''}  (* = group size rounded to a divisor, "
                  f"group_rounding: {r['group_rounding']})")
    for item in rounded:
        console.print(f"  {item['where']}: {item['what']} {item['requested']:g} -> {item['used']}")
    console.print(f"totals: {t['params']:,} params, {t['macs']:,} MACs ({t['flops']:,} FLOPs), "
                  f"{t['elementwise']:,} elementwise ops, {t['activations']:,} activation elements per sample, "
                  f"mean arithmetic intensity {t['mean_intensity']} (eq. 7, B={r['batch_size']})")


@app.command("compile")
def compile_(
    spec: str = typer.Argument(..., help=SPEC_HELP),
    out: Optional[Path] = typer.Option(None, "--out", help="Write resolved.yaml, report.json and model.py "
                                                            "(standalone PyTorch) here."),
    resolution: Optional[str] = typer.Option(None, help="Pixels, native, half or train (default: train)."),
    batch_size: int = typer.Option(1, "--batch-size", min=1, max=1 << 20, help="For activation memory."),
    backend: str = typer.Option("torch", "--backend", help="torch, or poptorch (also writes plan.json and "
                                                           "ipu_train.py)."),
    ipus: Optional[int] = typer.Option(None, "--ipus", help="poptorch: pipeline stages, one per IPU."),
    replicas: int = typer.Option(1, "--replicas", min=1, max=1024, help="poptorch: data-parallel replicas."),
    micro_batch: int = typer.Option(8, "--micro-batch", min=1, max=1 << 16, help="poptorch: micro-batch."),
    accumulation: int = typer.Option(0, "--accumulation", min=0, max=1 << 20,
                                     help="poptorch: gradient accumulation (0: from the recipe's global batch)."),
    device_iterations: int = typer.Option(1, "--device-iterations", min=1, max=1 << 16),
    available_memory_proportion: float = typer.Option(0.15, "--available-memory-proportion",
                                                      help="poptorch: temporary memory for convolutions, per IPU."),
    memory_fraction: float = typer.Option(0.5, "--memory-fraction", help="poptorch: usable share of 900 MB."),
    recipe: Optional[Path] = typer.Option(None, "--recipe", help="poptorch: the recipe ipu_train.py follows."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Resolve a spec, lower it to the IR and print its per-stage costs; --out writes the artefacts."""
    from archspec.graph import build_graph
    from archspec.report import compile_report, resolved_yaml
    from archspec.resolution import congruence_warnings

    if backend not in ("torch", "poptorch"):
        fail(f"--backend: must be torch or poptorch, got {backend!r}")
    if backend == "poptorch" and (out is None or ipus is None):
        fail("--backend poptorch needs --out DIR and --ipus K")
    if backend == "torch" and ipus is not None:
        fail("--ipus goes with --backend poptorch")
    if not 0 < available_memory_proportion <= 1:
        fail(f"--available-memory-proportion: must be in (0, 1], got {available_memory_proportion}")
    res = _load(spec)
    g = build_graph(res, _resolution(resolution, res))
    report = compile_report(g, batch_size)
    for message in congruence_warnings(res.resolution.train, res.resolution.test, g.graph["downsampling_layers"]):
        warn(message)
    if out is not None:
        from archspec.backends.torch.codegen import generate_model_source

        files = {
            "resolved.yaml": resolved_yaml(res),
            "report.json": json.dumps(report, indent=2) + "\n",
            "model.py": generate_model_source(g),
        }
        if backend == "poptorch":
            files.update(_poptorch_files(g, ipus, replicas, micro_batch, accumulation, device_iterations,
                                         available_memory_proportion, memory_fraction, recipe))
        _write_outputs(out, files)
    if as_json:
        emit_json(report)
    else:
        _print_summary(report)
        if out is not None:
            _console().print(f"wrote {', '.join(f'{out}/{name}' for name in files)}")


def _poptorch_files(g, ipus: int, replicas: int, micro_batch: int, accumulation: int, device_iterations: int,
                    available_memory_proportion: float, memory_fraction: float, recipe: Optional[Path]) -> dict:
    from archspec.backends.poptorch.codegen import IpuOptions, generate_ipu_train
    from archspec.plan import plan_pipeline
    from archspec.runner.recipe import load_recipe, recipe_yaml

    plan = plan_pipeline(g, ipus, _costing(micro_batch, None, memory_fraction, True))
    loaded = load_recipe(recipe)
    options = IpuOptions(ipus, replicas, micro_batch, accumulation, device_iterations, available_memory_proportion)
    plan_json = {"spec": g.graph["name"], "resolution": g.graph["resolution"][0], **plan.as_dict(),
                 "ipu": options.as_dict(loaded.global_batch_size)}
    return {
        "plan.json": json.dumps(plan_json, indent=2) + "\n",
        "recipe.yaml": recipe_yaml(loaded),
        "ipu_train.py": generate_ipu_train(g, plan, options, loaded.global_batch_size),
    }


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
# match-flops / resolutions / sweep

_SUFFIX = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "B": 1e9, "T": 1e12}


def _count(value: str, flag: str) -> int:
    """'390M', '0.39G', '5.3e6' or '390,000,000' -> an integer count."""
    text = value.strip().replace(",", "").replace("_", "")
    scale = _SUFFIX.get(text[-1:], 1.0)
    if scale != 1.0:
        text = text[:-1]
    try:
        number = float(text) * scale
    except ValueError:
        fail(f"{flag}: expected a count such as 390000000, 390M or 0.39G, got {value!r}")
    if not 0 < number < 1e18:
        fail(f"{flag}: must be a positive count, got {value!r}")
    return round(number)


def _csv(value: str, flag: str, kind: type) -> list:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        fail(f"{flag}: give a comma-separated list, got {value!r}")
    try:
        parsed = [kind(v) for v in items]
    except ValueError:
        fail(f"{flag}: expected comma-separated {'integers' if kind is int else 'numbers'}, got {value!r}")
    return parsed


def _pct(x: float) -> str:
    return f"{x * 100:+.3f}%"


@app.command("match-flops")
def match_flops(
    spec: str = typer.Argument(..., help=SPEC_HELP),
    target: Optional[str] = typer.Option(None, "--target", help="Match the cost of this spec (or preset)."),
    target_macs: Optional[str] = typer.Option(None, "--target-macs", help="Target MACs, e.g. 390M or 0.39G."),
    target_params: Optional[str] = typer.Option(None, "--target-params", help="Target parameters, e.g. 5.3M."),
    metric: Optional[str] = typer.Option(None, help="macs or params (default: macs, or params with "
                                                     "--target-params)."),
    integer: bool = typer.Option(False, "--integer", help="Only integer expansion ratios."),
    lo: float = typer.Option(1.0, "--min", help="Smallest expansion ratio to consider."),
    hi: float = typer.Option(8.0, "--max", help="Largest expansion ratio to consider."),
    resolution: Optional[int] = typer.Option(None, help="Cost both at this resolution (default: each spec's "
                                                         "training resolution)."),
    write: Optional[Path] = typer.Option(None, "--write", help="Save the matched spec here (YAML)."),
    show: int = typer.Option(7, "--show", min=1, max=1000, help="Nearest candidates to list."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Find the global expansion ratio E that brings SPEC's cost closest to a target."""
    from archspec.api import as_graph
    from archspec.cost import totals
    from archspec.match import match_expansion
    from archspec.spec import load_spec

    given = [name for name, v in (("--target", target), ("--target-macs", target_macs),
                                  ("--target-params", target_params)) if v is not None]
    if len(given) != 1:
        fail("give exactly one of --target, --target-macs, --target-params"
             + (f" (got {', '.join(given)})" if given else ""))
    if metric is not None and metric not in ("macs", "params"):
        fail(f"--metric: must be macs or params, got {metric!r}")
    if target_params is not None and metric == "macs" or target_macs is not None and metric == "params":
        fail(f"--metric {metric} contradicts {given[0]}")
    metric = metric or ("params" if target_params is not None else "macs")
    if resolution is not None and not 8 <= resolution <= 4096:
        fail(f"--resolution: must be from 8 to 4096, got {resolution}")
    model = load_spec(spec)
    if target is not None:
        target_cost = totals(as_graph(target, resolution))
        goal, described = getattr(target_cost, metric), target
    else:
        goal = _count(target_macs or target_params, given[0])
        described = f"{goal:,} {metric}"
    if write is not None:
        _check_writable(write, "--write")
    match = match_expansion(model, goal, metric, lo, hi, integer=integer, resolution=resolution)
    chosen = match.chosen
    shown = sorted(match.nearest(show), key=lambda c: c.expansion_ratio)
    payload = {
        "spec": spec, "target": goal, "target_source": described, "metric": metric,
        "expansion_ratio": chosen.expansion_ratio, "expansion_interval": [chosen.low, chosen.high],
        "macs": chosen.macs, "params": chosen.params, "relative_error": match.error(chosen),
        "range": [lo, hi], "integer": integer, "architectures_searched": len(match.candidates),
        "candidates": [{"expansion_ratio": c.expansion_ratio, "params": c.params, "macs": c.macs,
                        "relative_error": match.error(c)} for c in shown],
    }
    if write is not None:
        payload["written"] = str(write)
        _write_matched(model, match, described, write, resolution)
    if as_json:
        emit_json(payload)
        return
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    for col in ("E", "E interval", "params", "MACs", f"error ({metric})", ""):
        table.add_column(col, justify="right")
    for cand in shown:
        table.add_row(f"{cand.expansion_ratio:g}", f"[{cand.low:.4f}, {cand.high:.4f}]", f"{cand.params:,}",
                      f"{cand.macs:,}", _pct(match.error(cand)), "<- chosen" if cand == chosen else "")
    console = _console()
    console.print(f"{spec}: {len(match.candidates)} distinct architectures for E in [{lo:g}, {hi:g}]"
                  f"{' (integers)' if integer else ''}; target {goal:,} {metric} ({described})")
    console.print(table)
    console.print(f"chosen: expansion_ratio {chosen.expansion_ratio:g} -> {chosen.value(metric):,} {metric} "
                  f"({_pct(match.error(chosen))}), {chosen.params:,} params, {chosen.macs:,} MACs")
    if write is not None:
        console.print(f"wrote {write}")


def _check_writable(path: Path, flag: str) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        fail(f"{flag} {path}: is a directory")
    if not parent.is_dir():
        fail(f"{flag} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        fail(f"{flag} {path}: not writable")


def _write_matched(model, match, described: str, path: Path, resolution: Optional[int]) -> None:
    """A standalone spec with the matched E, checked to compile to the reported numbers."""
    import yaml

    from archspec.api import as_graph
    from archspec.cost import totals
    from archspec.spec import load_spec

    chosen = match.chosen
    document = model.model_dump(mode="json", exclude_none=True, exclude={"base", "expansion_ratio"})
    document["name"] = f"{model.name}_e{chosen.expansion_ratio:g}"[:80]
    document["expansion_ratio"] = chosen.expansion_ratio
    header = (f"# Written by `archspec match-flops`: expansion_ratio {chosen.expansion_ratio:g} matches "
              f"{described}\n# ({match.target:,} {match.metric}): {chosen.value(match.metric):,} {match.metric}, "
              f"error {_pct(match.error(chosen))}; {chosen.params:,} params, {chosen.macs:,} MACs.\n")
    _write_outputs(path.parent, {path.name: header + yaml.safe_dump(document, sort_keys=False)})
    written = totals(as_graph(load_spec(path), resolution))
    if (written.params, written.macs) != (chosen.params, chosen.macs):
        raise RuntimeError(f"bug: {path} compiles to {written}, not to the matched candidate {chosen}")


@app.command()
def resolutions(
    spec: str = typer.Argument(..., help=SPEC_HELP),
    maximum: int = typer.Option(700, "--max", min=8, max=4096, help="Largest test resolution to list."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Native and half training resolutions (Table 1) and the test resolutions that keep the
    downsampling layers where training had them: r_test = r_train (mod 2^n)."""
    from archspec.graph import build_graph
    from archspec.resolution import half_resolution, valid_test_resolutions

    res = _load(spec)
    n = build_graph(res).graph["downsampling_layers"]
    r = res.resolution
    rule = half_resolution(r.native, n) if r.native else None
    payload = {
        "name": res.name, "native": r.native, "half": r.half,
        "half_source": "given" if r.half_given else "rule",
        "half_rule": rule, "half_rule_differs": rule is not None and r.half is not None and rule != r.half,
        "train": r.train, "downsampling_layers": n, "modulus": 2**n,
        "test": valid_test_resolutions(r.train, n, maximum),
        "test_if_half": valid_test_resolutions(r.half, n, maximum) if r.half else None,
    }
    if as_json:
        emit_json(payload)
        return
    out = sys.stdout
    out.write(f"{res.name}: native {r.native}, half {r.half} ({payload['half_source']}), train {r.train}; "
              f"{n} stride-2 layers, so r_test = r_train (mod {2**n})\n")
    if payload["half_rule_differs"]:
        out.write(f"note: the half rule (nearest to native/sqrt(2), congruent to native) gives {rule}, "
                  f"not {r.half}; {r.half} is not congruent to {r.native} (mod {2**n})\n" if
                  (r.native - r.half) % 2**n else
                  f"note: the half rule (nearest to native/sqrt(2), congruent to native) gives {rule}, not {r.half}\n")
    out.write(f"test resolutions for training at {r.train}: {', '.join(map(str, payload['test']))}\n")
    if r.half and r.half != r.train:
        out.write(f"test resolutions for training at half ({r.half}): "
                  f"{', '.join(map(str, payload['test_if_half']))}\n")


@app.command()
def sweep(
    spec: str = typer.Argument(..., help=SPEC_HELP),
    group_sizes: str = typer.Option(..., "--group-sizes", help="Comma-separated, e.g. 1,4,16,32,64."),
    expansions: str = typer.Option(..., "--expansions", help="Comma-separated, e.g. 6,5,4,3,2."),
    grid: bool = typer.Option(False, "--grid", help="Every combination instead of pairing them one to one."),
    group_rounding: Optional[str] = typer.Option(
        None, "--group-rounding", help="size or count: how group sizes that do not divide the channels are "
                                       "rounded (default: the spec's group_rounding)."),
    resolution: Optional[str] = typer.Option(None, help="Pixels, native, half or train (default: train)."),
    batch_size: int = typer.Option(1, "--batch-size", min=1, max=1 << 20,
                                   help="For activation memory and arithmetic intensity."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG figure here."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Table-2-style costs across group sizes G and expansion ratios E."""
    from archspec.cost import human
    from archspec.resolve import resolve
    from archspec.spec import load_spec
    from archspec.sweep import configurations
    from archspec.sweep import sweep as run_sweep

    gs = _csv(group_sizes, "--group-sizes", int)
    es = _csv(expansions, "--expansions", float)
    if any(not 1 <= g <= 4096 for g in gs):
        fail(f"--group-sizes: each must be from 1 to 4096, got {group_sizes!r}")
    if any(not 1 <= e <= 16 for e in es):
        fail(f"--expansions: each must be from 1 to 16, got {expansions!r}")
    if group_rounding not in (None, "size", "count"):
        fail(f"--group-rounding: must be size or count, got {group_rounding!r}")
    if plot is not None:
        _check_writable(plot, "--plot")
    model = load_spec(spec)
    if group_rounding is not None:
        model = model.model_copy(update={"group_rounding": group_rounding})
    res = resolve(model)
    rows = run_sweep(model, configurations(gs, es, grid), _resolution(resolution, res), batch_size)
    if plot is not None:
        from archspec.plots import sweep_figure

        try:
            sweep_figure(rows, f"{res.name}: group size vs expansion ratio", plot, batch_size)
        except OSError as exc:
            fail(f"--plot {plot}: cannot write ({exc.strerror or exc})")
    if as_json:
        emit_json({"spec": spec, "batch_size": batch_size, "rows": [
            {k: v for k, v in vars(r).items() if k != "intensities"} for r in rows]})
        return
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    for col in ("G", "E", "params", "MACs", f"act mem B={batch_size}", "mean intensity", "rounded layers"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r.group_size), f"{r.expansion_ratio:g}", f"{r.params / 1e6:.2f}M", f"{r.macs / 1e9:.3f}G",
                      human(r.activation_bytes, "B"), f"{r.mean_intensity:.1f}", str(r.rounded_layers))
    _console().print(table)
    if plot is not None:
        _console().print(f"wrote {plot}")


# --------------------------------------------------------------------------------------------
# plan


def _costing(micro_batch: int, memory_mb: Optional[float], memory_fraction: float, recompute: bool):
    from archspec.plan import Costing, Device, ipu

    if not 0 < memory_fraction <= 1:
        fail(f"--memory-fraction: must be in (0, 1], got {memory_fraction}")
    if memory_mb is not None and not 0 < memory_mb < 1e9:
        fail(f"--memory-mb: must be a positive number of megabytes, got {memory_mb}")
    device = ipu(memory_fraction) if memory_mb is None else Device(int(memory_mb * 1e6), name="device")
    return Costing(micro_batch, device, recompute=recompute)


def _plan_table(plan_dict: dict[str, Any]) -> None:
    from rich.table import Table

    from archspec.cost import human

    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    for col in ("stage", "first layer", "last layer", "blocks", "params", "MACs", "memory", "time share"):
        table.add_column(col, justify="left" if "layer" in col else "right", no_wrap=True)
    budget = plan_dict["memory_budget_bytes"]
    console = _console()
    console.width = max(console.width, 110)
    for i, s in enumerate(plan_dict["stages"]):
        table.add_row(str(i), s["first_layer"], s["last_layer"], str(len(s["units"])), human(s["params"]),
                      human(s["macs"]), f"{s['memory_bytes'] / 1e6:.0f}/{budget / 1e6:.0f} MB",
                      f"{s['time_share']:.1%}")
    console.print(table)


@app.command()
def plan(
    spec: str = typer.Argument(..., help=SPEC_HELP),
    stages: int = typer.Option(..., "--stages", help="Pipeline stages (devices) K."),
    micro_batch: int = typer.Option(8, "--micro-batch", help="Images per micro-batch."),
    memory_mb: Optional[float] = typer.Option(None, "--memory-mb", help="Usable memory per device, MB "
                                                                        "(default: half an IPU's 900 MB)."),
    memory_fraction: float = typer.Option(0.5, "--memory-fraction", help="Usable share of an IPU's 900 MB."),
    recompute: bool = typer.Option(True, "--recompute/--no-recompute", help="Recompute each stage's forward."),
    resolution: Optional[str] = typer.Option(None, help="Pixels, native, half or train (default: train)."),
    at: Optional[str] = typer.Option(None, "--at", help="Cost this split instead: the blocks where stages "
                                                         "2..K begin, e.g. blocks.3.0"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Split a network into K pipeline stages: the largest stage's time is minimal and every stage
    fits its device's memory (dynamic programming over block boundaries)."""
    from archspec.graph import build_graph
    from archspec.plan import plan_at, plan_pipeline

    res = _load(spec)
    g = build_graph(res, _resolution(resolution, res))
    costing = _costing(micro_batch, memory_mb, memory_fraction, recompute)
    if at is not None:
        boundaries = [b.strip() for b in at.split(",") if b.strip()]
        if len(boundaries) != stages - 1:
            fail(f"--at: {stages} stages need {stages - 1} boundaries, got {len(boundaries)}")
        result = plan_at(g, boundaries, costing)
    else:
        result = plan_pipeline(g, stages, costing)
    payload = {"spec": spec, "resolution": g.graph["resolution"][0], **result.as_dict()}
    if as_json:
        emit_json(payload)
        return
    _console().print(f"{res.name}: {stages} stages, micro-batch {micro_batch}, {g.graph['resolution'][0]} px, "
                     f"recomputation {'on' if recompute else 'off'}")
    _plan_table(payload)
    _console().print(f"imbalance {result.imbalance:.3f} (largest stage time / mean); new stages begin at "
                     f"{', '.join(result.boundaries) or '-'}")
    over = [i for i, s in enumerate(result.stages) if s.memory_bytes > costing.device.memory_bytes]
    if over:
        warn(f"stage{'s' * (len(over) > 1)} {', '.join(map(str, over))} exceed{'s' * (len(over) == 1)} the "
             f"{costing.device.memory_bytes / 1e6:.0f} MB budget")


@app.command()
def bench(
    spec: str = typer.Argument(..., help=SPEC_HELP),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda (bf16 autocast, channels_last)."),
    train: bool = typer.Option(False, "--train", help="Time forward + backward instead of inference."),
    compiled: bool = typer.Option(False, "--compile", help="torch.compile the model first."),
    vs_timm: bool = typer.Option(False, "--vs-timm", help="Also time timm's equivalent EfficientNet."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, max=1 << 16),
    resolution: Optional[str] = typer.Option(None, help="Pixels, native, half or train (default: train)."),
    steps: int = typer.Option(10, "--steps", min=1, max=10_000, help="Timed batches (after warm-up)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Measured throughput (images/s) of the compiled model on this machine."""
    from archspec.backends.torch.bench import bench as run_bench

    if device not in ("cpu", "cuda"):
        fail(f"--device: must be cpu or cuda, got {device!r}")
    res = _load(spec)
    payload = run_bench(res, device, batch_size, _resolution(resolution, res) or res.resolution.train, train,
                        compiled, vs_timm, steps)
    if as_json:
        emit_json(payload)
        return
    out = sys.stdout
    what = f"{payload['mode']}, batch {batch_size}, {payload['resolution']} px, {device}" + \
        (", torch.compile" if compiled else "")
    out.write(f"{payload['name']} ({what}): {payload['archspec']['images_per_s']:.1f} images/s\n")
    if vs_timm:
        if "timm" in payload:
            out.write(f"{payload['timm_note']}: {payload['timm']['images_per_s']:.1f} images/s\n")
        else:
            out.write(f"no timm comparison: {payload['timm_note']}\n")


# --------------------------------------------------------------------------------------------
# train / finetune / eval

_ARGV: list[str] = []  # this invocation's arguments, for re-launching under torch.distributed.run


def _diverged(exc: Exception) -> NoReturn:
    sys.stderr.write(f"archspec: {exc}\n")
    raise typer.Exit(1)


@app.command()
def train(
    spec: str = typer.Argument(..., help=SPEC_HELP),
    data: Optional[Path] = typer.Option(None, "--data", help="ImageFolder tree with train/ and val/."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="'synthetic' (the default without --data)."),
    resolution: Optional[str] = typer.Option(None, help="native, half or pixels (default: the spec's train)."),
    epochs: Optional[float] = typer.Option(None, help="Epochs (default: the recipe's, 350)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Global batch B (default: the recipe's)."),
    accum: int = typer.Option(1, "--accum", help="Micro-batches accumulated per global batch."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    nproc: int = typer.Option(1, "--nproc", help="Processes on this machine (torch.distributed)."),
    recipe: Optional[Path] = typer.Option(None, "--recipe", help="A recipe YAML overriding the paper's."),
    out: Optional[Path] = typer.Option(None, "--out", help="The run directory (default: runs/<spec name>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of weights, data order and augmentation."),
    backend: str = typer.Option("torch", "--backend", help="torch, torch-pipeline (--stages processes) or "
                                                           "poptorch (Graphcore IPUs)."),
    stages: int = typer.Option(2, "--stages", help="torch-pipeline / poptorch: pipeline stages (IPUs)."),
    schedule: str = typer.Option("gpipe", "--schedule", help="torch-pipeline: gpipe or 1f1b."),
) -> None:
    """Train SPEC with the paper's recipe (RMSProp-TF, EMA, Mixup+CutMix) on --data or synthetic images."""
    from archspec.runner.distributed import launch, under_launcher

    if dataset not in (None, "synthetic"):
        fail(f"--dataset: only 'synthetic' is built in, got {dataset!r}; use --data DIR for an ImageFolder tree")
    if dataset and data:
        fail("--data and --dataset synthetic exclude each other")
    if backend not in ("torch", "torch-pipeline", "poptorch"):
        fail(f"--backend: must be torch, torch-pipeline or poptorch, got {backend!r}")
    if backend != "torch" and nproc > 1:
        fail(f"--nproc goes with --backend torch; {backend} runs one process per stage (--stages)")
    from archspec.runner.train import Diverged, TrainOptions
    from archspec.runner.train import train as run_train
    from archspec.spec import load_spec

    if out is None:
        out = Path("runs") / load_spec(spec).name
    options = TrainOptions(spec=spec, out=out, data=data, resolution=resolution, epochs=epochs, max_steps=max_steps,
                           batch_size=batch_size, accum=accum, device=device, recipe=recipe, resume=resume, seed=seed)
    if backend == "poptorch":
        _train_poptorch(options, stages)
        return
    if backend == "torch-pipeline":
        if not under_launcher():
            raise typer.Exit(launch(stages, _ARGV))
        from archspec.runner.pipeline import train_pipeline

        try:
            summary = train_pipeline(options, stages, schedule)
        except Diverged as exc:
            _diverged(exc)
    else:
        if nproc > 1 and not under_launcher():
            raise typer.Exit(launch(nproc, _ARGV))
        try:
            summary = run_train(options)
        except Diverged as exc:
            _diverged(exc)
    if summary.get("val_top1_ema") is not None:
        _console().print(f"{out}: {summary['steps']} steps at {summary['resolution']}px; val top-1 "
                         f"{summary['val_top1_ema']:.2%} (EMA), {summary['val_top1_raw']:.2%} (raw)")


def _train_poptorch(options, stages: int) -> None:
    """Compile the IPU program into the run directory and run it (when PopTorch is installed)."""
    import importlib.util
    import subprocess

    from archspec.backends.torch.codegen import generate_model_source
    from archspec.graph import build_graph
    from archspec.resolve import resolve
    from archspec.runner.train import prepare_run_dir, train_resolution
    from archspec.spec import load_spec

    if importlib.util.find_spec("poptorch") is None:
        fail("PopTorch is not installed (it ships with Graphcore's Poplar SDK)")
    unsupported = [flag for flag, given in (("--resume", options.resume), ("--batch-size", options.batch_size),
                                            ("--accum", options.accum != 1), ("--device", options.device != "cpu"))
                   if given]
    if unsupported:
        fail(f"{', '.join(unsupported)}: not with --backend poptorch (the IPU program sets its own batch and "
             "device; compile it with `archspec compile --backend poptorch` to choose them)")
    out = Path(options.out)
    prepare_run_dir(out, False)
    spec = load_spec(options.spec)
    g = build_graph(resolve(spec), train_resolution(options.resolution, spec))
    # the IPU defaults of `compile --backend poptorch`: 1 replica, micro-batch 8, accumulation from the recipe
    files = {"model.py": generate_model_source(g),
             **_poptorch_files(g, stages, 1, 8, 0, 1, 0.15, 0.5, options.recipe),
             "run.json": json.dumps({"backend": "poptorch", "status": "compiled", "spec": options.spec}) + "\n"}
    _write_outputs(out, files)
    args = [sys.executable, str(out / "ipu_train.py"), "--seed", str(options.seed)]
    for flag, value in (("--data", options.data), ("--epochs", options.epochs), ("--max-steps", options.max_steps)):
        if value is not None:
            args += [flag, str(value)]
    raise typer.Exit(subprocess.run(args).returncode)


@app.command()
def finetune(
    run: Path = typer.Argument(..., help="A run directory written by `archspec train`."),
    resolution: int = typer.Option(..., "--resolution", help="Fine-tune (and test) at this resolution."),
    blocks: int = typer.Option(..., "--blocks", help="How many blocks from the end train (1 = the head)."),
    epochs: Optional[float] = typer.Option(None, help="Epochs (default: the recipe's, 2)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    nproc: int = typer.Option(1, "--nproc", help="Processes on this machine (torch.distributed)."),
) -> None:
    """Fine-tune the last blocks of a run at a test resolution, from its EMA weights (SGD, cosine from 0.25)."""
    from archspec.runner.distributed import launch, under_launcher

    if nproc > 1 and not under_launcher():
        raise typer.Exit(launch(nproc, _ARGV))
    from archspec.runner.finetune import FinetuneOptions
    from archspec.runner.finetune import finetune as run_finetune
    from archspec.runner.train import Diverged

    try:
        summary = run_finetune(FinetuneOptions(run, resolution, blocks, epochs, max_steps, device))
    except Diverged as exc:
        _diverged(exc)
    if "val_top1" in summary:
        _console().print(f"{run}: fine-tuned the last {blocks} blocks ({summary['trainable_parameters']:,} parameters, "
                         f"from {summary['first_trainable_layer']}) at {resolution}px for {summary['steps']} steps; "
                         f"val top-1 {summary['val_top1']:.2%}")


@app.command("eval")
def eval_(
    run: Path = typer.Argument(..., help="A run directory written by `archspec train`."),
    resolutions: str = typer.Option(..., "--resolutions", help="Comma-separated, e.g. 224,256,288."),
    weights: str = typer.Option("auto", "--weights", help="auto (finetuned if any, else ema), ema, raw."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Top-1 and top-5 of a run at each test resolution (warns where r_test != r_train mod 2^n)."""
    from archspec.runner.evaluate import evaluate_run

    values = _csv(resolutions, "--resolutions", int)
    if any(not 8 <= r <= 4096 for r in values):
        fail(f"--resolutions: each must be from 8 to 4096, got {resolutions!r}")
    payload, warnings = evaluate_run(run, values, weights, device)
    for message in warnings:
        warn(message)
    if as_json:
        emit_json(payload)
        return
    console = _console()
    console.print(f"{run}: {payload['weights']} weights, trained at {payload['train_resolution']}px")
    for r in payload["results"]:
        console.print(f"  {r['resolution']:>5}px  top-1 {r['top1']:.2%}  top-5 {r['top5']:.2%}"
                      f"{'' if r['congruent'] else '  (not congruent)'}")


# --------------------------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> NoReturn:
    """Console entry point: every bad input is one line on stderr and exit status 2."""
    command = typer.main.get_command(app)
    _ARGV[:] = list(sys.argv[1:] if argv is None else argv)
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
