"""What `stats --convention X` and `stats --all` print: each counter's numbers for the model, as the
tool would print them, with the rule that gives them (archspec.conventions)."""

from __future__ import annotations

from typing import Any

from . import console, emit_json, table

PARAM_KEYS = ("params", "num_params")


def _ops(row: dict[str, Any]) -> str:
    counts = row["counts"]
    text = f"{counts[row['headline']]:,}"
    return f"{text} (_ops {counts['_ops']:.3f})" if "_ops" in counts else text


def _params(row: dict[str, Any]) -> str:
    return next(f"{row['counts'][k]:,}" for k in PARAM_KEYS if k in row["counts"])


def _ratio(row: dict[str, Any]) -> str:
    return "" if row["vs_archspec_macs"] is None else f"{row['vs_archspec_macs']:.4f}"


def one(p: dict[str, Any]) -> None:
    """One convention: its numbers, the call they reproduce, the rule."""
    out = console(100)
    (name, row), *_ = p["conventions"].items()
    out.print(f"{p['name']} at {p['resolution']} px, one image, eval mode: what {name} prints")
    width = max(len(k) for k in row["counts"])
    for key, value in row["counts"].items():
        what = row["unit"] if key == row["headline"] else ("GFLOPS, as published" if key == "_ops" else "")
        shown = f"{value:.3f}" if isinstance(value, float) else f"{value:,}"
        out.print(f"  {key:<{width}}  {shown:>16}  {what}".rstrip())
    out.print(f"call: {row['call']}", soft_wrap=True)
    out.print(f"rule: {row['rule']}", soft_wrap=True)


def side_by_side(p: dict[str, Any]) -> None:
    """Every convention: one row each, then each rule."""
    out = console(110)
    out.print(f"{p['name']} at {p['resolution']} px, one image, eval mode: what each counter prints")
    rows = table(["convention", "ops", "counted as", "params", "vs archspec MACs"], left=("convention", "counted as"))
    for name, row in p["conventions"].items():
        rows.add_row(name, _ops(row), row["unit"], _params(row), _ratio(row))
    out.print(rows)
    for name, row in p["conventions"].items():
        out.print(f"{name}: {row['rule']}", soft_wrap=True)


def show(p: dict[str, Any], as_json: bool = False) -> None:
    """archspec.conventions.report's payload: as JSON, one convention, or all side by side."""
    if as_json:
        emit_json(p)
    elif len(p["conventions"]) == 1:
        one(p)
    else:
        side_by_side(p)
