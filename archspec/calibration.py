"""Networks drawn at random from the space archspec is for: a profile's calibration set, and the
held-out networks its predictions are checked on (benchmarks/speed_predictor.py), from other seeds.

Specs span group sizes 1-64, expansion ratios 2-6, every norm, resolutions 64-380 px and width and
depth multipliers; norms and group sizes come in turn, so that a handful of draws holds each. A
profile's own set takes its norms from the registry (plug-ins' included), so that every norm a spec
can name has layers in the profile.
"""

from __future__ import annotations

import random
from typing import Any

from . import norms as norm_registry
from .cost import totals
from .graph import build_graph
from .resolve import resolve
from .spec import load_spec

NORMS = ("bn", "gn", "ln", "gn+pn", "ln+pn")
GROUP_SIZES = (1, 2, 4, 8, 16, 32, 64)
EXPANSIONS = (2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5, 6)
WIDTHS = (0.5, 0.75, 1.0, 1.1, 1.2, 1.4)
DEPTHS = (0.5, 0.75, 1.0, 1.2, 1.4)
RESOLUTION_RANGE = (64, 380)

# `archspec profile`'s own calibration networks: a seed no held-out set uses, and a size that keeps
# the profile's default under five minutes on two cores
DEFAULT_SEED = 1000
DEFAULT_COUNT = 20
DEFAULT_MAX_GMACS = 0.6


def sample_specs(n: int, seed: int, max_gmacs: float, norms: tuple[str, ...] = NORMS) -> list[dict[str, Any]]:
    """`n` specs as plain data; the first two sit at the ends of the resolution range. A draw of
    more than `max_gmacs` per image is drawn again (it would take minutes to time on a CPU)."""
    rng = random.Random(seed)
    specs: list[dict[str, Any]] = []
    while len(specs) < n:
        i = len(specs)
        resolution = RESOLUTION_RANGE[i] if i < 2 else rng.randint(*RESOLUTION_RANGE)
        spec = {
            "name": f"s{seed}-{i}",
            "base": "efficientnet-b0",
            "width_multiplier": rng.choice(WIDTHS),
            "depth_multiplier": rng.choice(DEPTHS),
            "group_size": GROUP_SIZES[i % len(GROUP_SIZES)],
            "expansion_ratio": rng.choice(EXPANSIONS),
            "group_rounding": rng.choice(("size", "count")),
            "mid_channel_rounding": rng.choice(("divisor", "group")),
            "norm": {"type": norms[i % len(norms)]},
            "drop_path": rng.choice((0.0, 0.2)),
            "resolution": {"train": resolution},
        }
        if totals(build_graph(resolve(load_spec(spec)))).macs <= max_gmacs * 1e9:
            specs.append(spec)
    return specs


def default_specs() -> list[dict[str, Any]]:
    return sample_specs(DEFAULT_COUNT, DEFAULT_SEED, DEFAULT_MAX_GMACS, norm_registry.spec_types())
