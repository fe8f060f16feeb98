"""Design sweeps: costs of a spec across group sizes and expansion ratios (paper Table 2)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import product
from typing import Any, Optional

from . import cost
from .errors import SpecError
from .graph import Resolution, build_graph
from .limits import MAX_EXPANSION, MAX_GROUP_SIZE, MIN_EXPANSION
from .match import with_expansion
from .resolve import resolve
from .spec import ModelSpec


@dataclass(frozen=True)
class SweepRow:
    group_size: int
    expansion_ratio: float
    params: int
    macs: int
    activation_bytes: int
    mean_intensity: float
    rounded_layers: int
    intensities: tuple[float, ...]  # per conv layer, in forward order (for the plot)


def configurations(group_sizes: list[int], expansions: list[float], grid: bool) -> list[tuple[int, float]]:
    if any(not 1 <= g <= MAX_GROUP_SIZE for g in group_sizes):
        raise SpecError(f"each must be from 1 to {MAX_GROUP_SIZE}, got {group_sizes}", parameter="group_sizes")
    if any(not MIN_EXPANSION <= e <= MAX_EXPANSION for e in expansions):
        raise SpecError(
            f"each must be from {MIN_EXPANSION:g} to {MAX_EXPANSION:g}, got {expansions}", parameter="expansions"
        )
    if grid:
        return list(product(group_sizes, expansions))
    if len(group_sizes) != len(expansions):
        raise SpecError(
            f"{len(group_sizes)} group sizes and {len(expansions)} expansion ratios do not pair one to "
            "one (Table 2 style): give as many of each, or ask for the grid of every combination",
            parameter="grid",
        )
    return list(zip(group_sizes, expansions))


def sweep(
    spec: ModelSpec, configs: list[tuple[int, float]], resolution: Resolution | None = None, batch_size: int = 1
) -> list[SweepRow]:
    rows = []
    for g, e in configs:
        variant = with_expansion(spec, e).model_copy(update={"group_size": g})
        res = resolve(variant)
        graph = build_graph(res, resolution)
        total = cost.totals(graph)
        rows.append(
            SweepRow(
                group_size=g,
                expansion_ratio=e,
                params=total.params,
                macs=total.macs,
                activation_bytes=total.activation_bytes(batch_size),
                mean_intensity=cost.mean_intensity(graph, batch_size),
                rounded_layers=sum(1 for r in res.roundings if r.what.startswith("group size")),
                intensities=tuple(cost.conv_intensities(graph, batch_size).values()),
            )
        )
    return rows


def sweep_report(
    spec: ModelSpec,
    group_sizes: list[int],
    expansions: list[float],
    *,
    grid: bool = False,
    group_rounding: Optional[str] = None,
    resolution: str | int | None = None,
    batch_size: int = 1,
) -> list[SweepRow]:
    """`archspec sweep`: the rows for every (G, E) asked for; `group_rounding` overrides the spec's."""
    configs = configurations(group_sizes, expansions, grid)
    if group_rounding is not None:
        spec = spec.model_copy(update={"group_rounding": group_rounding})
    pixels = resolve(spec).resolution.pick(resolution)
    return sweep(spec, configs, pixels, batch_size)


def sweep_payload(spec: str, rows: list[SweepRow], batch_size: int) -> dict[str, Any]:
    return {
        "spec": spec,
        "batch_size": batch_size,
        "rows": [{k: v for k, v in asdict(r).items() if k != "intensities"} for r in rows],
    }
