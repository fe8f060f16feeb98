"""MBConv (Sandler et al., 2018; EfficientNet): [1x1 expand] -> k x k grouped conv -> [SE] ->
1x1 project (+ skip). With expansion 1 the expansion conv is dropped (timm's DepthwiseSeparable)."""

from __future__ import annotations

from . import Block, BlockKind, Lowering


def lower(low: Lowering, b: Block) -> None:
    unit, stage = b.name, b.stage
    block_input = low.last
    if b.expand:
        low.conv(f"{unit}.conv_pw", b.mid_channels, 1, 1, 1, "expand", unit, stage)
        low.norm_act(f"{unit}.bn1", unit, stage, act=True)
    low.conv(f"{unit}.conv_dw", b.mid_channels, b.kernel, b.stride, b.groups, "spatial", unit, stage)
    low.norm_act(f"{unit}.bn2" if b.expand else f"{unit}.bn1", unit, stage, act=True)
    low.se(b)
    low.conv(f"{unit}.conv_pwl" if b.expand else f"{unit}.conv_pw", b.out_channels, 1, 1, 1, "project", unit, stage)
    low.norm_act(f"{unit}.bn3" if b.expand else f"{unit}.bn2", unit, stage, act=False)
    low.residual(b, block_input)


KIND = BlockKind(
    name="mbconv",
    summary="MBConv (inverted residual); expansion 1 drops the expansion conv",
    lower=lower,
    module=lambda expand: "InvertedResidual" if expand else "DepthwiseSeparable",
    slots=lambda expand: (
        ("conv_pw", "bn1", "conv_dw", "bn2", "se", "conv_pwl", "bn3")
        if expand
        else ("conv_dw", "bn1", "se", "conv_pw", "bn2")
    ),
    grouped_conv=lambda expand: "conv_dw",
    global_group_size=True,
    grouped_channels=lambda cin, mid, cout, expand: (mid, mid),
)
