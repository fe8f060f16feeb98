"""Design sweeps: costs of a spec across group sizes and expansion ratios (paper Table 2)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

from . import cost
from .errors import SpecError
from .graph import Resolution, build_graph
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
    if grid:
        return list(product(group_sizes, expansions))
    if len(group_sizes) != len(expansions):
        raise SpecError(f"--group-sizes has {len(group_sizes)} values and --expansions {len(expansions)}: pair "
                        "them one to one (Table 2 style) or pass --grid for every combination")
    return list(zip(group_sizes, expansions))


def sweep(spec: ModelSpec, configs: list[tuple[int, float]], resolution: Resolution | None = None,
          batch_size: int = 1) -> list[SweepRow]:
    rows = []
    for g, e in configs:
        variant = with_expansion(spec, e).model_copy(update={"group_size": g})
        res = resolve(variant)
        graph = build_graph(res, resolution)
        total = cost.totals(graph)
        rows.append(SweepRow(
            group_size=g, expansion_ratio=e, params=total.params, macs=total.macs,
            activation_bytes=total.activation_bytes(batch_size),
            mean_intensity=cost.mean_intensity(graph, batch_size),
            rounded_layers=sum(1 for r in res.roundings if r.what.startswith("group size")),
            intensities=tuple(cost.conv_intensities(graph, batch_size).values()),
        ))
    return rows
