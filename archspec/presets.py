"""EfficientNet B0-B7 as base specs.

The B0 stage table and the compound-scaling coefficients are those of the reference
implementation (Tan & Le, 2019; tensorflow/tpu `efficientnet_builder.py`); native and half
training resolutions are Table 1 of the paper (half is given for B0-B5 only; for B6/B7 the
resolution planner derives it).
"""

from __future__ import annotations

from typing import Any

# block, repeats, kernel, stride, expansion, channels, se_ratio
B0_STAGES: tuple[tuple[str, int, int, int, float, int, float], ...] = (
    ("mbconv", 1, 3, 1, 1, 16, 0.25),
    ("mbconv", 2, 3, 2, 6, 24, 0.25),
    ("mbconv", 2, 5, 2, 6, 40, 0.25),
    ("mbconv", 3, 3, 2, 6, 80, 0.25),
    ("mbconv", 3, 5, 1, 6, 112, 0.25),
    ("mbconv", 4, 5, 2, 6, 192, 0.25),
    ("mbconv", 1, 3, 1, 6, 320, 0.25),
)

# name: (width multiplier, depth multiplier, native resolution, head dropout, half resolution)
SCALING: dict[str, tuple[float, float, int, float, int | None]] = {
    "efficientnet-b0": (1.0, 1.0, 224, 0.2, 160),
    "efficientnet-b1": (1.0, 1.1, 240, 0.2, 176),
    "efficientnet-b2": (1.1, 1.2, 260, 0.3, 192),
    "efficientnet-b3": (1.2, 1.4, 300, 0.3, 204),
    "efficientnet-b4": (1.4, 1.8, 380, 0.4, 252),
    "efficientnet-b5": (1.6, 2.2, 456, 0.4, 328),
    "efficientnet-b6": (1.8, 2.6, 528, 0.5, None),
    "efficientnet-b7": (2.0, 3.1, 600, 0.5, None),
}

PRESET_NAMES = tuple(SCALING)


def preset(name: str) -> dict[str, Any]:
    """The preset as a spec mapping (a fresh copy; callers may merge into it)."""
    width, depth, native, dropout, half = SCALING[name]
    resolution: dict[str, Any] = {"native": native, "train": "native", "test": [native]}
    if half is not None:
        resolution["half"] = half
    return {
        "name": name,
        "width_multiplier": width,
        "depth_multiplier": depth,
        "channel_divisor": 8,
        "stem": {"channels": 32, "kernel": 3, "stride": 2},
        "stages": [
            {"block": b, "repeats": r, "kernel": k, "stride": s, "expansion": e, "channels": c, "se_ratio": se}
            for b, r, k, s, e, c, se in B0_STAGES
        ],
        "head": {"channels": 1280, "dropout": dropout},
        "group_size": 1,
        "norm": {"type": "bn", "eps": 1e-3, "momentum": 0.01},
        "activation": "silu",
        "drop_path": 0.2,
        "resolution": resolution,
        "num_classes": 1000,
    }
