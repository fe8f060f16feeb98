"""`build_model`: the live nn.Module, built by walking the IR.

Every IR node with a module path becomes exactly one leaf module at that path (the norm layer
owns its activation, as `bn1.act`), so the module's parameters, MACs and shapes are the IR's
by construction, and the tests prove it on random specs. `leaf_spec` is the one place that maps
an IR node to a layer and `unit_layers` the one walk that groups them into blocks: this builder
instantiates what they give, the code generator writes it out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import torch
from torch import nn
from torchvision.ops import StochasticDepth

from archspec.api import SpecLike, as_graph
from archspec.graph import layers, units

from .layers import DepthwiseSeparable, EfficientNet, GlobalPool, InvertedResidual, SqueezeExcite
from .norms import NormAct


@dataclass(frozen=True)
class LeafSpec:
    """A layer as a constructor call: `source_name(*args, **kwargs)`."""

    source_name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


CONSTRUCTORS = {"nn.Conv2d": nn.Conv2d, "NormAct": NormAct, "SqueezeExcite": SqueezeExcite, "GlobalPool": GlobalPool,
                "nn.Dropout": nn.Dropout, "nn.Linear": nn.Linear, "nn.Identity": nn.Identity}
IDENTITY = LeafSpec("nn.Identity", ())


def leaf_spec(node: dict[str, Any]) -> LeafSpec | None:
    """The layer for one IR node; None for nodes their parents implement (act, add, input)."""
    op = node["op"]
    if op == "conv":
        k = node["kernel"]
        return LeafSpec("nn.Conv2d", (node["in_channels"], node["out_channels"], k, node["stride"]),
                        {"padding": k // 2, "groups": node["groups"], "bias": False})
    if op == "norm":
        return LeafSpec("NormAct", (node["channels"], node["norm"]), {
            "num_groups": node["num_groups"] or 1, "eps": node["eps"], "momentum": node["momentum"],
            "activation": node["activation"], "proxy": node["proxy"], "pn_eps": node["pn_eps"]})
    if op == "se":
        return LeafSpec("SqueezeExcite", (node["channels"], node["reduced_channels"], node["function"]))
    if op == "pool":
        return LeafSpec("GlobalPool", ())
    if op == "dropout":
        return LeafSpec("nn.Dropout", (node["p"],))
    if op == "linear":
        return LeafSpec("nn.Linear", (node["in_features"], node["out_features"]), {"bias": node["bias"]})
    return None


def construct(spec: LeafSpec) -> nn.Module:
    return CONSTRUCTORS[spec.source_name](*spec.args, **spec.kwargs)


@dataclass(frozen=True)
class UnitLayers:
    """One unit's layers by their name inside it (a block's `conv_dw`; the stem's and head's
    layers keep their model-level names), and the block's residual add node if it has one."""

    leaves: dict[str, LeafSpec]
    add: dict[str, Any] | None = None

    @property
    def block_kind(self) -> str:
        """With an expansion conv a block is an inverted residual."""
        return "InvertedResidual" if "conv_pwl" in self.leaves else "DepthwiseSeparable"


def unit_layers(g: nx.DiGraph) -> dict[str, UnitLayers]:
    """Every unit's layers in forward order, with the layers a variant leaves out as nn.Identity
    (a block without squeeze-excite, a network without a head conv): what both the builder and
    the code generator walk."""
    leaves: dict[str, dict[str, LeafSpec]] = {}
    adds: dict[str, dict[str, Any]] = {}
    for name, node in layers(g):
        unit = node["unit"]
        if node["op"] == "add":
            adds[unit] = node
        spec = leaf_spec(node)
        if spec is not None:
            local = name[len(unit) + 1:] if unit.startswith("blocks.") else name
            leaves.setdefault(unit, {})[local] = spec
    leaves["head"] = {"conv_head": IDENTITY, "bn2": IDENTITY, **leaves["head"]}
    out = {}
    for unit in units(g):
        if unit.startswith("blocks."):
            leaves[unit].setdefault("se", IDENTITY)
        out[unit] = UnitLayers(leaves[unit], adds.get(unit))
    return out


def _block(parts: UnitLayers, modules: dict[str, nn.Module]) -> nn.Module:
    add = parts.add
    cls = InvertedResidual if parts.block_kind == "InvertedResidual" else DepthwiseSeparable
    drop_path = StochasticDepth(add["drop_path"], "row") if add and add["drop_path"] > 0 else nn.Identity()
    return cls(**modules, drop_path=drop_path, has_skip=add is not None)


def init_weights(model: nn.Module) -> None:
    """The reference EfficientNet initialization (tensorflow/tpu efficientnet_model.py:
    conv_kernel_initializer / dense_kernel_initializer)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.out_features)
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)


def model_from_graph(g: nx.DiGraph) -> EfficientNet:
    stages: list[list[nn.Module]] = []
    stem_and_head: dict[str, nn.Module] = {}
    for unit, parts in unit_layers(g).items():  # forward order, which is the order the RNG is drawn in
        modules = {k: construct(s) for k, s in parts.leaves.items()}
        if not unit.startswith("blocks."):
            stem_and_head.update(modules)
            continue
        stage = int(unit.split(".")[1])
        if stage == len(stages):
            stages.append([])
        stages[stage].append(_block(parts, modules))
    model = EfficientNet(**stem_and_head, blocks=nn.Sequential(*(nn.Sequential(*s) for s in stages)))
    init_weights(model)
    return model


def build_model(source: SpecLike, *, seed: int | None = None) -> EfficientNet:
    """The nn.Module for a spec (path, preset name, mapping, ModelSpec, ResolvedSpec or IR graph)."""
    g = as_graph(source)
    if seed is None:
        return model_from_graph(g)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_from_graph(g)
