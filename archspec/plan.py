"""Pipeline planning: split the IR's block sequence into K contiguous stages, one per device.

The plan minimizes the largest stage's time estimate subject to every stage fitting its device's
memory, optimally, by dynamic programming over block boundaries (units: the stem, each block,
the head). What a stage costs, per micro-batch of M images, under pipelined training as the paper
ran it (each forward stage recomputed before its backward pass, fp16 arithmetic, fp32 optimizer
state):

- time: (3 + recompute) passes x (2 x MACs x M / peak FLOP/s + bytes moved / bandwidth), bytes moved
  being the stage's weights and its layers' activations;
- memory: weights (fp16) and their fp32 gradient accumulator and RMSProp state; for each of the
  K - k micro-batches in flight at stage k (0-based, one-forward-one-backward order), the stashed
  activations: with recomputation only the stage's input and its block outputs (the recomputation
  checkpoints), without it every activation of the stage; with recomputation also the working
  activations of the largest block, recomputed for one micro-batch.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import networkx as nx

from .cost import by
from .errors import SpecError
from .graph import layers

IPU_SRAM_BYTES = 900 * 10**6  # per Graphcore MK2 IPU (paper section 3.4)


@dataclass(frozen=True)
class Device:
    memory_bytes: int  # usable per device
    flops: float = 62.5e12  # fp16 peak of one MK2 IPU (250 TFLOP/s per 4-IPU M2000)
    bandwidth: float = 47.5e12  # on-chip SRAM bandwidth of one MK2 IPU, bytes/s
    name: str = "IPU"


def ipu(usable_fraction: float = 0.5) -> Device:
    """An MK2 IPU with `usable_fraction` of its 900 MB left for the model (code, exchange and
    temporary buffers take the rest)."""
    return Device(int(IPU_SRAM_BYTES * usable_fraction))


@dataclass(frozen=True)
class Precision:
    activation_bytes: int = 2  # fp16
    weight_bytes: int = 2  # fp16
    state_bytes: int = 12  # fp32 gradient accumulator + two fp32 RMSProp states, per parameter


@dataclass(frozen=True)
class Unit:
    name: str
    layers: tuple[str, ...]
    macs: int
    params: int
    activations: int  # elements of every layer's output, per image
    input: int  # elements of the unit's input, per image
    output: int  # elements of the unit's output, per image


def plan_units(g: nx.DiGraph[str]) -> list[Unit]:
    members: dict[str, list[str]] = {}
    for n, d in layers(g):
        if d["op"] != "input":
            members.setdefault(d["unit"], []).append(n)
    costs = by(g, "unit")
    return [
        Unit(
            name=name,
            layers=tuple(nodes),
            macs=costs[name].macs,
            params=costs[name].params,
            activations=costs[name].activations,
            input=math.prod(g.nodes[nodes[0]]["in_shape"]),
            output=math.prod(g.nodes[nodes[-1]]["out_shape"]),
        )
        for name, nodes in members.items()
    ]


@dataclass(frozen=True)
class Costing:
    micro_batch: int
    device: Device
    precision: Precision = Precision()
    recompute: bool = True

    def __post_init__(self) -> None:
        if self.micro_batch < 1:
            raise SpecError(f"must be at least 1, got {self.micro_batch}", parameter="micro_batch")

    def time(self, us: list[Unit]) -> float:
        passes = 3 + self.recompute
        p = self.precision
        compute = 2 * sum(u.macs for u in us) * self.micro_batch / self.device.flops
        moved = (
            sum(u.params for u in us) * p.weight_bytes
            + sum(u.activations for u in us) * self.micro_batch * p.activation_bytes
        )
        return passes * (compute + moved / self.device.bandwidth)

    def memory(self, us: list[Unit], index: int, stages: int) -> int:
        p, m = self.precision, self.micro_batch
        weights = sum(u.params for u in us) * (p.weight_bytes + p.state_bytes)
        in_flight = stages - index
        if self.recompute:
            stashed = us[0].input + sum(u.output for u in us)
            working = max(u.activations for u in us)
        else:
            stashed, working = sum(u.activations for u in us), 0
        return weights + (in_flight * stashed + working) * m * p.activation_bytes


def costing(
    micro_batch: int, memory_mb: float | None = None, memory_fraction: float = 0.5, recompute: bool = True
) -> Costing:
    """How to cost stages: on an IPU with `memory_fraction` of its SRAM usable, or on a device
    with `memory_mb` usable."""
    if not 0 < memory_fraction <= 1:
        raise SpecError(f"must be in (0, 1], got {memory_fraction}", parameter="memory_fraction")
    if memory_mb is not None and not 0 < memory_mb < 1e9:
        raise SpecError(f"must be a positive number of megabytes, got {memory_mb}", parameter="memory_mb")
    device = ipu(memory_fraction) if memory_mb is None else Device(int(memory_mb * 1e6), name="device")
    return Costing(micro_batch, device, recompute=recompute)


@dataclass(frozen=True)
class Stage:
    units: tuple[str, ...]
    layers: tuple[str, ...]
    macs: int
    params: int
    memory_bytes: int
    time_s: float


@dataclass(frozen=True)
class Plan:
    stages: tuple[Stage, ...]
    costing: Costing

    @property
    def bottleneck_s(self) -> float:
        return max(s.time_s for s in self.stages)

    @property
    def imbalance(self) -> float:
        """Largest stage time over the mean: 1.0 is a perfect split."""
        return self.bottleneck_s / (sum(s.time_s for s in self.stages) / len(self.stages))

    @property
    def boundaries(self) -> list[str]:
        """The first unit of every stage but the first: where each new stage begins."""
        return [s.units[0] for s in self.stages[1:]]

    def as_dict(self) -> dict[str, Any]:
        total = sum(s.time_s for s in self.stages)
        c = self.costing
        return {
            "stages": [
                {
                    "layers": list(s.layers),
                    "units": list(s.units),
                    "first_layer": s.layers[0],
                    "last_layer": s.layers[-1],
                    "macs": s.macs,
                    "params": s.params,
                    "memory_bytes": s.memory_bytes,
                    "time_s": s.time_s,
                    "time_share": s.time_s / total,
                }
                for s in self.stages
            ],
            "boundaries": self.boundaries,
            "imbalance": self.imbalance,
            "micro_batch": c.micro_batch,
            "recompute": c.recompute,
            "memory_budget_bytes": c.device.memory_bytes,
            "device": {"name": c.device.name, "flops": c.device.flops, "bandwidth": c.device.bandwidth},
        }


def _split(us: list[Unit], cuts: list[int]) -> list[list[Unit]]:
    edges = [0, *cuts, len(us)]
    return [us[a:b] for a, b in itertools.pairwise(edges)]


def _stage(us: list[Unit], index: int, stages: int, costing: Costing) -> Stage:
    return Stage(
        units=tuple(u.name for u in us),
        layers=tuple(n for u in us for n in u.layers),
        macs=sum(u.macs for u in us),
        params=sum(u.params for u in us),
        memory_bytes=costing.memory(us, index, stages),
        time_s=costing.time(us),
    )


def optimal_cuts(us: list[Unit], stages: int, costing: Costing) -> list[int] | None:
    """Cut points minimizing the largest stage time with every stage fitting; None if none fits.

    best(k, j): the least possible bottleneck of units[:j] split into k stages; a stage's memory
    depends on its index (micro-batches in flight), which the recursion knows.
    """
    n = len(us)
    budget = costing.device.memory_bytes

    @cache
    def best(k: int, j: int) -> tuple[float, tuple[int, ...]] | None:
        if k == 1:
            if costing.memory(us[:j], 0, stages) > budget:
                return None
            return costing.time(us[:j]), ()
        found: tuple[float, tuple[int, ...]] | None = None
        for i in range(k - 1, j):  # the last stage is units[i:j]; k-1 stages hold units[:i]
            if costing.memory(us[i:j], k - 1, stages) > budget:
                continue
            head = best(k - 1, i)
            if head is None:
                continue
            value = max(head[0], costing.time(us[i:j]))
            if found is None or value < found[0]:
                found = (value, (*head[1], i))
        return found

    result = best(stages, n)
    return None if result is None else list(result[1])


def plan_pipeline(g: nx.DiGraph[str], stages: int, costing: Costing) -> Plan:
    """The optimal plan, or a SpecError saying what would fit."""
    us = plan_units(g)
    if not 1 <= stages <= len(us):
        raise SpecError(
            f"must be from 1 to {len(us)} (the network has {len(us)} blocks to place), got {stages}", parameter="stages"
        )
    cuts = optimal_cuts(us, stages, costing)
    if cuts is None:
        raise SpecError(_nothing_fits(us, stages, costing), parameter="memory_mb")
    return _plan(us, cuts, costing)


def plan_at(g: nx.DiGraph[str], boundaries: list[str], costing: Costing) -> Plan:
    """The plan whose stages begin at the given units (e.g. a hand-written split), costed the same
    way, whether or not it fits."""
    us = plan_units(g)
    names = [u.name for u in us]
    unknown = [b for b in boundaries if b not in names]
    if unknown:
        raise SpecError(
            f"{', '.join(unknown)} is not a block of this network (blocks are stem, blocks.S.B, head)", parameter="at"
        )
    cuts = sorted(names.index(b) for b in boundaries)
    if len(set(cuts)) != len(cuts) or 0 in cuts:
        raise SpecError("stage boundaries must be distinct blocks after the stem", parameter="at")
    return _plan(us, cuts, costing)


def _plan(us: list[Unit], cuts: list[int], costing: Costing) -> Plan:
    parts = _split(us, cuts)
    return Plan(tuple(_stage(part, i, len(parts), costing) for i, part in enumerate(parts)), costing)


def _nothing_fits(us: list[Unit], stages: int, costing: Costing) -> str:
    budget_mb = costing.device.memory_bytes / 1e6
    hints = []
    more = next((k for k in range(stages + 1, min(len(us), stages + 16) + 1) if optimal_cuts(us, k, costing)), None)
    if more:
        hints.append(f"{more} stages")
    m = costing.micro_batch // 2
    while m >= 1:
        smaller = Costing(m, costing.device, costing.precision, costing.recompute)
        if optimal_cuts(us, stages, smaller) is not None:
            hints.append(f"micro-batch {m}")
            break
        m //= 2
    if not costing.recompute:
        with_recompute = Costing(costing.micro_batch, costing.device, costing.precision, True)
        if optimal_cuts(us, stages, with_recompute) is not None:
            hints.append("recomputation")
    weights = max(u.params for u in us) * (costing.precision.weight_bytes + costing.precision.state_bytes) / 1e6
    what = (
        f"it fits with {' or '.join(hints)}"
        if hints
        else f"nothing does: the largest block's weights and optimizer state alone take {weights:.0f} MB"
    )
    return (
        f"no split into {stages} stages fits {budget_mb:.0f} MB per {costing.device.name} at micro-batch "
        f"{costing.micro_batch}; {what}"
    )
