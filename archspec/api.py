"""The Python contract (DESIGN.md): each step accepts whatever came before it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Union

import networkx as nx

from .cost import Cost, totals
from .graph import Resolution, build_graph
from .resolve import ResolvedSpec, resolve
from .spec import ModelSpec, load_spec

if TYPE_CHECKING:  # torch stays out of the core's import path
    from torch import nn

SpecLike = Union[str, Path, Mapping[str, Any], ModelSpec, ResolvedSpec, nx.DiGraph]


def as_resolved(source: SpecLike) -> ResolvedSpec:
    if isinstance(source, ResolvedSpec):
        return source
    if isinstance(source, nx.DiGraph):
        return source.graph["resolved"]
    return resolve(load_spec(source))


def as_graph(source: SpecLike, resolution: Resolution | None = None) -> nx.DiGraph:
    if isinstance(source, nx.DiGraph) and (resolution is None or source.graph["resolution"] == _square(resolution)):
        return source
    return build_graph(as_resolved(source), resolution)


def _square(resolution: Resolution) -> tuple[int, int]:
    return (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)


def stats(source: SpecLike, resolution: Resolution | None = None) -> Cost:
    """Params, MACs (`.flops` = 2 x MACs), elementwise ops and activations of a spec."""
    return totals(as_graph(source, resolution))


def build_model(source: SpecLike, *, seed: int | None = None) -> "nn.Module":
    """The torch nn.Module for a spec (imports torch on first use)."""
    from .backends.torch.model import build_model as _build

    return _build(source, seed=seed)
