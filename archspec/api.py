"""The Python contract (docs/design.md): each step accepts whatever came before it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import networkx as nx

from .backend import kind as backend_kind
from .cost import Cost, totals
from .graph import Resolution, build_graph, info
from .report import compile_report, resolved_yaml
from .resolve import ResolvedSpec, resolve
from .spec import ModelSpec, load_spec

if TYPE_CHECKING:  # torch stays out of the core's import path
    from torch import nn

SpecLike = Union[str, Path, Mapping[str, Any], ModelSpec, ResolvedSpec, "nx.DiGraph[str]"]


def as_resolved(source: SpecLike) -> ResolvedSpec:
    if isinstance(source, ResolvedSpec):
        return source
    if isinstance(source, nx.DiGraph):
        return info(source)["resolved"]
    return resolve(load_spec(source))


def as_graph(source: SpecLike, resolution: Resolution | None = None) -> nx.DiGraph[str]:
    if isinstance(source, nx.DiGraph) and (resolution is None or info(source)["resolution"] == _square(resolution)):
        return source
    return build_graph(as_resolved(source), resolution)


def _square(resolution: Resolution) -> tuple[int, int]:
    return (resolution, resolution) if isinstance(resolution, int) else resolution


def stats(source: SpecLike, resolution: Resolution | None = None) -> Cost:
    """Params, MACs (`.flops` = 2 x MACs), elementwise ops and activations of a spec."""
    return totals(as_graph(source, resolution))


def build_model(source: SpecLike, *, seed: int | None = None) -> nn.Module:
    """The torch nn.Module for a spec (imports torch on first use); with `seed`, its initial
    weights are a function of the seed alone."""
    from .backends.torch.model import model_from_graph

    model: nn.Module = model_from_graph(as_graph(source), seed=seed)
    return model


def compile_files(
    g: nx.DiGraph[str], batch_size: int = 1, backend: str = "torch", options: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """What `compile --out` writes: resolved.yaml, report.json, and the files of the `backend`
    (archspec.backend; torch: model.py, standalone PyTorch), given its `options`."""
    files = {
        "resolved.yaml": resolved_yaml(info(g)["resolved"]),
        "report.json": json.dumps(compile_report(g, batch_size), indent=2) + "\n",
    }
    files.update(backend_kind(backend).entry("files")(g, options or {}))
    return files
