"""Design sweeps: costs of a spec across group sizes and expansion ratios (paper Table 2)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import product
from typing import Any, Optional

from . import cost
from .errors import SpecError
from .graph import build_graph
from .limits import MAX_EXPANSION, MAX_GROUP_SIZE, MAX_SWEEP_WORK, MIN_EXPANSION
from .match import with_expansion
from .paper import TABLE_2
from .presets import PRESET_NAMES, preset
from .resolve import ResolvedSpec, expanded_channels, resolve
from .spec import ModelSpec, load_spec


@dataclass(frozen=True)
class SweepRow:
    group_size: int
    expansion_ratio: float
    params: int
    macs: int
    activation_bytes: int
    mean_intensity: float  # eq. (7), MAC-weighted over the convs
    rounded_layers: int  # convs whose group size was rounded to a divisor of their channels
    aligned_mid_channels: int  # blocks whose expanded channels mid_channel_rounding: group moved
    paper: Optional[tuple[float, float]] = None  # Table 2's (P millions, F billions), where it applies


@dataclass(frozen=True)
class Sweep:
    name: str
    resolution: int
    batch_size: int
    group_rounding: str
    mid_channel_rounding: str
    overridden: tuple[str, ...]  # the rules set by the caller rather than the spec
    rows: list[SweepRow] = field(default_factory=list)

    def as_dict(self, spec: str) -> dict[str, Any]:
        rules = {"group_rounding": self.group_rounding, "mid_channel_rounding": self.mid_channel_rounding}
        return {
            "spec": spec,
            "resolution": self.resolution,
            "batch_size": self.batch_size,
            "rules": rules,
            "rules_overridden": list(self.overridden),
            "rows": [asdict(r) for r in self.rows],
        }


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


def _aligned(spec: ModelSpec, res: ResolvedSpec) -> int:
    if spec.mid_channel_rounding != "group":
        return 0
    plain = [expanded_channels(b.in_channels, b.expansion, spec.channel_divisor) for b in res.blocks]
    return sum(1 for b, mid in zip(res.blocks, plain) if b.expand and b.mid_channels != mid)


def _table_2_size(spec: ModelSpec, resolution: int) -> Optional[int]:
    """N when `spec` is EfficientNet-BN at its native resolution up to G and E, so that Table 2's
    rows for BN describe the same networks; None otherwise."""
    res = resolve(spec)
    if res.preset is None or resolution != res.resolution.native or res.preset not in PRESET_NAMES[:6]:
        return None

    def shape(r: ResolvedSpec) -> list[tuple[int, ...]]:
        blocks = [(b.in_channels, b.out_channels, b.kernel, b.stride, b.se_channels) for b in r.blocks]
        return [(r.stem.out_channels, r.head_channels, r.num_classes), *blocks]

    reference = resolve(load_spec(preset(res.preset)))
    return PRESET_NAMES.index(res.preset) if shape(res) == shape(reference) else None


def sweep(spec: ModelSpec, configs: list[tuple[int, float]], resolution: int, batch_size: int = 1) -> list[SweepRow]:
    size = _table_2_size(spec, resolution)
    rows = []
    for g, e in configs:
        variant = with_expansion(spec, e).model_copy(update={"group_size": g})
        res = resolve(variant)
        graph = build_graph(res, resolution)
        total = cost.totals(graph)
        rounded = sum(1 for r in res.roundings if r.what.startswith("group size"))
        paper = TABLE_2.get((size, g, int(e))) if size is not None and e == int(e) else None
        rows.append(
            SweepRow(
                g,
                e,
                total.params,
                total.macs,
                total.activation_bytes(batch_size),
                cost.mean_intensity(graph, batch_size),
                rounded,
                _aligned(variant, res),
                paper,
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
    mid_channel_rounding: Optional[str] = None,
    resolution: str | int | None = None,
    batch_size: int = 1,
) -> Sweep:
    """`archspec sweep`: the rows for every (G, E) asked for, under the spec's rounding rules or the
    ones given here."""
    configs = configurations(group_sizes, expansions, grid)
    given = {"group_rounding": group_rounding, "mid_channel_rounding": mid_channel_rounding}
    overridden = {k: v for k, v in given.items() if v is not None}
    spec = spec.model_copy(update=overridden)
    res = resolve(spec)
    if len(configs) * len(res.blocks) > MAX_SWEEP_WORK:  # each row lowers the whole network
        raise SpecError(
            f"{len(configs)} rows of {len(res.blocks)} blocks each are more than one sweep costs "
            f"({MAX_SWEEP_WORK:,} blocks in all): give fewer group sizes or expansion ratios"
            + (", or pair them instead of the grid" if grid else ""),
            parameter="grid" if grid else "group_sizes",
        )
    pixels = res.resolution.pick(resolution)
    rows = sweep(spec, configs, pixels, batch_size)
    return Sweep(spec.name, pixels, batch_size, spec.group_rounding, spec.mid_channel_rounding, tuple(overridden), rows)
