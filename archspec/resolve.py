"""`resolve(spec)`: a ModelSpec becomes concrete layers (plain frozen dataclasses).

Compound scaling follows the reference EfficientNet exactly (tensorflow/tpu
`efficientnet_model.round_filters` / `round_repeats`): channels x width rounded to the divisor,
never below 90% of the unrounded value; repeats x depth rounded up. A group size that does not
divide a layer's channels is rounded (paper footnote 2) by the spec's `group_rounding`: `size`
takes the divisor of the channels nearest to the request (ties to the larger), `count` rounds the
number of groups instead. Every rounding that changed a number is recorded.

The ResolvedSpec carries everything later steps need from the spec (its source chain, the rounding
rules in force), so that nothing downstream reaches back past it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from . import norms
from .blocks import kind as block_kind
from .errors import SpecError
from .limits import MAX_BLOCKS, MAX_CHANNELS, check_resolution
from .presets import PRESET_NAMES
from .resolution import half_resolution
from .spec import ModelSpec


def round_channels(channels: float, divisor: int) -> int:
    """Nearest multiple of `divisor`, at least `divisor`, and never below 90% of `channels`."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * channels:
        rounded += divisor
    return int(rounded)


def expanded_channels(in_channels: int, expansion: float, divisor: int) -> int:
    """Mid channels of an MBConv: input x expansion rounded like any channel count (so that
    fractional expansion ratios are well defined); expansion 1 keeps the input channels."""
    return in_channels if expansion == 1 else round_channels(in_channels * expansion, divisor)


def requested_group_size(spec: ModelSpec, stage: int) -> int | None:
    """The stage's own group size if it has one, else the spec's where the stage's block kind takes
    the global one (MBConv's depthwise conv does, fused MBConv's dense conv does not); None: dense."""
    own = spec.stages[stage].group_size
    if own is not None:
        return own
    return spec.group_size if block_kind(spec.stages[stage].block).global_group_size else None


def mid_divisor(spec: ModelSpec, stage: int) -> int:
    """What a stage's expanded channels are rounded to (see ModelSpec.mid_channel_rounding)."""
    requested = requested_group_size(spec, stage)
    if spec.mid_channel_rounding == "divisor" or requested is None:
        return spec.channel_divisor
    return math.lcm(spec.channel_divisor, requested)


def round_repeats(repeats: int, depth_multiplier: float) -> int:
    return math.ceil(depth_multiplier * repeats)


@functools.lru_cache(maxsize=4096)
def divisors(n: int) -> tuple[int, ...]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return tuple(sorted(set(small + [n // d for d in small])))


def grouped_conv_group_size(requested: int, cin: int, cout: int, rounding: str = "size") -> int:
    """The group size (input channels per group) of a k x k conv from `cin` to `cout` channels:
    its group count divides both, so the request is rounded over their common divisor (for a
    conv whose input and output channels are equal, exactly `nearest_group_size`)."""
    common = math.gcd(cin, cout)
    if common == cin:
        return nearest_group_size(requested, cin, rounding)
    per_group = nearest_group_size(max(1, round(requested * common / cin)), common, rounding)
    return cin // (common // per_group)


def nearest_group_size(requested: int, channels: int, rounding: str = "size") -> int:
    """A group size that divides `channels`, for a requested one that may not (paper footnote 2).

    "size": the divisor of C nearest to G. "count": C over the divisor of C nearest to C/G groups,
    i.e. the number of groups is what gets rounded. Ties go to the larger group size; G >= C is one
    group either way.
    """
    if requested >= channels:
        return channels
    if rounding == "count":
        groups = min(divisors(channels), key=lambda k: (abs(k - channels / requested), k))
        return channels // groups
    return min(divisors(channels), key=lambda d: (abs(d - requested), -d))


@dataclass(frozen=True)
class Rounding:
    where: str  # a layer name (blocks.2.0.conv_dw) or a spec field (stages[2].channels)
    what: str
    requested: float
    used: int

    def __str__(self) -> str:
        return f"{self.where}: {self.what} {self.requested:g} -> {self.used}"


@dataclass(frozen=True)
class NormConfig:
    type: str
    groups: int
    eps: float
    pn_eps: float
    momentum: float

    @property
    def kind(self) -> norms.NormKind:
        return norms.split(self.type)[0]

    @property
    def proxy(self) -> bool:
        return norms.split(self.type)[1]

    @property
    def base(self) -> str:
        return self.kind.name

    def num_groups(self, channels: int) -> int:
        """Statistics groups (GN's; LN is GN with one group, eq. 3); 0 for norms without."""
        return self.kind.groups(self.groups, channels) if channels else 0


@dataclass(frozen=True)
class StemLayer:
    in_channels: int
    out_channels: int
    kernel: int
    stride: int


@dataclass(frozen=True)
class BlockLayer:
    """One block of a registered kind (archspec.blocks), e.g. MBConv: [1x1 expand] -> kxk grouped
    conv -> [SE] -> 1x1 project (+ skip)."""

    name: str  # blocks.{stage}.{index}, also the torch module path
    block: str  # its kind's name in the block registry
    stage: int
    index: int
    in_channels: int
    mid_channels: int
    out_channels: int
    kernel: int
    stride: int
    expansion: float
    group_size: int  # used (rounded)
    requested_group_size: int
    se_channels: int  # 0: no squeeze-excite
    drop_path: float

    @property
    def expand(self) -> bool:
        # the reference EfficientNet drops the expansion conv when the expansion ratio is 1
        return self.expansion != 1

    @property
    def groups(self) -> int:
        """Groups of the block's k x k conv (whose input channels the group size counts)."""
        cin, _ = block_kind(self.block).grouped_channels(
            self.in_channels, self.mid_channels, self.out_channels, self.expand
        )
        return cin // self.group_size

    @property
    def skip(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels

    @property
    def layers_key(self) -> tuple[str, int, int, int, int, int, int, int, bool]:
        """What the block's layers are as built: two blocks with the same key (and input shape)
        have the same parameters and MACs, whatever values were requested before rounding."""
        return (
            self.block,
            self.in_channels,
            self.mid_channels,
            self.out_channels,
            self.kernel,
            self.stride,
            self.group_size,
            self.se_channels,
            self.expand,
        )


@dataclass(frozen=True)
class ResolvedResolution:
    native: int | None
    half: int | None
    half_given: bool  # written in the spec (for presets B0-B5: Table 1), else derived by the half rule
    train: int
    test: tuple[int, ...]

    def pick(self, value: str | int | None, parameter: str = "resolution") -> int:
        """A resolution named by the user: pixels, or this network's 'native', 'half' or 'train'
        resolution; None means the training resolution."""
        if value is None:
            return self.train
        named = {"native": self.native, "half": self.half, "train": self.train}
        if isinstance(value, str) and value in named:
            pixels = named[value]
            if pixels is None:
                raise SpecError(f"this spec has no {value} resolution", parameter=parameter)
            return pixels
        try:
            number = int(value)
        except ValueError:
            raise SpecError(
                f"expected a pixel count, 'native', 'half' or 'train', got {value!r}", parameter=parameter
            ) from None
        return check_resolution(number, parameter)


@dataclass(frozen=True)
class ResolvedSpec:
    name: str
    description: str | None
    in_channels: int
    num_classes: int
    stem: StemLayer
    blocks: tuple[BlockLayer, ...]
    head_channels: int  # 0: no head conv
    head_in_channels: int
    dropout: float
    norm: NormConfig
    activation: str
    group_size: int
    expansion_ratio: float | None
    resolution: ResolvedResolution
    roundings: tuple[Rounding, ...]
    group_rounding: str  # size | count
    mid_channel_rounding: str  # divisor | group
    sources: tuple[str, ...]  # the spec's file, then its bases, ending with a preset if any

    @property
    def preset(self) -> str | None:
        """The EfficientNet preset this network derives from, if any."""
        return self.sources[-1] if self.sources and self.sources[-1] in PRESET_NAMES else None

    @property
    def num_stages(self) -> int:
        return max(b.stage for b in self.blocks) + 1

    @property
    def downsampling_layers(self) -> int:
        return stride2_layers(self.stem, self.blocks)


def stride2_layers(stem: StemLayer, blocks: tuple[BlockLayer, ...] | list[BlockLayer]) -> int:
    """How many layers downsample (stride 2): the one count the half rule, the IR, congruence and
    fine-tuning's block boundaries all use."""
    return (stem.stride == 2) + sum(b.stride == 2 for b in blocks)


def resolve(spec: ModelSpec) -> ResolvedSpec:
    """Concrete layers for `spec`. Raises a located `SpecError` when the numbers do not work out."""
    src = spec.source
    div = spec.channel_divisor
    width = spec.width_multiplier
    roundings: list[Rounding] = []

    def scaled(value: int, where: str) -> int:
        exact = value * width
        used = round_channels(exact, div)
        if used != exact:
            roundings.append(Rounding(where, "channels", exact, used))
        if used > MAX_CHANNELS:
            raise src.error(
                ("width_multiplier",), f"{where} would have {used} channels; at most {MAX_CHANNELS} are supported"
            )
        return used

    stem_out = scaled(spec.stem.channels, "stem.channels")
    stem = StemLayer(spec.in_channels, stem_out, spec.stem.kernel, spec.stem.stride)

    repeats = []
    for i, stage in enumerate(spec.stages):
        n = round_repeats(stage.repeats, spec.depth_multiplier)
        if n != stage.repeats * spec.depth_multiplier:
            roundings.append(Rounding(f"stages[{i}].repeats", "repeats", stage.repeats * spec.depth_multiplier, n))
        repeats.append(n)
    total = sum(repeats)
    if total > MAX_BLOCKS:
        raise src.error(
            ("depth_multiplier",), f"the network would have {total} blocks; at most {MAX_BLOCKS} are supported"
        )

    blocks: list[BlockLayer] = []
    in_ch = stem_out
    for s, (stage, n) in enumerate(zip(spec.stages, repeats)):
        out_ch = scaled(stage.channels, f"stages[{s}].channels")
        keeps_one = stage.expansion == 1
        expansion = stage.expansion if (keeps_one or spec.expansion_ratio is None) else spec.expansion_ratio
        requested_g = requested_group_size(spec, s)
        for i in range(n):
            name = f"blocks.{s}.{i}"
            mid = expanded_channels(in_ch, expansion, mid_divisor(spec, s))
            if mid != in_ch * expansion:
                roundings.append(Rounding(f"{name}.conv_pw", "mid channels", in_ch * expansion, mid))
            if mid > MAX_CHANNELS:
                raise src.error(
                    ("expansion_ratio",), f"{name} would have {mid} channels; at most {MAX_CHANNELS} are supported"
                )
            kind = block_kind(stage.block)
            expand = expansion != 1
            cin, cout = kind.grouped_channels(in_ch, mid, out_ch, expand)
            asked = cin if requested_g is None else requested_g
            g = grouped_conv_group_size(asked, cin, cout, spec.group_rounding)
            if g != asked:
                where = f"{name}.{kind.grouped_conv(expand)}"
                roundings.append(Rounding(where, f"group size (of {cin} channels)", asked, g))
            se = max(1, int(in_ch * stage.se_ratio)) if stage.se_ratio > 0 else 0
            blocks.append(
                BlockLayer(
                    name=name,
                    block=stage.block,
                    stage=s,
                    index=i,
                    in_channels=in_ch,
                    mid_channels=mid,
                    out_channels=out_ch,
                    kernel=stage.kernel,
                    stride=stage.stride if i == 0 else 1,
                    expansion=expansion,
                    group_size=g,
                    requested_group_size=asked,
                    se_channels=se,
                    drop_path=spec.drop_path * len(blocks) / total,
                )
            )
            in_ch = out_ch

    head = scaled(spec.head.channels, "head.channels") if spec.head.channels else 0
    norm = NormConfig(spec.norm.type, spec.norm.groups, spec.norm.eps, spec.norm.pn_eps, spec.norm.momentum)
    _check_norm_groups(spec, norm, stem, blocks, head)
    return ResolvedSpec(
        name=spec.name,
        description=spec.description,
        in_channels=spec.in_channels,
        num_classes=spec.num_classes,
        stem=stem,
        blocks=tuple(blocks),
        head_channels=head,
        head_in_channels=in_ch,
        dropout=spec.head.dropout,
        norm=norm,
        activation=spec.activation,
        group_size=spec.group_size,
        expansion_ratio=spec.expansion_ratio,
        resolution=_resolution(spec, stride2_layers(stem, blocks)),
        roundings=tuple(roundings),
        group_rounding=spec.group_rounding,
        mid_channel_rounding=spec.mid_channel_rounding,
        sources=spec.source.chain,
    )


def _check_norm_groups(spec: ModelSpec, norm: NormConfig, stem: StemLayer, blocks: list[BlockLayer], head: int) -> None:
    layers = [("the stem", stem.out_channels)]
    for b in blocks:
        layers += [(f"{b.name} (expanded)", b.mid_channels), (f"{b.name} (output)", b.out_channels)]
    if head:
        layers.append(("the head", head))
    for layer, channels in layers:
        if channels % max(1, norm.num_groups(channels)):
            raise spec.source.error(
                ("norm", "groups"),
                f"{norm.groups} groups do not divide the {channels} channels of {layer}; choose a "
                f"group count that divides every layer's channels (e.g. {_common_divisor_hint(layers)})",
            )


def _common_divisor_hint(layers: list[tuple[str, int]]) -> int:
    g = 0
    for _, c in layers:
        g = math.gcd(g, c)
    return max(d for d in divisors(g) if d <= 32)


def _resolution(spec: ModelSpec, n: int) -> ResolvedResolution:
    """Train and test resolutions in pixels; `n` stride-2 layers decide the half rule."""
    r = spec.resolution
    half, given = r.half, r.half is not None
    if half is None and r.native is not None:
        half = half_resolution(r.native, n)
    if r.train == "native":
        if r.native is None:
            raise spec.source.error(
                ("resolution", "train"),
                "'native' needs resolution.native (or a preset base); give a pixel count instead",
            )
        train = r.native
    elif r.train == "half":
        if half is None:
            raise spec.source.error(
                ("resolution", "train"), "'half' needs resolution.native or resolution.half (or a preset base)"
            )
        train = half
    else:
        train = r.train
    test = tuple(r.test) or ((r.native,) if r.native else (train,))
    return ResolvedResolution(r.native, half, given, train, test)
