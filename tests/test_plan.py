"""Pipeline planning: contiguous stages covering every layer once, within the memory budget, and
optimal (the dynamic programme's bottleneck equals a brute-force search on small networks)."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archspec
from archspec.graph import layers
from archspec.plan import Costing, Device, optimal_cuts, plan_pipeline, plan_units
from conftest import SPECS


@st.composite
def small_networks(draw):
    spec = {
        "base": draw(st.sampled_from(["efficientnet-b0", "efficientnet-b2"])),
        "width_multiplier": draw(st.sampled_from([0.25, 0.5, 1.0])),
        "depth_multiplier": draw(st.sampled_from([0.1, 0.2, 0.3])),
        "group_size": draw(st.sampled_from([1, 16])),
        "expansion_ratio": draw(st.sampled_from([2, 4, 6])),
    }
    return archspec.build_graph(archspec.resolve(archspec.load_spec(spec)), draw(st.sampled_from([64, 128, 224])))


def _costing(draw_mb: float, micro: int, recompute: bool) -> Costing:
    return Costing(micro, Device(int(draw_mb * 1e6), name="test"), recompute=recompute)


def _brute_force(us, k, costing):
    """The least bottleneck over every split into k contiguous, fitting stages."""
    best = None
    for cuts in itertools.combinations(range(1, len(us)), k - 1):
        edges = [0, *cuts, len(us)]
        parts = [us[a:b] for a, b in itertools.pairwise(edges)]
        if all(costing.memory(p, i, k) <= costing.device.memory_bytes for i, p in enumerate(parts)):
            value = max(costing.time(p) for p in parts)
            best = value if best is None else min(best, value)
    return best


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    g=small_networks(),
    k=st.integers(1, 4),
    micro=st.sampled_from([1, 4, 16]),
    memory=st.sampled_from([2.0, 8.0, 50.0, 1e4]),
    recompute=st.booleans(),
)
def test_dp_equals_brute_force_and_plans_are_valid(g, k, micro, memory, recompute):
    us = plan_units(g)
    costing = _costing(memory, micro, recompute)
    cuts = optimal_cuts(us, k, costing)
    reference = _brute_force(us, k, costing)
    if reference is None:
        assert cuts is None
        with pytest.raises(archspec.SpecError):
            plan_pipeline(g, k, costing)
        return
    assert cuts is not None
    plan = plan_pipeline(g, k, costing)
    assert plan.bottleneck_s == pytest.approx(reference, rel=1e-12)
    # contiguous, non-empty, every layer exactly once and in forward order, within budget
    assert len(plan.stages) == k and all(s.layers for s in plan.stages)
    forward = [n for n, d in layers(g) if d["op"] != "input"]
    assert [n for s in plan.stages for n in s.layers] == forward
    assert all(s.memory_bytes <= costing.device.memory_bytes for s in plan.stages)
    assert sum(s.macs for s in plan.stages) == archspec.stats(g).macs
    assert sum(s.params for s in plan.stages) == archspec.stats(g).params


def test_stage_boundaries_are_block_boundaries():
    g = archspec.build_graph(archspec.resolve(archspec.load_spec(SPECS / "b0_g16.yaml")))
    plan = plan_pipeline(g, 3, Costing(8, Device(10**10)))
    for stage in plan.stages:
        units = {g.nodes[n]["unit"] for n in stage.layers}
        assert set(stage.units) == units
        for u in units:  # no block is cut in two
            assert all(g.nodes[n]["unit"] != u for other in plan.stages if other is not stage for n in other.layers)


def test_memory_model_counts_pipeline_stashes():
    g = archspec.build_graph(archspec.resolve(archspec.load_spec(SPECS / "b0_g16.yaml")))
    us = plan_units(g)
    c = Costing(4, Device(10**12))
    # the same stage holds more micro-batches in flight when it comes earlier in the pipeline
    assert c.memory(us[:5], 0, 4) > c.memory(us[:5], 3, 4)
    # recomputation stashes less than keeping every activation
    assert Costing(4, Device(10**12), recompute=False).memory(us[:5], 0, 4) > c.memory(us[:5], 0, 4)
    # weights: fp16 plus fp32 gradient accumulator and two fp32 RMSProp states = 14 bytes a parameter
    no_acts = Costing(1, Device(10**12))
    head = [u for u in us if u.name == "head"]
    assert no_acts.memory(head, 0, 1) >= head[0].params * 14


def test_plan_cli_json(cli):
    payload = json.loads(cli("plan", SPECS / "b0_g16.yaml", "--stages", "2", "--micro-batch", "20", "--json").out)
    assert len(payload["stages"]) == 2 and payload["micro_batch"] == 20
    assert payload["memory_budget_bytes"] == 450_000_000  # half of an IPU's 900 MB by default
    assert payload["stages"][0]["first_layer"] == "conv_stem" and payload["stages"][1]["last_layer"] == "classifier"
    assert sum(s["time_share"] for s in payload["stages"]) == pytest.approx(1)
    assert payload["imbalance"] >= 1


def test_plan_cli_says_what_would_fit(cli):
    result = cli("plan", SPECS / "b5_g16.yaml", "--stages", "2", "--micro-batch", "64")
    assert result.code == 2 and len(result.err.splitlines()) == 1
    assert "no split into 2 stages fits 450 MB per IPU at micro-batch 64; it fits with" in result.err
    result = cli("plan", SPECS / "b5_g16.yaml", "--stages", "2", "--memory-mb", "1")
    assert result.code == 2 and "nothing does: the largest block's weights and optimizer state alone take" in result.err


@pytest.mark.parametrize(
    "args,expected",
    [
        (("--stages", "0"), "--stages: must be from 1 to"),
        (("--stages", "500"), "--stages: must be from 1 to"),
        (
            ("--stages", "2", "--micro-batch", "0"),
            "Invalid value for '--micro-batch': Input should be greater than or equal to 1",
        ),
        (
            ("--stages", "2", "--micro-batch", "-3", "--at", "blocks.3.0"),
            "Invalid value for '--micro-batch': Input should be greater than or equal to 1",
        ),
        (("--stages", "2", "--memory-fraction", "1.5"), "--memory-fraction"),
    ],
)
def test_plan_bad_input(cli, args, expected):
    result = cli("plan", "efficientnet-b0", *args)
    assert result.code == 2 and len(result.err.splitlines()) == 1 and expected in result.err, result.err
