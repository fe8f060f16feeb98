"""Fused MBConv (EfficientNetV2, Tan & Le, 2021): one k x k conv expands (in -> mid, grouped by
the group size over its input channels) -> [SE] -> 1x1 project (+ skip); timm's EdgeResidual. With
expansion 1 it is a single k x k conv and its norm (+ skip): timm's ConvBnAct."""

from __future__ import annotations

from . import Block, BlockKind, Lowering


def lower(low: Lowering, b: Block) -> None:
    unit, stage = b.name, b.stage
    block_input = low.last
    if not b.expand:
        low.conv(f"{unit}.conv", b.out_channels, b.kernel, b.stride, b.groups, "spatial", unit, stage)
        low.norm_act(f"{unit}.bn1", unit, stage, act=True)
        low.residual(b, block_input)
        return
    low.conv(f"{unit}.conv_exp", b.mid_channels, b.kernel, b.stride, b.groups, "spatial", unit, stage)
    low.norm_act(f"{unit}.bn1", unit, stage, act=True)
    low.se(b)
    low.conv(f"{unit}.conv_pwl", b.out_channels, 1, 1, 1, "project", unit, stage)
    low.norm_act(f"{unit}.bn2", unit, stage, act=False)
    low.residual(b, block_input)


KIND = BlockKind(
    name="fused_mbconv",
    summary="fused MBConv (EfficientNetV2): a k x k expansion conv, then a 1x1 projection",
    lower=lower,
    module=lambda expand: "EdgeResidual" if expand else "ConvBnAct",
    slots=lambda expand: ("conv_exp", "bn1", "se", "conv_pwl", "bn2") if expand else ("conv", "bn1"),
    grouped_conv=lambda expand: "conv_exp" if expand else "conv",
    # its conv is dense, as in EfficientNetV2: the global group size replaces depthwise convs
    global_group_size=False,
    grouped_channels=lambda cin, mid, cout, expand: (cin, mid if expand else cout),
)
