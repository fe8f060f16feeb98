"""Standalone PyTorch source for a spec: DIR/model.py, needing nothing but torch.

The generated file carries the very classes the live backend uses (their source is copied in from
layers.py and norms.py, read as text so that generating needs no torch, and so they cannot drift;
only the drop-path layer is the template's own, torchvision being unavailable) and a `build()`
that instantiates one literal layer per IR node, stage by stage, with each stage's shapes and cost
in a comment. Its parameter names equal `archspec.build_model(spec)`'s.

Nothing from a spec reaches the source except through `literal()` (Python literals, via repr) or
`comment()` (printable characters only, on one line): a spec cannot inject code.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import networkx as nx

from archspec import norms
from archspec._version import __version__
from archspec.cost import by, human, totals
from archspec.graph import info, layers

from .leaves import LeafSpec, UnitLayers, unit_layers

HERE = Path(__file__).resolve().parent

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("archspec.backends.torch", "templates"),
    autoescape=False,
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)


def literal(value: Any) -> str:
    """A Python literal for a plain value (str, int, float, bool, None, or lists/dicts of them).
    Floats are written to 12 significant digits: 0.15, not 0.15000000000000002."""
    if isinstance(value, float):
        return repr(float(f"{value:.12g}"))
    if isinstance(value, (str, bool, int)) or value is None:
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


@functools.cache
def _definitions(module: str) -> dict[str, str]:
    """The source text of every top-level definition and constant of layers.py or norms.py, or of
    a module named in full (a plug-in norm's torch half), read as text: nothing is imported."""
    if "." in module:
        found = importlib.util.find_spec(module)
        if found is None or found.origin is None:
            raise ValueError(f"no module {module!r} to copy a norm layer from")
        text = Path(found.origin).read_text()
    else:
        text = (HERE / f"{module}.py").read_text()
    out = {}
    for item in ast.parse(text).body:
        if isinstance(item, (ast.ClassDef, ast.FunctionDef)):
            out[item.name] = ast.get_source_segment(text, item) or ""
        elif isinstance(item, ast.Assign) and isinstance(item.targets[0], ast.Name):
            out[item.targets[0].id] = ast.get_source_segment(text, item) or ""
    return out


def _constructor_parameters(class_name: str) -> list[str]:
    """The parameters of a block class's __init__ in layers.py, in order."""
    tree = ast.parse(_definitions("layers")[class_name])
    init = next(f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "__init__")
    return [a.arg for a in init.args.args[1:]]


def _block_code(block: UnitLayers, indent: str) -> str:
    add = block.add
    parts = {k: call(s) for k, s in block.leaves.items()}
    order = _constructor_parameters(block.block_kind)
    parts["drop_path"] = _drop_path_code(add["drop_path"]) if add else "nn.Identity()"
    parts["has_skip"] = literal(add is not None)
    inner = f",\n{indent}    ".join(f"{key}={parts[key]}" for key in order)
    return f"{block.block_kind}(\n{indent}    {inner},\n{indent})"


def _norm_sources(kinds: list[norms.NormKind], proxy: bool) -> list[str]:
    """The norm layer classes the network uses (and the classes they derive from), in the order
    their modules define them, with PN's helpers where proxy normalization is used."""
    own = _definitions("norms")
    needed = {k.module for k in kinds} | ({"ProxyNormAct"} if proxy else set())
    for name in list(needed):  # a class's base, if that is a norm class too (ProxyNormAct's GroupNormAct)
        if name in own:
            tree = ast.parse(own[name]).body[0]
            assert isinstance(tree, ast.ClassDef)
            needed |= {b.id for b in tree.bases if isinstance(b, ast.Name) and b.id in own}
    pieces = [text for name, text in own.items() if name in needed]
    pieces += [_definitions(k.source)[k.module] for k in kinds if k.module not in own]
    helpers = ("_normal_pdf", "_normal_cdf", "relu_gaussian_moments", "gauss_legendre", "ProxyMoments")
    return [own["make_activation"], *(own[name] for name in helpers if proxy), *pieces]


def _sources(kinds: list[norms.NormKind], proxy: bool, block_classes: set[str]) -> str:
    """The classes and helpers of the live backend that the generated file needs, verbatim: the
    block classes among them in the order layers.py defines them."""
    torch_layers = _definitions("layers")
    used = [name for name in torch_layers if name in block_classes]
    pieces = _norm_sources(kinds, proxy) + [
        torch_layers[name] for name in ("SqueezeExcite", "_residual", *used, "GlobalPool", "EfficientNet")
    ]
    return "\n\n\n".join(p.rstrip() for p in pieces)


def model_files(g: nx.DiGraph[str], options: Mapping[str, Any]) -> dict[str, str]:
    """The torch backend's files (archspec.backend): model.py."""
    return {"model.py": generate_model_source(g)}


def generate_model_source(g: nx.DiGraph[str]) -> str:
    res = info(g)["resolved"]
    nodes = dict(layers(g))
    walked = unit_layers(g)
    blocks_by_stage: dict[int, list[str]] = {}
    for unit, unit_parts in walked.items():
        if unit.startswith("blocks."):
            blocks_by_stage.setdefault(int(unit.split(".")[1]), []).append(_block_code(unit_parts, " " * 12))
    stage_costs = by(g, "stage")
    stages = []
    for s, blocks in blocks_by_stage.items():
        members = [d for d in nodes.values() if d["stage"] == s]
        c = stage_costs[s]
        shape_in, shape_out = (
            "x".join(map(str, shape)) for shape in (members[0]["in_shape"], members[-1]["out_shape"])
        )
        stages.append(
            {
                "blocks": blocks,
                "comment": comment(
                    f"stage {s}: {shape_in} -> {shape_out}, {len(blocks)} block{'s' * (len(blocks) > 1)}, "
                    f"{human(c.params)} params, {human(c.macs)} MACs"
                ),
            }
        )
    stem_and_head = {k: call(s) for unit in ("stem", "head") for k, s in walked[unit].leaves.items()}
    total = totals(g)
    summary = {
        "name": res.name,
        "description": res.description,
        "sources": list(res.sources),
        "resolution": list(info(g)["resolution"]),
        "in_channels": res.in_channels,
        "norm": res.norm.type,
        "activation": res.activation,
        "group_size": res.group_size,
        "expansion_ratio": res.expansion_ratio,
        "num_classes": res.num_classes,
        "params": total.params,
        "macs": total.macs,
    }
    return _ENV.get_template("model.py.j2").render(
        title=comment(res.name),
        version=comment(__version__),
        sources=comment(" <- ".join(res.sources)),
        resolution=info(g)["resolution"][0],
        params=f"{total.params:,}",
        macs=f"{total.macs:,}",
        spec_literal="{\n" + "".join(f"    {literal(k)}: {literal(v)},\n" for k, v in summary.items()) + "}",
        constants="\n".join(_definitions("norms")[name] for name in ("PANEL_NODES", "Z_MAX")),
        library=_sources([res.norm.kind], res.norm.proxy, {u.block_kind for u in walked.values()}),
        stages=stages,
        parts=stem_and_head,
    )
