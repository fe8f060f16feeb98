"""The IR: a networkx DiGraph of layers that knows every shape, parameter and MAC.

`build_graph(resolved, resolution)` lowers a ResolvedSpec. Each node is one layer; its name is
the dotted path of the module that implements it in the torch backend (timm's EfficientNet
naming: conv_stem, bn1, blocks.{stage}.{block}.conv_pw/bn1/conv_dw/bn2/se/conv_pwl/bn3, conv_head,
bn2, classifier), so a state dict, a cost table and a pipeline plan all speak the same names.
Nodes are inserted in forward order; edges carry data flow, residual edges included.

Node attributes (all plain values):
    op           input | conv | norm | act | se | add | pool | dropout | linear
    module       torch module path (an act's is inside its norm layer, an add's is the block's
                 drop-path layer), or None for the input
    unit         the block the layer belongs to: "stem", "blocks.S.B" or "head"
    stage        "stem", stage index (int) or "head"
    in_shape, out_shape   per-sample shapes: (C, H, W), or (C,) after pooling
    params       learnable parameters (norm: gamma, beta, and PN's beta~, gamma~)
    macs         multiply-accumulates of conv / linear layers (SE's two 1x1 convs included)
    elementwise  other arithmetic, counted per output element (see cost.py)
    activations  elements of the layer's output, per sample
plus the op's own settings (channels, kernel, stride, groups, norm type, ...).
"""

from __future__ import annotations

import math
from typing import Any, Union

import networkx as nx

from .resolve import BlockLayer, ResolvedSpec

Resolution = Union[int, tuple[int, int]]
Shape = tuple[int, ...]

# Elementwise operations per output element (documented in cost.py).
NORM_OPS = 4  # subtract mean, scale by 1/std, multiply gamma, add beta
PROXY_OPS = 2  # PN's per-channel subtract and scale after the activation
ACT_OPS = 1


def conv_out(size: int, stride: int) -> int:
    # 'same' padding as the reference EfficientNet: ceil(size / stride). For odd kernels this is
    # exactly what symmetric padding k//2 gives, so the torch backend pads symmetrically.
    return -(-size // stride)


class _Lowering:
    def __init__(self, resolved: ResolvedSpec, input_shape: Shape) -> None:
        self.res = resolved
        self.g = nx.DiGraph()
        self.last = "input"
        self.g.add_node("input", op="input", module=None, unit="stem", stage="stem", in_shape=(),
                        out_shape=input_shape, params=0, macs=0, elementwise=0, activations=0)

    @property
    def shape(self) -> Shape:
        return self.g.nodes[self.last]["out_shape"]

    def add(self, name: str, op: str, out_shape: Shape, *, unit: str, stage: Any, params: int = 0,
            macs: int = 0, elementwise: int = 0, module: str | None = "", **attrs: Any) -> str:
        self.g.add_node(name, op=op, module=name if module == "" else module, unit=unit, stage=stage,
                        in_shape=self.shape, out_shape=out_shape, params=params, macs=macs,
                        elementwise=elementwise, activations=math.prod(out_shape), **attrs)
        self.g.add_edge(self.last, name, kind="data")
        self.last = name
        return name

    def conv(self, name: str, out_ch: int, kernel: int, stride: int, groups: int, role: str,
             unit: str, stage: Any) -> None:
        in_ch, h, w = self.shape
        oh, ow = conv_out(h, stride), conv_out(w, stride)
        weights = out_ch * (in_ch // groups) * kernel * kernel
        self.add(name, "conv", (out_ch, oh, ow), unit=unit, stage=stage, params=weights,
                 macs=weights * oh * ow, role=role, in_channels=in_ch, out_channels=out_ch,
                 kernel=kernel, stride=stride, groups=groups, group_size=in_ch // groups, bias=False)

    def norm_act(self, name: str, unit: str, stage: Any, act: bool) -> None:
        cfg = self.res.norm
        c = self.shape[0]
        elements = math.prod(self.shape)
        proxy = cfg.proxy and act  # PN normalizes activations; a norm with no activation stays plain
        self.add(name, "norm", self.shape, unit=unit, stage=stage, params=(4 if proxy else 2) * c,
                 elementwise=elements * (NORM_OPS + (PROXY_OPS if proxy else 0)), channels=c,
                 norm=cfg.base, proxy=proxy, num_groups=cfg.num_groups(c), eps=cfg.eps,
                 pn_eps=cfg.pn_eps, momentum=cfg.momentum, activation=self.res.activation if act else None)
        if act:
            self.add(f"{name}.act", "act", self.shape, unit=unit, stage=stage, elementwise=elements * ACT_OPS,
                     function=self.res.activation)

    def block(self, b: BlockLayer) -> None:
        unit, stage = b.name, b.stage
        block_input = self.last
        if b.expand:
            self.conv(f"{unit}.conv_pw", b.mid_channels, 1, 1, 1, "expand", unit, stage)
            self.norm_act(f"{unit}.bn1", unit, stage, act=True)
        self.conv(f"{unit}.conv_dw", b.mid_channels, b.kernel, b.stride, b.groups, "spatial", unit, stage)
        dw_norm = f"{unit}.bn2" if b.expand else f"{unit}.bn1"
        self.norm_act(dw_norm, unit, stage, act=True)
        if b.se_channels:
            c, h, w = self.shape
            r = b.se_channels
            weights = 2 * c * r
            # pool (c*h*w adds), reduce act (r), sigmoid gate (c), rescale (c*h*w multiplies)
            self.add(f"{unit}.se", "se", self.shape, unit=unit, stage=stage, params=weights + r + c, macs=weights,
                     elementwise=2 * c * h * w + r + c, channels=c, reduced_channels=r,
                     function=self.res.activation)
        project = f"{unit}.conv_pwl" if b.expand else f"{unit}.conv_pw"
        self.conv(project, b.out_channels, 1, 1, 1, "project", unit, stage)
        self.norm_act(f"{unit}.bn3" if b.expand else f"{unit}.bn2", unit, stage, act=False)
        if b.skip:
            # its module is the drop-path (stochastic depth) layer applied to the branch before the add
            self.add(f"{unit}.add", "add", self.shape, unit=unit, stage=stage, module=f"{unit}.drop_path",
                     elementwise=math.prod(self.shape), drop_path=b.drop_path)
            self.g.add_edge(block_input, f"{unit}.add", kind="residual")

    def lower(self) -> nx.DiGraph:
        res = self.res
        self.conv("conv_stem", res.stem.out_channels, res.stem.kernel, res.stem.stride, 1, "stem", "stem", "stem")
        self.norm_act("bn1", "stem", "stem", act=True)
        for b in res.blocks:
            self.block(b)
        if res.head_channels:
            self.conv("conv_head", res.head_channels, 1, 1, 1, "head", "head", "head")
            self.norm_act("bn2", "head", "head", act=True)
        c, h, w = self.shape
        self.add("global_pool", "pool", (c,), unit="head", stage="head", elementwise=c * h * w)
        self.add("head_drop", "dropout", (c,), unit="head", stage="head", p=res.dropout)
        n = res.num_classes
        self.add("classifier", "linear", (n,), unit="head", stage="head", params=c * n + n, macs=c * n,
                 in_features=c, out_features=n, bias=True)
        return self.g


def build_graph(resolved: ResolvedSpec, resolution: Resolution | None = None) -> nx.DiGraph:
    """Lower `resolved` at `resolution` (pixels, or (height, width); default: its train resolution)."""
    if resolution is None:
        resolution = resolved.resolution.train
    height, width = (resolution, resolution) if isinstance(resolution, int) else resolution
    if height < 1 or width < 1:
        raise ValueError(f"resolution must be positive, got {resolution}")
    g = _Lowering(resolved, (resolved.in_channels, height, width)).lower()
    g.graph.update(name=resolved.name, resolution=(height, width), num_classes=resolved.num_classes,
                   downsampling_layers=sum(1 for _, d in g.nodes(data=True) if d.get("stride") == 2),
                   resolved=resolved)
    return g


def lower_block(resolved: ResolvedSpec, block: BlockLayer, input_shape: Shape) -> nx.DiGraph:
    """One block lowered on its own from `input_shape` (C, H, W): its nodes are exactly those
    build_graph gives it, so variants of a block can be costed without lowering the network."""
    low = _Lowering(resolved, input_shape)
    low.block(block)
    return low.g


def layers(g: nx.DiGraph, op: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(name, attributes) in forward order, optionally of one op."""
    return [(n, d) for n, d in g.nodes(data=True) if op is None or d["op"] == op]


def unit_module_paths(g: nx.DiGraph, unit: str) -> list[str]:
    """The module paths that run a unit, in order: a block as a whole; the stem's and head's layers
    (an activation runs inside its norm layer's module)."""
    if unit.startswith("blocks."):
        return [unit]
    return [d["module"] for _, d in layers(g) if d["unit"] == unit and d["module"] is not None and d["op"] != "act"]


def units(g: nx.DiGraph) -> list[str]:
    """Block-level units in forward order: "stem", "blocks.S.B" ..., "head"."""
    seen: dict[str, None] = {}
    for _, d in g.nodes(data=True):
        seen.setdefault(d["unit"], None)
    return list(seen)
