"""Pipeline planning: split the IR's block sequence into K contiguous stages, one per device.

The plan minimizes the largest stage's time estimate subject to every stage fitting its device's
memory, optimally, by dynamic programming over block boundaries (units: the stem, each block,
the head). Costs of a run of units come from prefix sums, and the DP's best split point is found
by a forward-moving search where time and memory are monotone (they are for the IR's chain of
units), so that a 1,024-block network plans in about a second.

What a stage costs, per micro-batch of M images, under pipelined training as the paper ran it
(each forward stage recomputed before its backward pass, fp16 arithmetic, fp32 optimizer state):

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import networkx as nx

from .cost import by
from .errors import SpecError
from .graph import layers
from .limits import MAX_STAGES

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
        return self.time_of(sum(u.macs for u in us), sum(u.params for u in us), sum(u.activations for u in us))

    def time_of(self, macs: int, params: int, activations: int) -> float:
        """The time of a stage whose units sum to these counts (the one formula: the plan's DP
        computes exactly the floats that `time` does)."""
        passes = 3 + self.recompute
        p = self.precision
        compute = 2 * macs * self.micro_batch / self.device.flops
        moved = params * p.weight_bytes + activations * self.micro_batch * p.activation_bytes
        return passes * (compute + moved / self.device.bandwidth)

    def memory(self, us: list[Unit], index: int, stages: int) -> int:
        if self.recompute:
            stashed = us[0].input + sum(u.output for u in us)
            working = max(u.activations for u in us)
        else:
            stashed, working = sum(u.activations for u in us), 0
        return self.memory_of(sum(u.params for u in us), stashed, working, stages - index)

    def memory_of(self, params: int, stashed: int, working: int, in_flight: int) -> int:
        p, m = self.precision, self.micro_batch
        return params * (p.weight_bytes + p.state_bytes) + (in_flight * stashed + working) * m * p.activation_bytes


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
class PipelinePlan:
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


class _Runs:
    """Time and memory of any run of units us[i:j] in O(1): prefix sums, and a sparse table for
    the largest activations."""

    def __init__(self, us: list[Unit], costing: Costing) -> None:
        self.n, self.costing = len(us), costing
        self.macs = [0, *itertools.accumulate(u.macs for u in us)]
        self.params = [0, *itertools.accumulate(u.params for u in us)]
        self.acts = [0, *itertools.accumulate(u.activations for u in us)]
        self.outs = [0, *itertools.accumulate(u.output for u in us)]
        self.inputs = [u.input for u in us]
        self.peak = [[u.activations for u in us]]  # peak[p][i]: max over us[i : i + 2**p]
        while 2 ** len(self.peak) <= self.n:
            row, half = self.peak[-1], 2 ** (len(self.peak) - 1)
            self.peak.append([max(row[i], row[i + half]) for i in range(len(row) - half)])
        # time and memory shrink when a run loses a unit at either end, so the DP may search for its
        # splits; for memory that needs a unit's input to be no more than what the previous unit
        # held (in the IR each unit's input is the previous unit's output)
        self.monotone = not costing.recompute or all(b.input <= a.input + a.output for a, b in itertools.pairwise(us))

    def time(self, i: int, j: int) -> float:
        return self.costing.time_of(
            self.macs[j] - self.macs[i], self.params[j] - self.params[i], self.acts[j] - self.acts[i]
        )

    def memory(self, i: int, j: int, in_flight: int) -> int:
        params = self.params[j] - self.params[i]
        if not self.costing.recompute:
            return self.costing.memory_of(params, self.acts[j] - self.acts[i], 0, in_flight)
        p = (j - i).bit_length() - 1
        working = max(self.peak[p][i], self.peak[p][j - 2**p])
        return self.costing.memory_of(params, self.inputs[i] + self.outs[j] - self.outs[i], working, in_flight)


def _first(lo: int, hi: int, holds: Callable[[int], bool]) -> int:
    """The least i in [lo, hi) for which `holds` (false, then true) is true; hi if none."""
    while lo < hi:
        mid = (lo + hi) // 2
        if holds(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _searched_level(r: _Runs, prev: list[float], k: int, stages: int, budget: int) -> tuple[list[float], list[int]]:
    """best(k, j) for every j from best(k-1, .), by search (r.monotone): best(k-1, i) does not
    decrease with i, the last stage's time does not increase with i and it fits from some i on, so
    the least max(best(k-1, i), time(i, j)) sits where the two cross, and the least i reaching it
    is found by bisection. Returns the values and, for each j, that i."""
    n, in_flight = r.n, stages - (k - 1)
    best, start = [math.inf] * (n + 1), [-1] * (n + 1)
    lo = cross = k - 1
    for j in [n] if k == stages else range(k, n - (stages - k) + 1):
        # both pointers only move forward as j grows: the stage fits from lo on, and
        # best(k-1, i) >= time(i, j) from cross on
        while lo < j and r.memory(lo, j, in_flight) > budget:
            lo += 1
        cross = max(cross, lo)
        while cross < j and prev[cross] < r.time(cross, j):
            cross += 1
        if lo == j:
            continue
        value = min(max(prev[i], r.time(i, j)) for i in (cross - 1, cross) if lo <= i < j)
        if value == math.inf:
            continue
        best[j] = value
        start[j] = _first(lo, j, lambda i: r.time(i, j) <= value)  # noqa: B023 - used right here
    return best, start


def _direct_level(r: _Runs, prev: list[float], k: int, stages: int, budget: int) -> tuple[list[float], list[int]]:
    """best(k, j) for every j, trying every split (for units whose costs are not monotone)."""
    n, in_flight = r.n, stages - (k - 1)
    best, start = [math.inf] * (n + 1), [-1] * (n + 1)
    for j in [n] if k == stages else range(k, n - (stages - k) + 1):
        for i in range(k - 1, j):
            if prev[i] < best[j] and r.memory(i, j, in_flight) <= budget:
                value = max(prev[i], r.time(i, j))
                if value < best[j]:
                    best[j], start[j] = value, i
    return best, start


def optimal_cuts(us: list[Unit], stages: int, costing: Costing) -> list[int] | None:
    """Cut points minimizing the largest stage time with every stage fitting; None if none fits.

    best(k, j): the least possible bottleneck of units[:j] split into k stages; a stage's memory
    depends on its index (micro-batches in flight), which the recursion knows. Of equally good
    splits the one whose last stage starts earliest is taken, level by level.
    """
    r, budget = _Runs(us, costing), costing.device.memory_bytes
    n = r.n
    if not 1 <= stages <= n:
        return None
    best = [math.inf] * (n + 1)
    for j in range(1, n - stages + 2):
        if r.memory(0, j, stages) <= budget:
            best[j] = r.time(0, j)
    level = _searched_level if r.monotone else _direct_level
    starts = []
    for k in range(2, stages + 1):
        best, start = level(r, best, k, stages, budget)
        starts.append(start)
    if best[n] == math.inf:
        return None
    cuts, j = [], n
    for start in reversed(starts):
        j = start[j]
        cuts.append(j)
    return cuts[::-1]


def fits(us: list[Unit], stages: int, costing: Costing) -> bool:
    """Whether some split into `stages` stages fits memory, without finding the best one.

    Where memory is monotone, the prefixes that k stages can hold are units[:j] for j up to some
    reach R_k (fewer units never hurt: a stage can always be cut further, later stages holding
    fewer micro-batches), and R_k is how far the last stage reaches from the latest start, at most
    R_{k-1}, from which one unit alone fits.
    """
    r, budget = _Runs(us, costing), costing.device.memory_bytes
    n = r.n
    if not 1 <= stages <= n:
        return False
    if not r.monotone:
        return optimal_cuts(us, stages, costing) is not None
    reach = 0
    for k in range(1, stages + 1):
        in_flight = stages - (k - 1)
        i = reach
        while i >= k - 1 and r.memory(i, i + 1, in_flight) > budget:
            i -= 1
        if i < k - 1:
            return False
        end = _first(i + 1, n + 1, lambda j: r.memory(i, j, in_flight) > budget)  # noqa: B023 - used right here
        reach = min(end - 1, n - (stages - k))
    return reach == n


def plan_pipeline(g: nx.DiGraph[str], stages: int, costing: Costing) -> PipelinePlan:
    """The optimal plan, or a SpecError saying what would fit."""
    us = plan_units(g)
    if not 1 <= stages <= min(len(us), MAX_STAGES):
        why = f"the network has {len(us)} blocks to place" if len(us) <= MAX_STAGES else "pipeline stages"
        raise SpecError(f"must be from 1 to {min(len(us), MAX_STAGES)} ({why}), got {stages}", parameter="stages")
    cuts = optimal_cuts(us, stages, costing)
    if cuts is None:
        raise SpecError(_nothing_fits(us, stages, costing), parameter="memory_mb")
    return _plan(us, cuts, costing)


def plan_at(g: nx.DiGraph[str], boundaries: list[str], costing: Costing) -> PipelinePlan:
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


def _plan(us: list[Unit], cuts: list[int], costing: Costing) -> PipelinePlan:
    parts = _split(us, cuts)
    return PipelinePlan(tuple(_stage(part, i, len(parts), costing) for i, part in enumerate(parts)), costing)


def _nothing_fits(us: list[Unit], stages: int, costing: Costing) -> str:
    budget_mb = costing.device.memory_bytes / 1e6
    hints = []
    more = next((k for k in range(stages + 1, min(len(us), stages + 16, MAX_STAGES) + 1) if fits(us, k, costing)), None)
    if more:
        hints.append(f"{more} stages")
    m = costing.micro_batch // 2
    while m >= 1:
        smaller = Costing(m, costing.device, costing.precision, costing.recompute)
        if fits(us, stages, smaller):
            hints.append(f"micro-batch {m}")
            break
        m //= 2
    if not costing.recompute:
        with_recompute = Costing(costing.micro_batch, costing.device, costing.precision, True)
        if fits(us, stages, with_recompute):
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
