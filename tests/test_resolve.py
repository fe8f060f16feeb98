"""Resolution of specs to concrete layers: compound scaling, rounding, group sizes, presets."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import archspec
from archspec.presets import SCALING
from archspec.resolve import grouped_conv_group_size, nearest_group_size, round_channels
from conftest import HALF, NATIVE, SPECS


@st.composite
def specs(draw):
    # the B0-B7 presets, whose blocks are all MBConv (fused MBConv's grouping: test below)
    base = draw(st.sampled_from(tuple(SCALING)))
    spec = {
        "base": base,
        "width_multiplier": draw(st.floats(0.1, 3.0)),
        "depth_multiplier": draw(st.floats(0.05, 3.0)),
        "channel_divisor": draw(st.sampled_from([1, 2, 3, 4, 6, 8, 12, 16, 32])),
        "group_size": draw(st.integers(1, 64)),
        "group_rounding": draw(st.sampled_from(["size", "count"])),
    }
    if draw(st.booleans()):
        spec["expansion_ratio"] = draw(st.floats(1.0, 8.0))
    if draw(st.booleans()):
        stages = archspec.load_spec(base).model_dump()["stages"]
        i = draw(st.integers(0, len(stages) - 1))
        stages[i]["group_size"] = draw(st.integers(1, 96))
        spec["stages"] = stages
    return spec


def _normalized_channel_counts(res):
    counts = {"stem": res.stem.out_channels}
    for b in res.blocks:
        counts[f"{b.name}.out"] = b.out_channels
        if b.expand:
            counts[f"{b.name}.mid"] = b.mid_channels
    if res.head_channels:
        counts["head"] = res.head_channels
    return counts


@settings(max_examples=150, deadline=None)
@given(specs())
def test_resolved_channels_are_multiples_of_the_divisor(raw):
    res = archspec.resolve(archspec.load_spec(raw))
    for where, channels in _normalized_channel_counts(res).items():
        assert channels % raw["channel_divisor"] == 0, where


@settings(max_examples=150, deadline=None)
@given(specs())
def test_group_sizes_divide_channels_and_are_nearest(raw):
    res = archspec.resolve(archspec.load_spec(raw))
    for b in res.blocks:
        c, asked, used = b.mid_channels, b.requested_group_size, b.group_size
        assert c % used == 0
        # brute force over every divisor: none is strictly nearer, and ties went to the larger group size
        if asked >= c:
            assert used == c
        elif raw["group_rounding"] == "size":
            for d in range(1, c + 1):
                if c % d == 0:
                    assert abs(d - asked) > abs(used - asked) or (abs(d - asked) == abs(used - asked) and d <= used)
        else:  # the number of groups is rounded: c / used is the divisor nearest to c / asked
            groups, wanted = c // used, c / asked
            for k in range(1, c + 1):
                if c % k == 0:
                    assert abs(k - wanted) > abs(groups - wanted) or (
                        abs(k - wanted) == abs(groups - wanted) and k >= groups
                    )
        if used != asked:
            assert any(r.where == f"{b.name}.conv_dw" and r.used == used for r in res.roundings)


@settings(max_examples=150, deadline=None)
@given(specs())
def test_depth_scaling_never_drops_a_stage(raw):
    spec = archspec.load_spec(raw)
    res = archspec.resolve(spec)
    per_stage = [sum(1 for b in res.blocks if b.stage == s) for s in range(len(spec.stages))]
    for stage, n in zip(spec.stages, per_stage):
        assert n >= 1
        assert n == math.ceil(stage.repeats * raw["depth_multiplier"])
    # only the first block of a stage strides
    assert all(b.stride == 1 for b in res.blocks if b.index > 0)


def test_round_channels_matches_timm_make_divisible():
    from timm import layers as timm_layers  # the independent reference (dev extra)

    for divisor in (1, 2, 4, 8, 16):
        for tenths in range(1, 4000):
            value = tenths / 10
            assert round_channels(value, divisor) == timm_layers.make_divisible(value, divisor), (value, divisor)


def test_group_size_rounding_examples():
    # paper footnote 2: nearest divisor; ties to the larger; G >= C is one group
    assert nearest_group_size(16, 24) == 12  # divisors 12 (4 away) and 24 (8 away)
    assert nearest_group_size(16, 40) == 20  # 20 is 4 away, 10 is 6 away
    assert nearest_group_size(3, 8) == 4  # 2 and 4 are both 1 away: the larger wins
    assert nearest_group_size(64, 48) == 48
    assert nearest_group_size(1, 7) == 1


def test_group_count_rounding_examples():
    # 176 channels at G64 want 2.75 groups; divisors of 176 near that are 2 (0.75 away) and 4 (1.25)
    assert nearest_group_size(64, 176, "count") == 88
    assert nearest_group_size(64, 176, "size") == 44  # whereas 44 (20 away) beats 88 (24 away) as a size
    assert nearest_group_size(16, 24, "count") == 24  # 1.5 groups: 1 and 2 tie, fewer groups win
    assert nearest_group_size(16, 48, "count") == 16  # divisible: nothing to round
    assert nearest_group_size(64, 48, "count") == 48


@pytest.mark.parametrize("b", range(8))
def test_presets_carry_table_1(b):
    res = archspec.resolve(archspec.load_spec(f"efficientnet-b{b}"))
    assert res.resolution.native == NATIVE[b]
    if b in HALF:
        assert (res.resolution.half, res.resolution.half_given) == (HALF[b], True)
    else:  # Table 1 stops at B5: the planner's half rule fills in B6/B7
        assert res.resolution.half_given is False
        assert (NATIVE[b] - res.resolution.half) % 32 == 0


def test_b0_stage_table_and_scaling_follow_the_reference():
    b0 = archspec.resolve(archspec.load_spec("efficientnet-b0"))
    # (stage, repeats, out channels, kernel, stride of first block, expansion) from Tan & Le (2019), Table 1
    expected = [
        (1, 16, 3, 1, 1),
        (2, 24, 3, 2, 6),
        (2, 40, 5, 2, 6),
        (3, 80, 3, 2, 6),
        (3, 112, 5, 1, 6),
        (4, 192, 5, 2, 6),
        (1, 320, 3, 1, 6),
    ]
    for s, (repeats, channels, kernel, stride, expansion) in enumerate(expected):
        blocks = [b for b in b0.blocks if b.stage == s]
        assert len(blocks) == repeats
        assert {b.out_channels for b in blocks} == {channels}
        assert blocks[0].kernel == kernel and blocks[0].stride == stride and blocks[0].expansion == expansion
    assert (b0.stem.out_channels, b0.head_channels) == (32, 1280)


def test_global_expansion_ratio_keeps_expansion_one_stages():
    res = archspec.resolve(archspec.load_spec({"base": "efficientnet-b0", "expansion_ratio": 4}))
    assert [b.expansion for b in res.blocks if b.stage == 0] == [1]
    assert {b.expansion for b in res.blocks if b.stage > 0} == {4}


def test_fractional_expansion_rounds_mid_channels_and_records_it():
    res = archspec.resolve(archspec.load_spec({"base": "efficientnet-b0", "expansion_ratio": 4.5}))
    block = next(b for b in res.blocks if b.name == "blocks.1.0")  # 16 in x 4.5 = 72
    assert block.mid_channels == 72
    block = next(b for b in res.blocks if b.name == "blocks.1.1")  # 24 x 4.5 = 108 -> 112
    assert block.mid_channels == 112
    assert any(r.where == "blocks.1.1.conv_pw" and r.requested == 108 and r.used == 112 for r in res.roundings)


@settings(max_examples=100, deadline=None)
@given(raw=specs(), e=st.floats(1.0, 8.0))
def test_group_mid_rounding_never_rounds_a_group_size(raw, e):
    raw = {**raw, "mid_channel_rounding": "group", "expansion_ratio": e}
    res = archspec.resolve(archspec.load_spec(raw))
    for b in res.blocks:
        if b.expand:  # expanded channels are multiples of the group size (and of the divisor)
            assert b.mid_channels % b.requested_group_size == 0 and b.group_size == b.requested_group_size
            assert b.mid_channels % raw["channel_divisor"] == 0


@pytest.mark.parametrize("b", range(6))
def test_group_mid_rounding_leaves_the_paper_g16_specs_unchanged(b):
    # at E = 4, input channels (multiples of 8) x 4 are multiples of 32: already multiples of 16
    aligned = archspec.resolve(archspec.load_spec(SPECS / f"b{b}_g16.yaml"))
    plain = archspec.resolve(
        archspec.load_spec({"base": str(SPECS / f"b{b}_g16.yaml"), "mid_channel_rounding": "divisor"})
    )
    assert aligned.mid_channel_rounding == "group"
    assert [(x.mid_channels, x.group_size) for x in aligned.blocks] == [
        (x.mid_channels, x.group_size) for x in plain.blocks
    ]


def test_per_stage_group_size_overrides_global():
    stages = archspec.load_spec("efficientnet-b0").model_dump()["stages"]
    stages[3]["group_size"] = 8
    res = archspec.resolve(archspec.load_spec({"base": "efficientnet-b0", "group_size": 16, "stages": stages}))
    assert {b.group_size for b in res.blocks if b.stage == 3} == {8}
    assert {b.group_size for b in res.blocks if b.stage == 4} == {16}


def test_derived_spec_inherits_and_overrides(tmp_path):
    (tmp_path / "parent.yaml").write_text("base: efficientnet-b2\ngroup_size: 16\nnorm: {type: gn, groups: 4}\n")
    (tmp_path / "child.yaml").write_text("base: parent.yaml\nnorm: {type: gn+pn}\n")
    spec = archspec.load_spec(tmp_path / "child.yaml")
    assert spec.name == "child"  # the file's name, never the parent's
    assert (spec.group_size, spec.norm.type, spec.norm.groups, spec.width_multiplier) == (16, "gn+pn", 4, 1.1)


def test_overriding_native_resolution_drops_the_inherited_half():
    spec = archspec.load_spec({"base": "efficientnet-b0", "resolution": {"native": 64}})
    res = archspec.resolve(spec)
    assert spec.resolution.half is None
    assert res.resolution.half == 32  # derived: nearest to 64/sqrt(2) congruent to 64 (mod 32)


def test_every_shipped_spec_validates(cli):
    files = sorted(SPECS.glob("*.yaml"))
    assert len(files) >= 19
    result = cli("validate", *files)
    assert result.code == 0, result.err
    assert result.out.count("ok  ") == len(files)


@pytest.mark.parametrize("b", range(6))
def test_shipped_paper_specs(b):
    g1 = archspec.resolve(archspec.load_spec(SPECS / f"b{b}_g1.yaml"))
    g16 = archspec.resolve(archspec.load_spec(SPECS / f"b{b}_g16.yaml"))
    half = archspec.resolve(archspec.load_spec(SPECS / f"b{b}_g16_lnpn_half.yaml"))
    assert (g1.group_size, g1.expansion_ratio, g1.norm.type) == (1, None, "gn")
    assert (g16.group_size, g16.expansion_ratio, g16.norm.type, g16.norm.groups) == (16, 4, "gn", 4)
    assert (half.group_size, half.expansion_ratio, half.norm.type) == (16, 4, "ln+pn")
    assert half.resolution.train == HALF[b] and half.resolution.test == (NATIVE[b],)
    assert g1.resolution.train == g16.resolution.train == NATIVE[b]


@settings(max_examples=200, deadline=None)
@given(
    g=st.integers(1, 96), cin=st.integers(1, 160), cout=st.integers(1, 640), rounding=st.sampled_from(["size", "count"])
)
def test_a_fused_conv_group_count_divides_its_input_and_output(g, cin, cout, rounding):
    used = grouped_conv_group_size(g, cin, cout, rounding)
    groups = cin // used
    assert cin % used == 0 and cout % groups == 0
    if cin == cout:
        assert used == nearest_group_size(g, cin, rounding)


def test_the_global_group_size_leaves_fused_mbconv_dense():
    res = archspec.resolve(archspec.load_spec({"base": "efficientnetv2-s", "group_size": 16}))
    fused = [b for b in res.blocks if b.block == "fused_mbconv"]
    assert fused and all(b.groups == 1 for b in fused)
    assert all(b.group_size == 16 for b in res.blocks if b.block == "mbconv")
    own = archspec.load_spec({"base": "efficientnetv2-s"}).model_dump()["stages"]
    own[1]["group_size"] = 8  # a stage's own group size groups its fused convs
    res = archspec.resolve(archspec.load_spec({"base": "efficientnetv2-s", "stages": own}))
    assert {b.groups for b in res.blocks if b.stage == 1} == {24 // 8, 48 // 8}
