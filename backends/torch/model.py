"""`model_from_graph`: the live nn.Module, built by walking the IR.

Every IR node with a module path becomes exactly one leaf module at that path (the norm layer
owns its activation, as `bn1.act`), so the module's parameters, MACs and shapes are the IR's
by construction, and the tests prove it on random specs. leaves.py maps IR nodes to layers and
groups them into blocks; this builder instantiates what it gives, the code generator writes it out.
"""

from __future__ import annotations

import math

import networkx as nx
import torch
from torch import nn
from torchvision.ops import StochasticDepth

from .layers import BLOCKS, EfficientNet, GlobalPool, SqueezeExcite
from .leaves import LeafSpec, UnitLayers, unit_layers
from .norms import layer_class

# Norm layers come from the norm registry's torch half (norms.layer_class), plug-ins' included.
CONSTRUCTORS: dict[str, type[nn.Module]] = {
    "nn.Conv2d": nn.Conv2d,
    "SqueezeExcite": SqueezeExcite,
    "GlobalPool": GlobalPool,
    "nn.Dropout": nn.Dropout,
    "nn.Linear": nn.Linear,
    "nn.Identity": nn.Identity,
}


def construct(spec: LeafSpec) -> nn.Module:
    cls = CONSTRUCTORS.get(spec.source_name) or layer_class(spec.source_name)
    return cls(*spec.args, **spec.kwargs)


def _block(parts: UnitLayers, modules: dict[str, nn.Module]) -> nn.Module:
    add = parts.add
    drop_path = StochasticDepth(add["drop_path"], "row") if add and add["drop_path"] > 0 else nn.Identity()
    return BLOCKS[parts.block_kind](**modules, drop_path=drop_path, has_skip=add is not None)


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
            # the reference's 1/sqrt(out) assumes ImageNet's 1000 classes (out ~ in); with 10 it made
            # logits of std ~1.5 and a first loss near 3.1, not ln 10 = 2.30. Never above 1/sqrt(in):
            # logit variance stays under E[x^2]/3 whatever the class count, so the first loss is ~ln C.
            bound = 1.0 / math.sqrt(max(m.in_features, m.out_features))
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)


def model_from_graph(g: nx.DiGraph[str], *, seed: int | None = None) -> EfficientNet:
    """The network of an IR graph; with `seed`, its initial weights are a function of the seed alone."""
    if seed is None:
        return _model(g)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _model(g)


def _model(g: nx.DiGraph[str]) -> EfficientNet:
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
