"""The IR and the built module agree: parameters, MACs (FlopCounterMode) and every block's shapes.

Full-size presets run on the meta device (shapes and FLOP counts without arithmetic), so B7 at
320 px costs a second; small networks also run for real on the CPU.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

import archspec
from archspec.cost import totals
from archspec.graph import build_graph, convs, layers, units
from archspec.presets import PRESET_NAMES

NORMS = ["bn", "gn", "ln", "frn", "gn+pn", "ln+pn"]
MAC_OPS = {"aten.convolution", "aten.addmm", "aten.mm"}


@st.composite
def model_specs(draw, small: bool = False):
    spec = {
        "base": draw(st.sampled_from(PRESET_NAMES)),
        "group_size": draw(st.integers(1, 64)),
        "group_rounding": draw(st.sampled_from(["size", "count"])),
        "norm": {"type": draw(st.sampled_from(NORMS)), "groups": draw(st.sampled_from([1, 2, 4, 8]))},
        "activation": draw(st.sampled_from(["silu", "relu", "gelu"])),
        "num_classes": draw(st.integers(1, 1000)),
    }
    if draw(st.booleans()):
        spec["expansion_ratio"] = draw(st.floats(1.0, 6.5).map(lambda e: round(e, 2)))
    if small:
        spec.update(width_multiplier=draw(st.floats(0.1, 0.3)), depth_multiplier=draw(st.floats(0.1, 0.4)))
    return spec


def _mac_count(counts: dict) -> int:
    flops = sum(v for op, v in counts.items() if str(op) in MAC_OPS)
    assert flops % 2 == 0
    return flops // 2


def _check_module_against_ir(g, model, x) -> torch.Tensor:
    batch = x.shape[0]
    # parameters: in total and node by node (a node's module is exactly the node's layer)
    assert sum(p.numel() for p in model.parameters()) == totals(g).params
    for name, node in layers(g):
        if node["module"] is not None:
            module = model.get_submodule(node["module"])
            assert sum(p.numel() for p in module.parameters()) == node["params"], name

    # shapes: every node-backed module and every block, via forward hooks
    seen: dict[str, tuple] = {}
    hooks = []
    last_of_unit = {u: [n for n, d in layers(g) if d["unit"] == u][-1] for u in units(g)}
    watched = {d["module"]: n for n, d in layers(g) if d["module"] is not None}
    watched.update({u: last_of_unit[u] for u in units(g) if u.startswith("blocks.")})
    for path in watched:
        module = model.get_submodule(path)
        hooks.append(
            module.register_forward_hook(lambda _m, _i, out, key=path: seen.__setitem__(key, tuple(out.shape)))
        )
    with FlopCounterMode(display=False) as counter:
        logits = model(x)
    for h in hooks:
        h.remove()
    for path, node_name in watched.items():
        assert seen[path] == (batch, *g.nodes[node_name]["out_shape"]), path

    # MACs: conv + linear, halved, in total and per MAC-bearing node
    counts = counter.get_flop_counts()
    assert _mac_count(counts["Global"]) == batch * totals(g).macs
    for name, node in layers(g):
        if node["macs"]:
            assert _mac_count(counts[f"{type(model).__name__}.{node['module']}"]) == batch * node["macs"], name
    assert logits.shape == (batch, g.graph["num_classes"])
    return logits


@pytest.mark.slow  # tens of seconds: in the slow run, which CI runs too
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=model_specs(), resolution=st.integers(32, 320), batch=st.integers(1, 3))
def test_full_size_module_equals_ir_on_meta(spec, resolution, batch):
    g = build_graph(archspec.resolve(archspec.load_spec(spec)), resolution)
    with torch.device("meta"):
        model = archspec.build_model(g)
        x = torch.empty(batch, 3, resolution, resolution)
    model.train(batch > 1)  # BN needs more than one value per channel in training
    _check_module_against_ir(g, model, x)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=model_specs(small=True), resolution=st.integers(32, 160), seed=st.integers(0, 2**16))
def test_small_module_equals_ir_on_cpu(spec, resolution, seed):
    g = build_graph(archspec.resolve(archspec.load_spec(spec)), resolution)
    model = archspec.build_model(g, seed=seed)
    x = torch.randn(2, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed))
    logits = _check_module_against_ir(g, model, x)
    assert torch.isfinite(logits).all()


def test_odd_resolutions_match_same_padding():
    # 'same' padding: every stride-2 layer maps n -> ceil(n / 2)
    g = build_graph(archspec.resolve(archspec.load_spec("efficientnet-b0")), 225)
    sizes = [d["out_shape"][1] for _, d in convs(g) if d["stride"] == 2]
    assert sizes == [113, 57, 29, 15, 8]
    with torch.device("meta"):
        model = archspec.build_model(g)
        _check_module_against_ir(g, model.eval(), torch.empty(1, 3, 225, 225))


def test_residual_edges_join_block_input_and_add():
    g = build_graph(archspec.resolve(archspec.load_spec("efficientnet-b0")))
    residual = [(u, v) for u, v, k in g.edges(data="kind") if k == "residual"]
    res = archspec.resolve(archspec.load_spec("efficientnet-b0"))
    assert len(residual) == sum(b.skip for b in res.blocks) == 9
    for u, v in residual:
        assert v.endswith(".add") and g.nodes[u]["out_shape"] == g.nodes[v]["out_shape"]
