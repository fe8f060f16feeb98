"""`build_model`: the live nn.Module, built by walking the IR.

Every IR node with a module path becomes exactly one leaf module at that path (the norm layer
owns its activation, as `bn1.act`), so the module's parameters, MACs and shapes are the IR's
by construction, and the tests prove it on random specs. `leaf_spec` is the one place that maps
an IR node to a layer: this builder instantiates it, the code generator writes it out.
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
                "nn.Dropout": nn.Dropout, "nn.Linear": nn.Linear}


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


def leaf_module(node: dict[str, Any]) -> nn.Module | None:
    spec = leaf_spec(node)
    return None if spec is None else CONSTRUCTORS[spec.source_name](*spec.args, **spec.kwargs)


def block_kind(parts: dict[str, Any]) -> str:
    """The block class for a unit's layers: with an expansion conv it is an inverted residual."""
    return "InvertedResidual" if "conv_pwl" in parts else "DepthwiseSeparable"


def drop_path(rate: float) -> nn.Module:
    return StochasticDepth(rate, "row") if rate > 0 else nn.Identity()


def _block(parts: dict[str, nn.Module], add: dict[str, Any] | None) -> nn.Module:
    parts.setdefault("se", nn.Identity())
    cls = InvertedResidual if block_kind(parts) == "InvertedResidual" else DepthwiseSeparable
    return cls(**parts, drop_path=drop_path(add["drop_path"]) if add else nn.Identity(), has_skip=add is not None)


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
    parts: dict[str, dict[str, nn.Module]] = {}
    adds: dict[str, dict[str, Any]] = {}
    for name, node in layers(g):
        if node["op"] == "add":
            adds[node["unit"]] = node
        module = leaf_module(node)
        if module is None:
            continue
        unit = node["unit"]
        local = name[len(unit) + 1:] if unit.startswith("blocks.") else name
        parts.setdefault(unit, {})[local] = module

    stages: list[list[nn.Module]] = []
    for unit in units(g):
        if unit.startswith("blocks."):
            stage = int(unit.split(".")[1])
            if stage == len(stages):
                stages.append([])
            stages[stage].append(_block(parts[unit], adds.get(unit)))
    stem, head = parts["stem"], parts["head"]
    model = EfficientNet(
        conv_stem=stem["conv_stem"], bn1=stem["bn1"],
        blocks=nn.Sequential(*(nn.Sequential(*s) for s in stages)),
        conv_head=head.get("conv_head", nn.Identity()), bn2=head.get("bn2", nn.Identity()),
        global_pool=head["global_pool"], head_drop=head["head_drop"], classifier=head["classifier"],
    )
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
