"""The analytic cost model, read off the IR.

Conventions (docs/design.md):
- MACs are the multiply-accumulates of conv and linear layers (SE's 1x1 convs included). This is
  what the paper's Table 2 and timm call FLOPs; `flops = 2 * macs`.
- Elementwise work is counted apart, per output element: normalization 4 (subtract mean,
  scale, gamma, beta), proxy normalization +2, activation 1, residual add 1, global pooling 1
  per input element, squeeze-excite 2 per element (pool, rescale) plus its tiny gate.
- Activation memory is the sum of every layer's output, i.e. what autograd keeps for backward
  when nothing is recomputed or fused, at 4 bytes (fp32) an element unless told otherwise.
- Arithmetic intensity per conv follows Appendix A, eq. (7): I = G k^2 B f^2 / (s (G k^2 + B f^2)),
  with G the group size, k the kernel, B the batch, f the input field size, s the stride.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import networkx as nx

from .graph import ConvNode, Layer, convs, layers


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int
    elementwise: int
    activations: int  # elements per sample

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def value(self, metric: str) -> int:
        """params or macs."""
        return self.params if metric == "params" else self.macs

    def activation_bytes(self, batch_size: int = 1, bytes_per_element: int = 4) -> int:
        return self.activations * batch_size * bytes_per_element

    def as_dict(self, batch_size: int = 1) -> dict[str, int]:
        return {**asdict(self), "flops": self.flops, "activation_bytes": self.activation_bytes(batch_size)}


def _sum(attrs: list[Layer]) -> Cost:
    return Cost(
        params=sum(a["params"] for a in attrs),
        macs=sum(a["macs"] for a in attrs),
        elementwise=sum(a["elementwise"] for a in attrs),
        activations=sum(a["activations"] for a in attrs),
    )


def totals(g: nx.DiGraph[str]) -> Cost:
    return _sum([d for _, d in layers(g)])


def by(g: nx.DiGraph[str], key: Literal["stage", "unit"]) -> dict[Any, Cost]:
    """Costs grouped by stage or by unit, in forward order."""
    groups: dict[Any, list[Layer]] = {}
    for _, d in layers(g):
        if d["op"] != "input":
            groups.setdefault(d[key], []).append(d)
    return {k: _sum(v) for k, v in groups.items()}


def arithmetic_intensity(attrs: ConvNode, batch_size: int = 1) -> float:
    """Appendix A, eq. (7) for one conv layer (FLOPs per element moved)."""
    g, k, s = attrs["group_size"], attrs["kernel"], attrs["stride"]
    _, h, w = attrs["in_shape"]
    f2 = h * w
    b = batch_size
    return g * k * k * b * f2 / (s * (g * k * k + b * f2))


def conv_intensities(g: nx.DiGraph[str], batch_size: int = 1) -> dict[str, float]:
    return {name: arithmetic_intensity(d, batch_size) for name, d in convs(g)}


def mean_intensity(g: nx.DiGraph[str], batch_size: int = 1, weighted: bool = True) -> float:
    """Mean conv intensity; MAC-weighted by default (where the time goes), else per layer."""
    conv_layers = convs(g)
    values = [arithmetic_intensity(d, batch_size) for _, d in conv_layers]
    if not weighted:
        return sum(values) / len(values)
    weights = [d["macs"] for _, d in conv_layers]
    return sum(v * w for v, w in zip(values, weights)) / sum(weights)


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23M'."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}{unit}"
    return f"{n:.3g}{unit}" if isinstance(n, float) and not math.isclose(n, round(n)) else f"{int(n)}{unit}"
