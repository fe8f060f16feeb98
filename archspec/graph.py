"""The IR: a networkx DiGraph of layers that knows every shape, parameter and MAC.

`build_graph(resolved, resolution)` lowers a ResolvedSpec. Each node is one layer; its name is
the dotted path of the module that implements it in the torch backend (timm's EfficientNet
naming: conv_stem, bn1, blocks.{stage}.{block}.conv_pw/bn1/conv_dw/bn2/se/conv_pwl/bn3, conv_head,
bn2, classifier), so a state dict, a cost table and a pipeline plan all speak the same names.
Nodes are inserted in forward order; edges carry data flow, residual edges included.

Every node's attributes are one of the TypedDicts below, told apart by `op`; read them through
`node()` and `layers()` so that a type checker follows them. The attributes every node has:

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

The graph itself carries `GraphInfo`: the network's name, the resolution it was lowered at, its
class count, its number of stride-2 layers and the ResolvedSpec it came from.
"""

from __future__ import annotations

import math
from typing import Literal, TypedDict, Union, cast

import networkx as nx

from . import blocks
from .blocks import Block
from .resolve import BlockLayer, ResolvedSpec

Resolution = Union[int, tuple[int, int]]
Shape = tuple[int, ...]
StageKey = Union[int, Literal["stem", "head"]]

# Elementwise operations per output element (documented in cost.py; a norm's own are its kind's).
PROXY_OPS = 2  # PN's per-channel subtract and scale after the activation
ACT_OPS = 1


class Layer(TypedDict):
    """What every node has."""

    module: str | None
    unit: str
    stage: StageKey
    in_shape: Shape
    out_shape: Shape
    params: int
    macs: int
    elementwise: int
    activations: int


class InputNode(Layer):
    op: Literal["input"]


class ConvNode(Layer):
    op: Literal["conv"]
    role: Literal["stem", "expand", "spatial", "project", "head"]
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    groups: int
    group_size: int
    bias: bool


class NormNode(Layer):
    op: Literal["norm"]
    channels: int
    norm: str  # its kind's name in the norm registry (archspec.norms): bn, gn, ln, frn, ...
    proxy: bool  # followed by proxy normalization of its activation
    num_groups: int  # statistics groups (GN, LN); 0 for norms without
    eps: float
    pn_eps: float
    momentum: float
    activation: str | None  # the activation it applies, if any (the kind's own, e.g. FRN's TLU)


class ActNode(Layer):
    op: Literal["act"]
    function: str


class SENode(Layer):
    op: Literal["se"]
    channels: int
    reduced_channels: int
    function: str


class AddNode(Layer):
    op: Literal["add"]
    drop_path: float


class PoolNode(Layer):
    op: Literal["pool"]


class DropoutNode(Layer):
    op: Literal["dropout"]
    p: float


class LinearNode(Layer):
    op: Literal["linear"]
    in_features: int
    out_features: int
    bias: bool


Node = Union[InputNode, ConvNode, NormNode, ActNode, SENode, AddNode, PoolNode, DropoutNode, LinearNode]


class GraphInfo(TypedDict):
    name: str
    resolution: tuple[int, int]
    num_classes: int
    downsampling_layers: int
    resolved: ResolvedSpec


def conv_out(size: int, stride: int) -> int:
    # 'same' padding as the reference EfficientNet: ceil(size / stride). For odd kernels this is
    # exactly what symmetric padding k//2 gives, so the torch backend pads symmetrically.
    return -(-size // stride)


class _Lowering:
    def __init__(self, resolved: ResolvedSpec, input_shape: Shape) -> None:
        self.res = resolved
        self.g: nx.DiGraph[str] = nx.DiGraph()
        self.last = "input"
        self.g.add_node(
            "input",
            **InputNode(
                op="input",
                module=None,
                unit="stem",
                stage="stem",
                in_shape=(),
                out_shape=input_shape,
                params=0,
                macs=0,
                elementwise=0,
                activations=0,
            ),
        )

    @property
    def shape(self) -> Shape:
        return node(self.g, self.last)["out_shape"]

    def layer(
        self,
        name: str,
        out_shape: Shape,
        unit: str,
        stage: StageKey,
        *,
        params: int = 0,
        macs: int = 0,
        elementwise: int = 0,
        module: str | None = "",
    ) -> Layer:
        return Layer(
            module=name if module == "" else module,
            unit=unit,
            stage=stage,
            in_shape=self.shape,
            out_shape=out_shape,
            params=params,
            macs=macs,
            elementwise=elementwise,
            activations=math.prod(out_shape),
        )

    def add(self, name: str, attrs: Node) -> None:
        self.g.add_node(name, **attrs)
        self.g.add_edge(self.last, name, kind="data")
        self.last = name

    def conv(
        self,
        name: str,
        out_ch: int,
        kernel: int,
        stride: int,
        groups: int,
        role: Literal["stem", "expand", "spatial", "project", "head"],
        unit: str,
        stage: StageKey,
    ) -> None:
        in_ch, h, w = self.shape
        oh, ow = conv_out(h, stride), conv_out(w, stride)
        weights = out_ch * (in_ch // groups) * kernel * kernel
        common = self.layer(name, (out_ch, oh, ow), unit, stage, params=weights, macs=weights * oh * ow)
        self.add(
            name,
            ConvNode(
                **common,
                op="conv",
                role=role,
                in_channels=in_ch,
                out_channels=out_ch,
                kernel=kernel,
                stride=stride,
                groups=groups,
                group_size=in_ch // groups,
                bias=False,
            ),
        )

    def norm_act(self, name: str, unit: str, stage: StageKey, act: bool) -> None:
        cfg = self.res.norm
        kind = cfg.kind
        c = self.shape[0]
        elements = math.prod(self.shape)
        proxy = cfg.proxy and act  # PN normalizes activations; a norm with no activation stays plain
        # a norm with its own activation (FRN's TLU) applies it in the layer: no separate act node
        own_act = act and kind.own_activation is not None
        ops = kind.ops_per_element + (PROXY_OPS if proxy else 0) + (ACT_OPS if own_act else 0)
        common = self.layer(
            name,
            self.shape,
            unit,
            stage,
            params=kind.params(c, act) + (2 * c if proxy else 0),
            elementwise=elements * ops,
        )
        self.add(
            name,
            NormNode(
                **common,
                op="norm",
                channels=c,
                norm=cfg.base,
                proxy=proxy,
                num_groups=cfg.num_groups(c),
                eps=cfg.eps,
                pn_eps=cfg.pn_eps,
                momentum=cfg.momentum,
                activation=(kind.own_activation or self.res.activation) if act else None,
            ),
        )
        if act and not own_act:
            common = self.layer(f"{name}.act", self.shape, unit, stage, elementwise=elements * ACT_OPS)
            self.add(f"{name}.act", ActNode(**common, op="act", function=self.res.activation))

    def block(self, b: BlockLayer) -> None:
        """A block's nodes, as its kind (archspec.blocks) lays them out."""
        blocks.kind(b.block).lower(self, b)

    def se(self, b: Block) -> None:
        """The block's squeeze-excite on the current output, if it has one."""
        if not b.se_channels:
            return
        unit = b.name
        c, h, w = self.shape
        r = b.se_channels
        weights = 2 * c * r
        # pool (c*h*w adds), reduce act (r), sigmoid gate (c), rescale (c*h*w multiplies)
        common = self.layer(
            f"{unit}.se",
            self.shape,
            unit,
            b.stage,
            params=weights + r + c,
            macs=weights,
            elementwise=2 * c * h * w + r + c,
        )
        self.add(f"{unit}.se", SENode(**common, op="se", channels=c, reduced_channels=r, function=self.res.activation))

    def residual(self, b: Block, block_input: str) -> None:
        """The skip connection's add, where the block has one."""
        if not b.skip:
            return
        unit = b.name
        # its module is the drop-path (stochastic depth) layer applied to the branch before the add
        common = self.layer(
            f"{unit}.add", self.shape, unit, b.stage, module=f"{unit}.drop_path", elementwise=math.prod(self.shape)
        )
        self.add(f"{unit}.add", AddNode(**common, op="add", drop_path=b.drop_path))
        self.g.add_edge(block_input, f"{unit}.add", kind="residual")

    def lower(self) -> nx.DiGraph[str]:
        res = self.res
        self.conv("conv_stem", res.stem.out_channels, res.stem.kernel, res.stem.stride, 1, "stem", "stem", "stem")
        self.norm_act("bn1", "stem", "stem", act=True)
        for b in res.blocks:
            self.block(b)
        if res.head_channels:
            self.conv("conv_head", res.head_channels, 1, 1, 1, "head", "head", "head")
            self.norm_act("bn2", "head", "head", act=True)
        c, h, w = self.shape
        self.add(
            "global_pool", PoolNode(**self.layer("global_pool", (c,), "head", "head", elementwise=c * h * w), op="pool")
        )
        self.add("head_drop", DropoutNode(**self.layer("head_drop", (c,), "head", "head"), op="dropout", p=res.dropout))
        n = res.num_classes
        common = self.layer("classifier", (n,), "head", "head", params=c * n + n, macs=c * n)
        self.add("classifier", LinearNode(**common, op="linear", in_features=c, out_features=n, bias=True))
        return self.g


def build_graph(resolved: ResolvedSpec, resolution: Resolution | None = None) -> nx.DiGraph[str]:
    """Lower `resolved` at `resolution` (pixels, or (height, width); default: its train resolution)."""
    if resolution is None:
        resolution = resolved.resolution.train
    height, width = (resolution, resolution) if isinstance(resolution, int) else resolution
    if height < 1 or width < 1:
        raise ValueError(f"resolution must be positive, got {resolution}")
    g = _Lowering(resolved, (resolved.in_channels, height, width)).lower()
    g.graph.update(
        GraphInfo(
            name=resolved.name,
            resolution=(height, width),
            num_classes=resolved.num_classes,
            downsampling_layers=resolved.downsampling_layers,
            resolved=resolved,
        )
    )
    return g


def info(g: nx.DiGraph[str]) -> GraphInfo:
    """The graph-level attributes of an IR graph."""
    return cast(GraphInfo, g.graph)


def node(g: nx.DiGraph[str], name: str) -> Node:
    return cast(Node, g.nodes[name])


def lower_block(resolved: ResolvedSpec, block: BlockLayer, input_shape: Shape) -> nx.DiGraph[str]:
    """One block lowered on its own from `input_shape` (C, H, W): its nodes are exactly those
    build_graph gives it, so variants of a block can be costed without lowering the network."""
    low = _Lowering(resolved, input_shape)
    low.block(block)
    return low.g


def layers(g: nx.DiGraph[str]) -> list[tuple[str, Node]]:
    """(name, attributes) of every node, in forward order."""
    return [(n, cast(Node, d)) for n, d in g.nodes(data=True)]


def convs(g: nx.DiGraph[str]) -> list[tuple[str, ConvNode]]:
    """(name, attributes) of every conv, in forward order."""
    return [(n, d) for n, d in layers(g) if d["op"] == "conv"]


def unit_module_paths(g: nx.DiGraph[str], unit: str) -> list[str]:
    """The module paths that run a unit, in order: a block as a whole; the stem's and head's layers
    (an activation runs inside its norm layer's module)."""
    if unit.startswith("blocks."):
        return [unit]
    return [d["module"] for _, d in layers(g) if d["unit"] == unit and d["module"] is not None and d["op"] != "act"]


def units(g: nx.DiGraph[str]) -> list[str]:
    """Block-level units in forward order: "stem", "blocks.S.B" ..., "head"."""
    seen: dict[str, None] = {}
    for _, d in layers(g):
        seen.setdefault(d["unit"], None)
    return list(seen)
