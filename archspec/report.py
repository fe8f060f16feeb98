"""What archspec reports, as plain data: `compile`'s concrete layers and their costs (built from
the IR alone, so the numbers a person reads are the numbers the model has), `resolutions`' table,
and `resolved.yaml`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import networkx as nx

from . import cost, norms
from .graph import convs, info, layers
from .resolution import half_resolution, valid_test_resolutions
from .resolve import ResolvedSpec
from .yaml_source import dump_yaml


def stage_rows(g: nx.DiGraph[str], batch_size: int = 1) -> list[dict[str, Any]]:
    """One row per stage (stem, 0..S-1, head) for the compile summary."""
    res = info(g)["resolved"]
    costs = cost.by(g, "stage")
    rows = []
    for stage, c in costs.items():
        stage_convs = [d for _, d in convs(g) if d["stage"] == stage]
        first = stage_convs[0] if stage_convs else None
        last = stage_convs[-1] if stage_convs else None
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
                repeats=len(blocks),
                kernel=blocks[0].kernel,
                stride=blocks[0].stride,
                expansion=blocks[0].expansion,
                mid_channels=sorted({b.mid_channels for b in blocks}),
                out_channels=blocks[0].out_channels,
                group_size_requested=blocks[0].requested_group_size,
                group_sizes=sorted({b.group_size for b in blocks}),
            )
        elif last is not None:
            row.update(out_channels=last["out_channels"])
        rows.append(row)
    return rows


def layer_rows(g: nx.DiGraph[str], batch_size: int = 1) -> list[dict[str, Any]]:
    rows = []
    for name, d in layers(g):
        if d["op"] == "input":
            continue
        row: dict[str, Any] = {
            "op": d["op"],
            "unit": d["unit"],
            "params": d["params"],
            "macs": d["macs"],
            "elementwise": d["elementwise"],
            "activations": d["activations"],
        }
        row.update(name=name, in_shape=list(d["in_shape"]), out_shape=list(d["out_shape"]))
        if d["op"] == "conv":
            row.update(
                kernel=d["kernel"],
                stride=d["stride"],
                groups=d["groups"],
                group_size=d["group_size"],
                intensity=round(cost.arithmetic_intensity(d, batch_size), 3),
            )
        rows.append(row)
    return rows


def compile_report(g: nx.DiGraph[str], batch_size: int = 1) -> dict[str, Any]:
    res = info(g)["resolved"]
    total = cost.totals(g)
    return {
        "name": res.name,
        "sources": list(res.sources),
        "resolution": list(info(g)["resolution"]),
        "train_resolution": res.resolution.train,
        "test_resolutions": list(res.resolution.test),
        "downsampling_layers": res.downsampling_layers,
        "batch_size": batch_size,
        "norm": res.norm.type,
        "activation": res.activation,
        "group_size": res.group_size,
        "group_rounding": res.group_rounding,
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
        "sources": list(res.sources),
        "in_channels": res.in_channels,
        "num_classes": res.num_classes,
        "norm": {k: v for k, v in asdict(res.norm).items() if k in norms.fields(res.norm.type)},
        "activation": res.activation,
        "resolution": asdict(res.resolution),
        "stem": asdict(res.stem),
        "blocks": [{**asdict(b), "groups": b.groups, "skip": b.skip} for b in res.blocks],
        "head": {"channels": res.head_channels, "dropout": res.dropout},
        "group_rounding": res.group_rounding,
        "roundings": [str(r) for r in res.roundings],
    }


def resolved_yaml(res: ResolvedSpec) -> str:
    return dump_yaml(resolved_document(res))


def resolutions_report(res: ResolvedSpec, maximum: int) -> dict[str, Any]:
    """Native and half resolutions (Table 1), the stride-2 layers n, and the test resolutions
    congruent to training (mod 2^n) up to `maximum`."""
    n = res.downsampling_layers
    r = res.resolution
    rule = half_resolution(r.native, n) if r.native else None
    return {
        "name": res.name,
        "native": r.native,
        "half": r.half,
        "half_source": "given" if r.half_given else "rule",
        "half_rule": rule,
        "half_rule_differs": rule is not None and r.half is not None and rule != r.half,
        "train": r.train,
        "downsampling_layers": n,
        "modulus": 2**n,
        "test": valid_test_resolutions(r.train, n, maximum),
        "test_if_half": valid_test_resolutions(r.half, n, maximum) if r.half else None,
    }
