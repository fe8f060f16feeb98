"""FLOP matching: the global expansion ratio E that brings a spec's cost closest to a target.

Cost is a step function of E: each block's mid channels round(c_in x E) jump at known points,
and group-size rounding makes the cost non-monotone between them. So instead of bisecting we
enumerate every distinct architecture in [lo, hi] exactly: the jump points of every block's
rounding split the range into intervals of constant architecture, and each is costed once.
Blocks are costed through `lower_block` (the IR's own lowering) and memoized, since most
architectures share most of their blocks.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .atomic import check_writable, write_files
from .cost import Cost, totals
from .errors import SpecError
from .graph import Resolution, build_graph, info, layers, lower_block, node
from .limits import MAX_EXPANSION, MAX_MATCH_WORK, MIN_EXPANSION, check_resolution
from .resolve import BlockLayer, ResolvedSpec, expanded_channels, mid_divisor, resolve
from .spec import ModelSpec, derived_spec_yaml, load_spec

Metric = Literal["macs", "params"]


@dataclass(frozen=True)
class Candidate:
    expansion_ratio: float  # a representative: every E in [low, high] gives this architecture
    low: float
    high: float
    params: int
    macs: int

    def value(self, metric: Metric) -> int:
        return self.params if metric == "params" else self.macs


@dataclass(frozen=True)
class Match:
    chosen: Candidate
    target: int
    metric: Metric
    candidates: tuple[Candidate, ...]  # every distinct architecture in range, by E

    def error(self, c: Candidate) -> float:
        return (c.value(self.metric) - self.target) / self.target

    def nearest(self, n: int) -> list[Candidate]:
        return sorted(self.candidates, key=lambda c: abs(self.error(c)))[:n]

    def shown(self, n: int) -> list[Candidate]:
        """The n candidates nearest the target, by expansion ratio."""
        return sorted(self.nearest(n), key=lambda c: c.expansion_ratio)


def with_expansion(spec: ModelSpec, expansion: float) -> ModelSpec:
    return spec.model_copy(update={"expansion_ratio": expansion})  # keeps the source map (error locations)


class _Coster:
    """Cost of a resolved variant of one spec: fixed stem/head plus memoized per-block costs."""

    def __init__(self, res: ResolvedSpec, resolution: Resolution | None) -> None:
        self.res = res
        g = build_graph(res, resolution)
        self.resolution = info(g)["resolution"]
        self.fixed = totals(g.subgraph(n for n, d in layers(g) if not d["unit"].startswith("blocks.")))
        first: dict[str, str] = {}  # each block's first layer
        for n, d in layers(g):
            first.setdefault(d["unit"], n)
        self.inputs = {b.name: node(g, first[b.name])["in_shape"] for b in res.blocks}
        self.memo: dict[tuple[object, ...], Cost] = {}

    def block(self, b: BlockLayer) -> Cost:
        shape = self.inputs[b.name]
        key = (*b.layers_key, shape)
        if key not in self.memo:
            self.memo[key] = totals(lower_block(self.res, b, shape))
        return self.memo[key]

    def __call__(self, res: ResolvedSpec) -> tuple[int, int]:
        blocks = [self.block(b) for b in res.blocks]
        return self.fixed.params + sum(c.params for c in blocks), self.fixed.macs + sum(c.macs for c in blocks)


def _expandable(spec: ModelSpec, res: ResolvedSpec) -> list[bool]:
    """Which blocks take the global E (stages whose own expansion is 1 keep 1)."""
    return [spec.stages[b.stage].expansion != 1 for b in res.blocks]


def _jump_points(spec: ModelSpec, res: ResolvedSpec, lo: float, hi: float) -> list[float]:
    """Every E in [lo, hi] at which some block's mid channels can change (see round_channels)."""
    points = {lo, hi}
    for c, d in {(b.in_channels, mid_divisor(spec, b.stage)) for b, e in zip(res.blocks, _expandable(spec, res)) if e}:
        # floor((x + d/2) / d) steps at x = m d - d/2; the 90% rule steps at x = r / 0.9
        for m in range(math.floor((lo * c + d / 2) / d), math.ceil((hi * c + d / 2) / d) + 1):
            points.add((m * d - d / 2) / c)
            points.add(m * d / 0.9 / c)
    return sorted(p for p in points if lo <= p <= hi)


def _architectures_bound(spec: ModelSpec, res: ResolvedSpec, lo: float, hi: float, integer: bool) -> int:
    """How many values of E `expansion_candidates` tries (each a possibly new architecture), counted
    from the jump points' arithmetic before any of them is listed."""
    if integer:
        return max(math.floor(hi) - math.ceil(lo) + 1, 0)
    count = 2
    for c, d in {(b.in_channels, mid_divisor(spec, b.stage)) for b, e in zip(res.blocks, _expandable(spec, res)) if e}:
        count += 2 * (math.ceil((hi * c + d / 2) / d) - math.floor((lo * c + d / 2) / d) + 1)
    return 2 * count  # the points and the intervals between them


def _signature(spec: ModelSpec, res: ResolvedSpec, e: float) -> tuple[tuple[int, bool], ...]:
    """What distinguishes architectures of different E: each block's mid channels, and whether
    it has an expansion conv at all (E = 1 drops it)."""
    return tuple(
        (expanded_channels(b.in_channels, e if x else 1, mid_divisor(spec, b.stage)), x and e != 1)
        for b, x in zip(res.blocks, _expandable(spec, res))
    )


def _has_signature(spec: ModelSpec, res: ResolvedSpec, signature: tuple[tuple[int, bool], ...], e: float) -> bool:
    return _signature(spec, res, e) == signature


def _nicest(low: float, high: float, fits: Callable[[float], bool]) -> float | None:
    """The value in [low, high] with the fewest decimals (4.0 rather than 3.9871) that `fits`."""
    for digits in range(0, 7):
        scale = 10.0**digits
        v = math.ceil(low * scale - 1e-9) / scale
        for candidate in (v, v + 1 / scale):
            if candidate <= high + 1e-12 and fits(candidate):
                return candidate
    return None


def expansion_candidates(
    spec: ModelSpec, lo: float = 1.0, hi: float = 8.0, *, integer: bool = False, resolution: Resolution | None = None
) -> list[Candidate]:
    """Every distinct architecture reachable with a global expansion ratio in [lo, hi]."""
    if not MIN_EXPANSION <= lo <= hi <= MAX_EXPANSION:
        raise SpecError(
            f"the range of expansion ratios must lie within [{MIN_EXPANSION:g}, {MAX_EXPANSION:g}], lowest "
            f"first; got [{lo:g}, {hi:g}]",
            parameter="lo",
        )
    # channel counts into and out of blocks do not depend on E: any E serves as reference
    base = resolve(with_expansion(spec, 2.0))
    if not any(_expandable(spec, base)):
        raise SpecError(
            "every stage has expansion 1, so the expansion ratio changes nothing",
            field="stages",
            file=spec.source.root_file,
        )
    tries = _architectures_bound(spec, base, lo, hi, integer)
    if tries * len(base.blocks) > MAX_MATCH_WORK:
        d = spec.channel_divisor
        fine = f" (channel_divisor {d} makes nearly every E its own)" if d < 8 else ""
        raise SpecError(
            f"E in [{lo:g}, {hi:g}] spans up to {tries:,} architectures of {len(base.blocks)} blocks{fine}, more "
            f"than one match costs ({MAX_MATCH_WORK:,} blocks in all): narrow the range of expansion ratios, or "
            "match integer ratios only",
            parameter="lo",
        )
    if integer:
        values = [(float(e), float(e), float(e)) for e in range(math.ceil(lo), math.floor(hi) + 1)]
        if not values:
            raise SpecError(f"no integer expansion ratio in [{lo:g}, {hi:g}]", parameter="integer")
    else:
        # the architecture is constant between consecutive jump points; at a jump point it is
        # one of its neighbours' (or, where two blocks jump at once, possibly a mix: costed too)
        points = _jump_points(spec, base, lo, hi)
        values = [((a + b) / 2, a, b) for a, b in itertools.pairwise(points)] + [(p, p, p) for p in points]
    spans: dict[tuple[tuple[int, bool], ...], list[float]] = {}  # signature -> [low, high, a witness E]
    for e, a, b in values:
        span = spans.setdefault(_signature(spec, base, e), [a, b, e])
        span[0], span[1] = min(span[0], a), max(span[1], b)
    coster = _Coster(base, resolution)
    out = []
    for signature, (low, high, witness) in spans.items():
        nicest = None if integer else _nicest(low, high, functools.partial(_has_signature, spec, base, signature))
        e = witness if nicest is None else nicest
        params, macs = coster(resolve(with_expansion(spec, e)))
        out.append(Candidate(e, low, high, params, macs))
    return sorted(out, key=lambda c: c.expansion_ratio)


def match_expansion(
    spec: ModelSpec,
    target: int,
    metric: Metric = "macs",
    lo: float = 1.0,
    hi: float = 8.0,
    *,
    integer: bool = False,
    resolution: Resolution | None = None,
) -> Match:
    """The candidate whose cost is nearest to `target` (ties: the smaller E)."""
    if target <= 0:
        raise SpecError(f"the target must be a positive number of {metric}, got {target}")
    candidates = expansion_candidates(spec, lo, hi, integer=integer, resolution=resolution)
    values = [c.value(metric) for c in candidates]
    if not min(values) <= target <= max(values):
        raise SpecError(
            f"target {target:,} {metric} is out of reach: E in [{lo:g}, {hi:g}] gives {min(values):,} to "
            f"{max(values):,} {metric}; widen the range",
            file=spec.source.root_file,
        )
    chosen = min(candidates, key=lambda c: (abs(c.value(metric) - target), c.expansion_ratio))
    return Match(chosen, target, metric, tuple(candidates))


def write_matched_spec(path: Path, spec: ModelSpec, match: Match, described: str) -> None:
    """Save `spec` with the matched expansion ratio as a standalone spec file."""
    chosen = match.chosen
    changes = {"name": f"{spec.name}_e{chosen.expansion_ratio:g}"[:80], "expansion_ratio": chosen.expansion_ratio}
    header = (
        f"# Written by `archspec match-flops`: expansion_ratio {chosen.expansion_ratio:g} matches "
        f"{described}\n# ({match.target:,} {match.metric}): {chosen.value(match.metric):,} {match.metric}, "
        f"error {match.error(chosen) * 100:+.3f}%; {chosen.params:,} params, {chosen.macs:,} MACs.\n"
    )
    write_files(path.parent, {path.name: derived_spec_yaml(spec, changes, path, header)}, parameter="write")


def match_flops(
    spec: ModelSpec,
    target: str | int,
    metric: Metric,
    lo: float = 1.0,
    hi: float = 8.0,
    *,
    integer: bool = False,
    resolution: int | None = None,
    show: int = 7,
    shown_as: str = "",
    write: Path | None = None,
) -> tuple[dict[str, Any], Match]:
    """`archspec match-flops`: match `spec` to `target` (a spec, or a count of `metric`), and
    optionally write the matched spec; the report and the match."""
    if resolution is not None:
        check_resolution(resolution)
    if write is not None:
        check_writable(write, "write")
    if isinstance(target, str):
        goal, described = totals(build_graph(resolve(load_spec(target)), resolution)).value(metric), target
    else:
        goal, described = target, f"{target:,} {metric}"
    match = match_expansion(spec, goal, metric, lo, hi, integer=integer, resolution=resolution)
    chosen = match.chosen
    payload: dict[str, Any] = {
        "spec": shown_as,
        "target": goal,
        "target_source": described,
        "metric": metric,
        "expansion_ratio": chosen.expansion_ratio,
        "expansion_interval": [chosen.low, chosen.high],
        "macs": chosen.macs,
        "params": chosen.params,
        "relative_error": match.error(chosen),
        "range": [lo, hi],
        "integer": integer,
        "architectures_searched": len(match.candidates),
        "candidates": [
            {"expansion_ratio": c.expansion_ratio, "params": c.params, "macs": c.macs, "relative_error": match.error(c)}
            for c in match.shown(show)
        ],
    }
    if abs(match.error(chosen)) > CLOSE_ENOUGH:
        payload["closer_with"] = closer_rules(spec, goal, metric, lo, hi, integer=integer, resolution=resolution)
    if write is not None:
        payload["written"] = str(write)
        write_matched_spec(write, spec, match, described)
    return payload, match


CLOSE_ENOUGH = 0.01  # a match further than 1% from its target says how to get closer


def closer_rules(
    spec: ModelSpec, goal: int, metric: Metric, lo: float, hi: float, *, integer: bool, resolution: int | None
) -> dict[str, Any] | None:
    """The rounding rules, one changed at a time, then both, under which some expansion ratio comes
    within 1% of the target: with channel-divisor rounding alone, G16's cost jumps by several
    percent between neighbouring architectures (B0-G16: -2.6%, a proven limit)."""
    other = {
        "mid_channel_rounding": {"divisor": "group", "group": "divisor"}[spec.mid_channel_rounding],
        "group_rounding": {"size": "count", "count": "size"}[spec.group_rounding],
    }
    tries = [
        {"mid_channel_rounding": other["mid_channel_rounding"]},
        {"group_rounding": other["group_rounding"]},
        other,
    ]
    for rules in tries:
        try:
            match = match_expansion(
                spec.model_copy(update=rules), goal, metric, lo, hi, integer=integer, resolution=resolution
            )
        except SpecError:  # out of reach, or too many architectures to cost, under these rules
            continue
        if abs(match.error(match.chosen)) <= CLOSE_ENOUGH:
            return {
                "rules": rules,
                "expansion_ratio": match.chosen.expansion_ratio,
                "relative_error": match.error(match.chosen),
            }
    return None
