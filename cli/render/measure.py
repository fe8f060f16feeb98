"""How measured and predicted speed look: `bench --per-layer` (its tables and roofline figure),
`profile`'s progress and summary, and `stats --profile`'s prediction."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from archspec.cost import human
from archspec.predict import NOISY

from . import console, emit_json, table, warn

KIND_COLOURS = {
    "grouped conv": "tab:red",
    "pointwise conv": "tab:blue",
    "stem conv": "tab:purple",
    "norm": "tab:green",
    "pn": "tab:olive",
    "activation": "tab:orange",
    "se": "tab:cyan",
    "add": "tab:gray",
    "head": "tab:brown",
}


@contextlib.contextmanager
def progress(what: str) -> Iterator[Callable[[int, int, str], None]]:
    """A progress bar on stderr (stdout stays one JSON object with --json); yields the callback."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(what, total=None)

        def tick(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, description=f"{what}: {label:<14}")

        yield tick


def profile_summary(p: dict[str, Any], out: Path, as_json: bool) -> None:
    summary = {k: v for k, v in p.items() if k not in ("entries", "calibration")} | {
        "layers": len(p["entries"]),
        "calibration_networks": len({json.dumps(n["spec"], sort_keys=True) for n in p["calibration"]}),
        "out": str(out),
    }
    if p["noise"]["networks"] > NOISY:
        warn(
            f"the machine was noisy (calibration timings spread {p['noise']['networks']:.0%}): predictions from "
            "this profile are as uncertain; profile again on a quieter machine"
        )
    if as_json:
        emit_json(summary)
        return
    where = p["machine"].get("gpu") or p["machine"]["cpu"]
    console().print(
        f"wrote {out}: {len(p['entries'])} layers timed in networks on {p['device']} ({where}, "
        f"{p['threads']} threads, torch {p['torch']}), {p['dtype']}, batch {p['batch_size']}, "
        f"{'forward and forward + backward' if p['train'] else 'forward only'}, in {p['seconds']:.0f} s; "
        f"peaks {p['peaks']['gflops']:.0f} GFLOP/s, {p['peaks']['gbps']:.0f} GB/s; "
        f"from {summary['calibration_networks']} calibration networks"
    )


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def _layer_table(p: dict[str, Any], train: bool) -> Any:
    columns = ["layer", "kind", "MACs", "I (eq. 7)", "FLOP/B", "fwd ms"] + (["bwd ms"] if train else []) + ["GFLOP/s"]
    rows = table(columns, left=("layer", "kind"))
    for r in p["rows"]:
        intensity = f"{r['intensity']:.1f}" if r["intensity"] is not None else ""
        cells = [r["name"], r["kind"], human(r["macs"]), intensity, f"{r['flop_per_byte']:.2f}", _ms(r["forward_s"])]
        rows.add_row(*cells, *([_ms(r["backward_s"])] if train else []), f"{r['gflops']:.2f}")
    return rows


def _stage_table(p: dict[str, Any]) -> Any:
    rows = table(["stage", "time ms", "share", "fwd GFLOP/s (convs)"], left=("stage",))
    for s in p["stages"]:
        rows.add_row(str(s["stage"]), _ms(s["time_s"]), f"{s['time_s'] / p['layers_s']:.1%}", f"{s['gflops']:.2f}")
    return rows


def per_layer(p: dict[str, Any], plot: Optional[Path], as_json: bool) -> None:
    if plot is not None:
        roofline(p, plot)
    if as_json:
        emit_json(p)
        return
    train = p["mode"] == "train"
    out = console(110)
    out.print(f"{p['name']}: {p['mode']}, batch {p['batch_size']}, {p['resolution']} px, {p['device']}")
    out.print(_layer_table(p, train))
    out.print(_stage_table(p))
    shares = sorted(p["kinds"].items(), key=lambda kv: -kv[1]["share"])
    out.print("time by op kind: " + ", ".join(f"{k} {v['share']:.1%}" for k, v in shares))
    out.print(
        f"per-layer times sum to {p['sum_ratio']:.1%} of the step they were timed in (median of {p['steps']}; "
        f"tolerance ±{p['tolerance']:.0%}: the Python between layers, the loss and zero_grad are in no layer); "
        f"timed, a step takes {_ms(p['hooked_step_s'])} ms, {p['hook_overhead']:+.0%} against a plain step's "
        f"{_ms(p['step_s'])} ms ({p['images_per_s']:.1f} images/s)"
    )
    if abs(p["sum_ratio"] - 1) > p["tolerance"]:
        warn(f"the per-layer sum is off the step by more than ±{p['tolerance']:.0%}")
    if "timm" in p:
        _against_timm(out, p)
    elif "timm_note" in p:
        out.print(f"no timm comparison: {p['timm_note']}")
    if plot is not None:
        out.print(f"wrote {plot}")


def _against_timm(out: Console, p: dict[str, Any]) -> None:
    """Where archspec's and timm's time differ: per op kind, and the layers that differ most."""
    timm = p["timm"]
    out.print(
        f"{p['timm_note']}: a plain step {_ms(timm['step_s'])} ms against archspec's {_ms(p['step_s'])} ms "
        f"(archspec / timm speed {timm['step_s'] / p['step_s']:.2f})"
    )
    kinds = table(["op kind", "archspec ms", "timm ms", "archspec - timm"], left=("op kind",))
    for kind, k in sorted(timm["kinds"].items(), key=lambda kv: kv[1]["timm_s"] - kv[1]["archspec_s"]):
        kinds.add_row(kind, _ms(k["archspec_s"]), _ms(k["timm_s"]), _ms(k["archspec_s"] - k["timm_s"]))
    out.print(kinds)
    rows = [r for r in p["rows"] if r["timm_forward_s"] == r["timm_forward_s"]]  # not NaN: timm has the layer
    rows.sort(key=lambda r: r["timm_forward_s"] + r["timm_backward_s"] - r["forward_s"] - r["backward_s"])
    worst = table(["layer (IR name)", "kind", "archspec ms", "timm ms"], left=("layer (IR name)", "kind"))
    for r in rows[:10]:
        ours, theirs = r["forward_s"] + r["backward_s"], r["timm_forward_s"] + r["timm_backward_s"]
        worst.add_row(r["name"], r["kind"], _ms(ours), _ms(theirs))
    out.print("the layers where archspec is slowest against timm:")
    out.print(worst)


def roofline(p: dict[str, Any], path: Path) -> None:
    """Achieved GFLOP/s (forward) against FLOPs per byte moved, one point per layer, coloured by op
    kind, under the device's measured compute and bandwidth ceilings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for kind, colour in KIND_COLOURS.items():
        pts = [r for r in p["rows"] if r["kind"] == kind and r["flops"] and r["forward_s"] > 0]
        if pts:
            ax.scatter([r["flop_per_byte"] for r in pts], [r["gflops"] for r in pts], s=14, c=colour, label=kind)
    peak, bandwidth = p["peaks"]["gflops"], p["peaks"]["gbps"]
    xs = [x / 100 for x in range(1, 100)] + list(range(1, 1000))
    ax.plot(
        xs,
        [min(peak, bandwidth * x) for x in xs],
        "k--",
        lw=1,
        label=f"peaks: {peak:.0f} GFLOP/s, {bandwidth:.0f} GB/s",
    )
    ax.set(xscale="log", yscale="log", xlabel="FLOPs per byte moved (Appendix A)", ylabel="achieved GFLOP/s (forward)")
    ax.set_title(f"{p['name']}: {p['resolution']} px, batch {p['batch_size']}, {p['device']}")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def prediction(p: dict[str, Any]) -> None:
    """`stats --profile`: predicted speed and time per stage."""
    out = console()
    train = p["train_images_per_s"]
    out.print(
        f"predicted on {p['device']} ({p['dtype']}, batch {p['batch_size']}): "
        f"inference {p['infer_images_per_s']:.1f} images/s, "
        + (f"training {train:.1f} images/s, " if train is not None else "training not predicted at this batch, ")
        + f"batch-1 latency {p['latency_ms']:.2f} ms"
    )
    cal = p["calibration"]
    sources = ", ".join(f"{n} {source}" for source, n in cal["sources"].items())
    batches = " and ".join(str(b) for b in cal["batch_sizes"])
    out.print(f"calibrated on {cal['networks']} networks ({sources}) at batch {batches}")
    for line in p["warnings"]:
        warn(line)
    rows = table(["stage", "inference ms", "training ms", "share"], left=("stage",))
    for s in p["stages"]:
        t = s["train_s"]
        share = f"{s['infer_s'] / p['infer_s']:.1%}"
        rows.add_row(str(s["stage"]), _ms(s["infer_s"]), _ms(t) if t is not None else "", share)
    out.print(rows)


def bench_text(p: dict[str, Any]) -> None:
    what = f"{p['mode']}, batch {p['batch_size']}, {p['resolution']} px, {p['device']}, {p['fast_paths']}"
    ours = p["archspec"]
    sys.stdout.write(
        f"{p['name']} ({what}): {ours['images_per_s']:.1f} images/s (spread ±{ours['spread'] / 2:.0%}, "
        f"median of {p['steps']})\n"
    )
    if "folded" in p:
        sys.stdout.write(", ".join(f"{k}: {n} BN layers folded into convs" for k, n in p["folded"].items()) + "\n")
    if "timm" in p:
        r = p["ratio"]
        sys.stdout.write(
            f"{p['timm_note']}: {p['timm']['images_per_s']:.1f} images/s; archspec / timm = {r['median']:.2f} "
            f"(median of {p['steps']} interleaved pairs; quartiles {r['q1']:.2f}-{r['q3']:.2f})\n"
        )
    elif "timm_note" in p:
        sys.stdout.write(f"no timm comparison: {p['timm_note']}\n")
