"""EfficientNet B0-B7 and EfficientNetV2-S/M/L as base specs.

The B0 stage table and the compound-scaling coefficients are those of the reference
implementation (Tan & Le, 2019; tensorflow/tpu `efficientnet_builder.py`); native and half
training resolutions are Table 1 of the paper (half is given for B0-B5 only; for B6/B7 the
resolution planner derives it). The V2 stage tables are timm's `tf_efficientnetv2_s/m/l`
(`_gen_efficientnetv2_s/m/l`, after google/automl's efficientnetv2), with timm's train and test
resolutions for them.
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

Stages = tuple[tuple[str, int, int, int, float, int, float], ...]

# timm's cn / er / ir blocks: fused MBConv with expansion 1 (ConvBnAct), fused MBConv
# (EdgeResidual), MBConv (InvertedResidual)
V2_S_STAGES: Stages = (
    ("fused_mbconv", 2, 3, 1, 1, 24, 0),
    ("fused_mbconv", 4, 3, 2, 4, 48, 0),
    ("fused_mbconv", 4, 3, 2, 4, 64, 0),
    ("mbconv", 6, 3, 2, 4, 128, 0.25),
    ("mbconv", 9, 3, 1, 6, 160, 0.25),
    ("mbconv", 15, 3, 2, 6, 256, 0.25),
)
V2_M_STAGES: Stages = (
    ("fused_mbconv", 3, 3, 1, 1, 24, 0),
    ("fused_mbconv", 5, 3, 2, 4, 48, 0),
    ("fused_mbconv", 5, 3, 2, 4, 80, 0),
    ("mbconv", 7, 3, 2, 4, 160, 0.25),
    ("mbconv", 14, 3, 1, 6, 176, 0.25),
    ("mbconv", 18, 3, 2, 6, 304, 0.25),
    ("mbconv", 5, 3, 1, 6, 512, 0.25),
)
V2_L_STAGES: Stages = (
    ("fused_mbconv", 4, 3, 1, 1, 32, 0),
    ("fused_mbconv", 7, 3, 2, 4, 64, 0),
    ("fused_mbconv", 7, 3, 2, 4, 96, 0),
    ("mbconv", 10, 3, 2, 4, 192, 0.25),
    ("mbconv", 19, 3, 1, 6, 224, 0.25),
    ("mbconv", 25, 3, 2, 6, 384, 0.25),
    ("mbconv", 7, 3, 1, 6, 640, 0.25),
)

# name: (stem channels, stages, train resolution, test resolution, head dropout)
V2: dict[str, tuple[int, Stages, int, int, float]] = {
    "efficientnetv2-s": (24, V2_S_STAGES, 300, 384, 0.2),
    "efficientnetv2-m": (24, V2_M_STAGES, 384, 480, 0.3),
    "efficientnetv2-l": (32, V2_L_STAGES, 384, 480, 0.4),
}

PRESET_NAMES = tuple(SCALING) + tuple(V2)


def preset(name: str) -> dict[str, Any]:
    """The preset as a spec mapping (a fresh copy; callers may merge into it)."""
    if name in V2:
        stem, stages, train, test, dropout = V2[name]
        return _preset(name, 1.0, 1.0, stem, stages, dropout, {"native": train, "train": "native", "test": [test]})
    width, depth, native, dropout, half = SCALING[name]
    resolution: dict[str, Any] = {"native": native, "train": "native", "test": [native]}
    if half is not None:
        resolution["half"] = half
    return _preset(name, width, depth, 32, B0_STAGES, dropout, resolution)


def _preset(
    name: str, width: float, depth: float, stem: int, stages: Stages, dropout: float, resolution: dict[str, Any]
) -> dict[str, Any]:
    return {
        "name": name,
        "width_multiplier": width,
        "depth_multiplier": depth,
        "channel_divisor": 8,
        "stem": {"channels": stem, "kernel": 3, "stride": 2},
        "stages": [
            {"block": b, "repeats": r, "kernel": k, "stride": s, "expansion": e, "channels": c, "se_ratio": se}
            for b, r, k, s, e, c, se in stages
        ],
        "head": {"channels": 1280, "dropout": dropout},
        "group_size": 1,
        "norm": {"type": "bn", "eps": 1e-3, "momentum": 0.01},
        "activation": "silu",
        "drop_path": 0.2,
        "resolution": resolution,
        "num_classes": 1000,
    }
