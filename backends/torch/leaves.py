"""The IR read as layer constructor calls, without importing torch: `leaf_spec` is the one place
that maps an IR node to a layer, and `unit_layers` the one walk that groups them into blocks. The
model builder (model.py) instantiates what they give; the code generator (codegen.py) writes it
out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from archspec import blocks, norms
from archspec.graph import AddNode, Node, NormNode, info, layers, units


@dataclass(frozen=True)
class LeafSpec:
    """A layer as a constructor call: `source_name(*args, **kwargs)`."""

    source_name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


IDENTITY = LeafSpec("nn.Identity", ())


def norm_leaf(kind: norms.NormKind, layer: norms.NormLayer, proxy: bool) -> LeafSpec:
    """A norm layer: the kind's own class, or with proxy normalization (which follows only kinds
    that declare it: GN, LN) ProxyNormAct over the kind's statistics groups."""
    if not proxy:
        args, kwargs = kind.arguments(layer)
        return LeafSpec(kind.module, args, kwargs)
    if not kind.proxy:
        raise ValueError(f"proxy normalization does not follow {kind.name!r}")
    if layer.activation is None:
        raise ValueError("proxy normalization needs an activation")
    return LeafSpec(
        "ProxyNormAct",
        (layer.channels, layer.num_groups),
        {"eps": layer.eps, "activation": layer.activation, "pn_eps": layer.pn_eps},
    )


def _norm_node_leaf(node: NormNode) -> LeafSpec:
    layer = norms.NormLayer(
        node["channels"], node["num_groups"], node["eps"], node["momentum"], node["pn_eps"], node["activation"]
    )
    return norm_leaf(norms.kind(node["norm"]), layer, node["proxy"])


def leaf_spec(node: Node) -> LeafSpec | None:
    """The layer for one IR node; None for nodes their parents implement (act, add, input)."""
    if node["op"] == "conv":
        k = node["kernel"]
        return LeafSpec(
            "nn.Conv2d",
            (node["in_channels"], node["out_channels"], k, node["stride"]),
            {"padding": k // 2, "groups": node["groups"], "bias": False},
        )
    if node["op"] == "norm":
        return _norm_node_leaf(node)
    if node["op"] == "se":
        return LeafSpec("SqueezeExcite", (node["channels"], node["reduced_channels"], node["function"]))
    if node["op"] == "pool":
        return LeafSpec("GlobalPool", ())
    if node["op"] == "dropout":
        return LeafSpec("nn.Dropout", (node["p"],))
    if node["op"] == "linear":
        return LeafSpec("nn.Linear", (node["in_features"], node["out_features"]), {"bias": node["bias"]})
    return None


@dataclass(frozen=True)
class UnitLayers:
    """One unit's layers by their name inside it (a block's `conv_dw`; the stem's and head's
    layers keep their model-level names), and the block's residual add node if it has one."""

    leaves: dict[str, LeafSpec]
    add: AddNode | None = None
    block_kind: str = ""  # a block's torch class, as its kind (archspec.blocks) names it


def unit_layers(g: nx.DiGraph[str]) -> dict[str, UnitLayers]:
    """Every unit's layers in forward order, with the layers a variant leaves out as nn.Identity
    (a block without squeeze-excite, a network without a head conv): what both the builder and
    the code generator walk."""
    leaves: dict[str, dict[str, LeafSpec]] = {}
    adds: dict[str, AddNode] = {}
    for name, node in layers(g):
        unit = node["unit"]
        if node["op"] == "add":
            adds[unit] = node
        spec = leaf_spec(node)
        if spec is not None:
            local = name[len(unit) + 1 :] if unit.startswith("blocks.") else name
            leaves.setdefault(unit, {})[local] = spec
    leaves["head"] = {"conv_head": IDENTITY, "bn2": IDENTITY, **leaves["head"]}
    out = {}
    for b in info(g)["resolved"].blocks:
        kind = blocks.kind(b.block)
        out[b.name] = UnitLayers(
            {slot: leaves[b.name].get(slot, IDENTITY) for slot in kind.slots(b.expand)},
            adds.get(b.name),
            kind.module(b.expand),
        )
    return {unit: out.get(unit) or UnitLayers(leaves[unit]) for unit in units(g)}
