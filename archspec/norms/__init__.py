"""The norm registry: every normalization a spec can name, each declared once in its own module.

A `NormKind` carries everything the project needs from a norm, so that nothing elsewhere compares
norm names: the spec fields it reads, whether it depends on the batch (SyncBN, timm's layers),
whether proxy normalization may follow it (`gn+pn`), its exact parameters and elementwise work,
the torch layer the backend builds (a class name and its arguments: plain data, no torch here),
the profile kernel class the predictor and `profile` share, and which torch op the FLOP counters
see. The torch backend registers the class under that name (backends/torch/norms.py).

Built-ins live beside this file; a user's package adds kinds through the `archspec.norms` entry
point group (each entry point names a NormKind), loaded the first time the registry is read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

from ..registry import by_name

PN_SUFFIX = "+pn"
ENTRY_POINTS = "archspec.norms"

# What the spec's norm fields mean, for the layer's arguments (resolve.NormConfig has the same).
Arguments = tuple[tuple[Any, ...], dict[str, Any]]


@dataclass(frozen=True)
class NormLayer:
    """What the IR knows of one norm layer, handed to a kind's `arguments`."""

    channels: int
    num_groups: int
    eps: float
    momentum: float
    pn_eps: float
    activation: str | None  # the activation the layer applies after normalizing, if any


@dataclass(frozen=True)
class NormKind:
    name: str  # the spec's `norm.type`
    summary: str  # one line, for docs and errors
    fields: tuple[str, ...]  # NormSpec fields it reads besides `type` (PN's pn_eps comes with +pn)
    batch_dependent: bool  # statistics over the batch: SyncBN across processes, running statistics
    proxy: bool  # proxy normalization may follow it (`{name}+pn`)
    module: str  # the torch backend's layer class (registered there under this name)
    arguments: Callable[[NormLayer], Arguments]  # that class's constructor arguments
    kernel_class: str  # the profile's `norm` variant this layer is timed as
    counted_as: Literal["batch_norm", "group_norm", "none"]  # the op FLOP counters see it as
    # torchinfo's mult-adds per channel: a leaf module's weight and bias elements, once each (a
    # layer that holds its activation as a child is no leaf, and torchinfo counts it 0)
    torchinfo_per_channel: int = 0
    ops_per_element: int = 4  # subtract mean, scale by 1/std, multiply gamma, add beta
    params_per_channel: int = 2  # gamma, beta
    # Where the norm brings its own activation (FRN's TLU), the activation it applies in place of
    # the spec's, its extra learnable parameters per channel and its work per element.
    own_activation: str | None = None
    activation_params_per_channel: int = 0
    groups: Callable[[int, int], int] = field(default=lambda spec_groups, channels: 0)  # statistics groups
    # timm's layer for the same norm (a timm.layers class name, its keyword arguments), for
    # `bench --vs-timm`; None where timm has none
    timm: Callable[[NormLayer], tuple[str, dict[str, Any]]] | None = None
    # the module whose text defines `module` (codegen copies the class from it, importing nothing)
    source: str = "archspec.backends.torch.norms"

    def params(self, channels: int, activated: bool) -> int:
        own = self.activation_params_per_channel if activated and self.own_activation else 0
        return (self.params_per_channel + own) * channels


_BUILT_IN = ("bn", "gn", "ln", "frn")


@cache
def registry() -> dict[str, NormKind]:
    """Every norm kind by name: the built-ins, then those of installed plug-ins."""
    from importlib import import_module

    out = by_name((import_module(f"{__name__}.{name}").KIND for name in _BUILT_IN), ENTRY_POINTS, NormKind)
    for name in out:
        if name.endswith(PN_SUFFIX):
            raise ValueError(f"norm kind {name!r} would read as a norm followed by proxy normalization")
    return out


def spec_types() -> tuple[str, ...]:
    """What `norm.type` may be: every kind, and `{kind}+pn` where PN may follow it."""
    kinds = registry().values()
    return tuple(k.name for k in kinds) + tuple(k.name + PN_SUFFIX for k in kinds if k.proxy)


def split(norm_type: str) -> tuple[NormKind, bool]:
    """The kind a `norm.type` names, and whether proxy normalization follows it."""
    base, proxy = (norm_type[: -len(PN_SUFFIX)], True) if norm_type.endswith(PN_SUFFIX) else (norm_type, False)
    if norm_type not in spec_types():
        raise ValueError(f"no normalization {norm_type!r}; the norms are {', '.join(spec_types())}")
    return registry()[base], proxy


def kind(name: str) -> NormKind:
    """A kind by its name (an IR norm node's `norm`)."""
    return registry()[name]


def fields(norm_type: str) -> tuple[str, ...]:
    """The NormSpec fields a normalization uses: BN's momentum, GN's groups, PN's eps."""
    base, proxy = split(norm_type)
    return ("type", *base.fields, *(("pn_eps",) if proxy else ()))
