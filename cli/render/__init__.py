"""How results look on a terminal: every table and line the commands print, from the plain data
the core returns (`--json` prints that data as it is). This module holds the shared helpers and
the reports of the costing and training commands; a command group with much output of its own
has a module beside it here."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from archspec.cost import human
from archspec.match import Candidate, Match


def console(width: int = 0) -> Console:
    out = Console(highlight=False, soft_wrap=False)
    out.width = max(out.width, width)
    return out


def emit_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def warn(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")


def table(columns: list[str], left: tuple[str, ...] = ()) -> Table:
    out = Table(show_edge=False, header_style="bold", pad_edge=False)
    for col in columns:
        out.add_column(col, justify="left" if col in left else "right", no_wrap=True)
    return out


def pct(x: float) -> str:
    return f"{x * 100:+.3f}%"


def _span(values: list[int]) -> str:
    return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"


def _stage_cells(row: dict[str, Any]) -> list[str]:
    if not isinstance(row["stage"], int):
        return [row["stage"], "", "", "", "", ""]
    used = row["group_sizes"]
    mark = "*" if used != [row["group_size_requested"]] else ""
    return [
        str(row["stage"]),
        str(row["repeats"]),
        str(row["kernel"]),
        str(row["stride"]),
        _span(row["mid_channels"]),
        _span(used) + mark,
    ]


def compile_summary(r: dict[str, Any]) -> None:
    out = console(100)
    res = r["resolution"]
    expansion = r["expansion_ratio"] if r["expansion_ratio"] is not None else "per stage"
    out.print(f"[bold]{r['name']}[/bold]  ({' <- '.join(r['sources'])})")
    out.print(
        f"{res[0]}x{res[1]} px (train {r['train_resolution']}, test {r['test_resolutions']}), "
        f"norm {r['norm']}, {r['activation']}, group size {r['group_size']}, expansion {expansion}, "
        f"{r['downsampling_layers']} stride-2 layers"
    )
    rows = table(
        ["stage", "blocks", "k", "s", "mid ch", "G used", "output", "params", "MACs", f"act mem B={r['batch_size']}"],
        left=("stage",),
    )
    for row in r["stages"]:
        shape = "x".join(str(v) for v in row["out_shape"])
        rows.add_row(
            *_stage_cells(row), shape, human(row["params"]), human(row["macs"]), human(row["activation_bytes"], "B")
        )
    t = r["totals"]
    rows.add_section()
    rows.add_row(
        "total", "", "", "", "", "", "", human(t["params"]), human(t["macs"]), human(t["activation_bytes"], "B")
    )
    out.print(rows)
    rounded = r["roundings"]
    out.print(
        f"roundings ({len(rounded)}){':' if rounded else ''}  (* = group size rounded to a divisor, "
        f"group_rounding: {r['group_rounding']})"
    )
    for item in rounded:
        out.print(f"  {item['where']}: {item['what']} {item['requested']:g} -> {item['used']}")
    out.print(
        f"totals: {t['params']:,} params, {t['macs']:,} MACs ({t['flops']:,} FLOPs), "
        f"{t['elementwise']:,} elementwise ops, {t['activations']:,} activation elements per sample, "
        f"mean arithmetic intensity {t['mean_intensity']} (eq. 7, B={r['batch_size']})"
    )


STATS_UNITS = {
    "params": "learnable parameters",
    "macs": "multiply-accumulates per image (conv + linear)",
    "elementwise": "other arithmetic per image (norms, activations, adds, pooling, SE)",
    "activations": "activation elements per image",
    "flops": "2 x MACs",
    "activation_bytes": "bytes of activations for the whole batch (fp32)",
    "resolution": "pixels",
    "batch_size": "images",
    "downsampling_layers": "stride-2 layers",
    "mean_intensity": "MAC-weighted eq. (7) at this batch",
}


def stats_text(payload: dict[str, Any]) -> None:
    for key, value in payload.items():
        shown = f"{value:,}" if isinstance(value, int) else str(value)
        sys.stdout.write(f"{key:>20}  {shown:>16}  {STATS_UNITS.get(key, '')}\n")


def plan_table(p: dict[str, Any], name: str) -> None:
    out = console(110)
    out.print(
        f"{name}: {len(p['stages'])} stages, micro-batch {p['micro_batch']}, {p['resolution']} px, "
        f"recomputation {'on' if p['recompute'] else 'off'}"
    )
    rows = table(
        ["stage", "first layer", "last layer", "blocks", "params", "MACs", "memory", "time share"],
        left=("first layer", "last layer"),
    )
    budget = p["memory_budget_bytes"]
    for i, s in enumerate(p["stages"]):
        rows.add_row(
            str(i),
            s["first_layer"],
            s["last_layer"],
            str(len(s["units"])),
            human(s["params"]),
            human(s["macs"]),
            f"{s['memory_bytes'] / 1e6:.0f}/{budget / 1e6:.0f} MB",
            f"{s['time_share']:.1%}",
        )
    out.print(rows)
    out.print(
        f"imbalance {p['imbalance']:.3f} (largest stage time / mean); new stages begin at "
        f"{', '.join(p['boundaries']) or '-'}"
    )
    over = [str(i) for i, s in enumerate(p["stages"]) if s["memory_bytes"] > budget]
    if over:
        warn(
            f"stage{'s' * (len(over) > 1)} {', '.join(over)} exceed{'s' * (len(over) == 1)} the "
            f"{budget / 1e6:.0f} MB budget"
        )


def match_table(p: dict[str, Any], shown: list[Candidate], match: Match, spec: str) -> None:
    metric = p["metric"]
    rows = table(["E", "E interval", "params", "MACs", f"error ({metric})", ""])
    for c in shown:
        rows.add_row(
            f"{c.expansion_ratio:g}",
            f"[{c.low:.4f}, {c.high:.4f}]",
            f"{c.params:,}",
            f"{c.macs:,}",
            pct(match.error(c)),
            "<- chosen" if c == match.chosen else "",
        )
    out = console()
    lo, hi = p["range"]
    out.print(
        f"{spec}: {p['architectures_searched']} distinct architectures for E in [{lo:g}, {hi:g}]"
        f"{' (integers)' if p['integer'] else ''}; target {p['target']:,} {metric} ({p['target_source']})"
    )
    out.print(rows)
    out.print(
        f"chosen: expansion_ratio {p['expansion_ratio']:g} -> {p[metric]:,} {metric} "
        f"({pct(p['relative_error'])}), {p['params']:,} params, {p['macs']:,} MACs"
    )
    if abs(p["relative_error"]) > 0.01:
        closer = p.get("closer_with")
        how = (
            f"with {', '.join(f'{k}: {v}' for k, v in closer['rules'].items())} E {closer['expansion_ratio']:g} "
            f"comes within {pct(closer['relative_error'])}"
            if closer
            else "no other rounding rule gets within 1%"
        )
        out.print(f"note: the best match misses the target by more than 1%; {how}", soft_wrap=True)
    if "written" in p:
        out.print(f"wrote {p['written']}")


def resolutions_text(p: dict[str, Any]) -> None:
    n, native, half, train = p["downsampling_layers"], p["native"], p["half"], p["train"]
    out = sys.stdout
    out.write(
        f"{p['name']}: native {native}, half {half} ({p['half_source']}), train {train}; "
        f"{n} stride-2 layers, so r_test = r_train (mod {2**n})\n"
    )
    if p["half_rule_differs"]:
        note = f"; {half} is not congruent to {native} (mod {2**n})" if (native - half) % 2**n else ""
        out.write(
            f"note: the half rule (nearest to native/sqrt(2), congruent to native) gives {p['half_rule']}, "
            f"not {half}{note}\n"
        )
    out.write(f"test resolutions for training at {train}: {', '.join(map(str, p['test']))}\n")
    if half and half != train:
        out.write(f"test resolutions for training at half ({half}): {', '.join(map(str, p['test_if_half']))}\n")


def sweep_table(p: dict[str, Any]) -> None:
    b = p["batch_size"]
    rows = table(
        ["G", "E", "params", "MACs", f"act mem B={b}", f"intensity B={b}", "G rounded", "mid ch -> xG", "Table 2 P, F"]
    )
    for r in p["rows"]:
        paper = f"{r['paper'][0]:g}M, {r['paper'][1]:g}G" if r["paper"] else ""
        rows.add_row(
            str(r["group_size"]),
            f"{r['expansion_ratio']:g}",
            f"{r['params'] / 1e6:.2f}M",
            f"{r['macs'] / 1e9:.3f}G",
            human(r["activation_bytes"], "B"),
            f"{r['mean_intensity']:.1f}",
            str(r["rounded_layers"]),
            str(r["aligned_mid_channels"]),
            paper,
        )
    out = console(110)
    rules = ", ".join(
        f"{k} {v}{' (given)' if k in p['rules_overridden'] else ' (the spec)'}" for k, v in p["rules"].items()
    )
    out.print(f"{p['spec']} at {p['resolution']} px; rules: {rules}", soft_wrap=True)
    out.print(rows)
    out.print("G rounded: convs whose group size was rounded to divide their channels", soft_wrap=True)
    out.print("mid ch -> xG: blocks whose expanded channels were moved to a multiple of G", soft_wrap=True)
    out.print("intensity: MAC-weighted mean of eq. (7)", soft_wrap=True)
