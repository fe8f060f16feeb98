"""What `archspec compile` reports, as plain data: the concrete layers and their costs.

Built from the IR alone, so the numbers a person reads are the numbers the model has.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import networkx as nx

from . import cost
from .graph import layers
from .resolve import ResolvedSpec


def stage_rows(g: nx.DiGraph, batch_size: int = 1) -> list[dict[str, Any]]:
    """One row per stage (stem, 0..S-1, head) for the compile summary."""
    res: ResolvedSpec = g.graph["resolved"]
    costs = cost.by(g, "stage")
    rows = []
    for stage, c in costs.items():
        convs = [d for _, d in layers(g, "conv") if d["stage"] == stage]
        first, last = convs[0] if convs else None, convs[-1] if convs else None
        out_shape = [d for _, d in layers(g) if d["stage"] == stage][-1]["out_shape"]
        row: dict[str, Any] = {
            "stage": stage,
            "in_shape": list(first["in_shape"]) if first else None,
            "out_shape": list(out_shape),
            **c.as_dict(batch_size),
        }
        if isinstance(stage, int):
            blocks = [b for b in res.blocks if b.stage == stage]
            row.update(
                repeats=len(blocks), kernel=blocks[0].kernel, stride=blocks[0].stride,
                expansion=blocks[0].expansion, mid_channels=sorted({b.mid_channels for b in blocks}),
                out_channels=blocks[0].out_channels, group_size_requested=blocks[0].requested_group_size,
                group_sizes=sorted({b.group_size for b in blocks}),
            )
        elif last is not None:
            row.update(out_channels=last["out_channels"])
        rows.append(row)
    return rows


def layer_rows(g: nx.DiGraph, batch_size: int = 1) -> list[dict[str, Any]]:
    rows = []
    for name, d in layers(g):
        if d["op"] == "input":
            continue
        row = {k: d[k] for k in ("op", "unit", "params", "macs", "elementwise", "activations")}
        row.update(name=name, in_shape=list(d["in_shape"]), out_shape=list(d["out_shape"]))
        if d["op"] == "conv":
            row.update(kernel=d["kernel"], stride=d["stride"], groups=d["groups"], group_size=d["group_size"],
                       intensity=round(cost.arithmetic_intensity(d, batch_size), 3))
        rows.append(row)
    return rows


def compile_report(g: nx.DiGraph, batch_size: int = 1) -> dict[str, Any]:
    res: ResolvedSpec = g.graph["resolved"]
    total = cost.totals(g)
    return {
        "name": res.name,
        "sources": list(res.spec.source.chain),
        "resolution": list(g.graph["resolution"]),
        "train_resolution": res.resolution.train,
        "test_resolutions": list(res.resolution.test),
        "downsampling_layers": g.graph["downsampling_layers"],
        "batch_size": batch_size,
        "norm": res.norm.type,
        "activation": res.activation,
        "group_size": res.group_size,
        "group_rounding": res.spec.group_rounding,
        "expansion_ratio": res.expansion_ratio,
        "totals": {**total.as_dict(batch_size), "mean_intensity": round(cost.mean_intensity(g, batch_size), 3)},
        "stages": stage_rows(g, batch_size),
        "roundings": [asdict(r) for r in res.roundings],
        "layers": layer_rows(g, batch_size),
    }


def resolved_document(res: ResolvedSpec) -> dict[str, Any]:
    """The concrete architecture, layer by layer (DIR/resolved.yaml)."""
    return {
        "name": res.name,
        "description": res.description,
        "sources": list(res.spec.source.chain),
        "in_channels": res.in_channels,
        "num_classes": res.num_classes,
        "norm": asdict(res.norm),
        "activation": res.activation,
        "resolution": asdict(res.resolution),
        "stem": asdict(res.stem),
        "blocks": [{**asdict(b), "groups": b.groups, "skip": b.skip} for b in res.blocks],
        "head": {"channels": res.head_channels, "dropout": res.dropout},
        "group_rounding": res.spec.group_rounding,
        "roundings": [str(r) for r in res.roundings],
    }


def resolved_yaml(res: ResolvedSpec) -> str:
    import yaml

    # through JSON: tuples become lists, which safe_dump writes
    return yaml.safe_dump(json.loads(json.dumps(resolved_document(res))), sort_keys=False)
