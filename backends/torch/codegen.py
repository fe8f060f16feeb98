"""Standalone PyTorch source for a spec: DIR/model.py, needing nothing but torch.

The generated file carries the very classes the live backend uses (their source is copied in, so
they cannot drift; only the drop-path layer is the template's own, torchvision being unavailable) and a `build()` that instantiates one literal layer per IR node, stage by
stage, with each stage's shapes and cost in a comment. Its parameter names equal
`archspec.build_model(spec)`'s.

Nothing from a spec reaches the source except through `literal()` (Python literals, via repr) or
`comment()` (printable characters only, on one line): a spec cannot inject code.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import jinja2
import networkx as nx

from archspec import __version__
from archspec.cost import by, human, totals
from archspec.graph import layers

from . import layers as torch_layers
from . import norms
from .model import LeafSpec, UnitLayers, unit_layers

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("archspec.backends.torch", "templates"),
                          autoescape=False, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)


def literal(value: Any) -> str:
    """A Python literal for a plain value (str, int, float, bool, None, or lists/dicts of them)."""
    if isinstance(value, (str, bool, int, float)) or value is None:
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"not a plain value: {type(value).__name__}")


def comment(text: str) -> str:
    """Text safe inside a `#` comment or a docstring: printable ASCII on one line, with no triple
    quote and no backslash."""
    cleaned = re.sub(r"[^\x20-\x7e]", " ", str(text)).replace('"""', "'''").replace("\\", "/")
    return cleaned[:200]


def call(spec: LeafSpec) -> str:
    args = [literal(a) for a in spec.args] + [f"{k}={literal(v)}" for k, v in spec.kwargs.items()]
    return f"{spec.source_name}({', '.join(args)})"


def _drop_path_code(rate: float) -> str:
    return f"DropPath({literal(rate)})" if rate > 0 else "nn.Identity()"


def _block_code(block: UnitLayers, indent: str) -> str:
    add = block.add
    parts = {k: call(s) for k, s in block.leaves.items()}
    order = list(inspect.signature(getattr(torch_layers, block.block_kind)).parameters)
    parts["drop_path"] = _drop_path_code(add["drop_path"]) if add else "nn.Identity()"
    parts["has_skip"] = literal(add is not None)
    inner = f",\n{indent}    ".join(f"{key}={parts[key]}" for key in order)
    return f"{block.block_kind}(\n{indent}    {inner},\n{indent})"


def _sources(proxy: bool) -> str:
    """The classes and helpers of the live backend that the generated file needs, verbatim."""
    pieces: list[Any] = [norms.make_activation]
    if proxy:
        pieces += [norms._normal_pdf, norms._normal_cdf, norms.relu_gaussian_moments, norms.gauss_legendre,
                   norms.ProxyMoments]
    pieces += [norms.NormAct, torch_layers.SqueezeExcite, torch_layers.DepthwiseSeparable,
               torch_layers.InvertedResidual, torch_layers.GlobalPool, torch_layers.EfficientNet]
    return "\n\n\n".join(inspect.getsource(p).rstrip() for p in pieces)


def generate_model_source(g: nx.DiGraph) -> str:
    res = g.graph["resolved"]
    nodes = dict(layers(g))
    walked = unit_layers(g)
    blocks_by_stage: dict[int, list[str]] = {}
    for unit, parts in walked.items():
        if unit.startswith("blocks."):
            blocks_by_stage.setdefault(int(unit.split(".")[1]), []).append(_block_code(parts, " " * 12))
    stage_costs = by(g, "stage")
    stages = []
    for s, blocks in blocks_by_stage.items():
        members = [d for d in nodes.values() if d["stage"] == s]
        c = stage_costs[s]
        shape_in, shape_out = ("x".join(map(str, shape)) for shape in (members[0]["in_shape"], members[-1]["out_shape"]))
        stages.append({"blocks": blocks, "comment": comment(
            f"stage {s}: {shape_in} -> {shape_out}, {len(blocks)} block{'s' * (len(blocks) > 1)}, {human(c.params)} params, "
            f"{human(c.macs)} MACs")})
    parts = {k: call(s) for unit in ("stem", "head") for k, s in walked[unit].leaves.items()}
    total = totals(g)
    summary = {
        "name": res.name, "description": res.description, "sources": list(res.spec.source.chain),
        "resolution": list(g.graph["resolution"]), "in_channels": res.in_channels, "norm": res.norm.type,
        "activation": res.activation,
        "group_size": res.group_size, "expansion_ratio": res.expansion_ratio, "num_classes": res.num_classes,
        "params": total.params, "macs": total.macs,
    }
    return _ENV.get_template("model.py.j2").render(
        title=comment(res.name), version=comment(__version__), sources=comment(" <- ".join(res.spec.source.chain)),
        resolution=g.graph["resolution"][0], params=f"{total.params:,}", macs=f"{total.macs:,}",
        spec_literal="{\n" + "".join(f"    {literal(k)}: {literal(v)},\n" for k, v in summary.items()) + "}",
        constants=f"PANEL_NODES = {literal(norms.PANEL_NODES)}\n"
        f"Z_MAX = {literal(norms.Z_MAX)}", library=_sources(res.norm.proxy),
        stages=stages, parts=parts,
    )
