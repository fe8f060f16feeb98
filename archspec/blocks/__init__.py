"""The block registry: every block a stage can name (`stages[i].block`), each declared once in its
own module: how it lowers to IR nodes (names, shapes, costs), which channels its k x k conv
groups, and the torch block class that runs it (a class name: plain data, no torch here; the torch
backend's layers.BLOCKS maps it to the class).

Built-ins live beside this file; a user's package adds kinds through the `archspec.blocks` entry
point group (each entry point names a BlockKind), loaded the first time the registry is read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import import_module
from typing import Literal, Protocol

from ..registry import by_name

ENTRY_POINTS = "archspec.blocks"
Role = Literal["stem", "expand", "spatial", "project", "head"]


class Block(Protocol):
    """What lowering reads of a resolved block (resolve.BlockLayer), structurally: the registry
    sits below resolve and graph, which use it."""

    @property
    def name(self) -> str: ...
    @property
    def stage(self) -> int: ...
    @property
    def mid_channels(self) -> int: ...
    @property
    def out_channels(self) -> int: ...
    @property
    def kernel(self) -> int: ...
    @property
    def stride(self) -> int: ...
    @property
    def se_channels(self) -> int: ...
    @property
    def drop_path(self) -> float: ...
    @property
    def expand(self) -> bool: ...
    @property
    def groups(self) -> int: ...
    @property
    def skip(self) -> bool: ...


class Lowering(Protocol):
    """What a block's `lower` appends IR nodes with (graph._Lowering)."""

    last: str

    def conv(
        self, name: str, out_ch: int, kernel: int, stride: int, groups: int, role: Role, unit: str, stage: int
    ) -> None: ...

    def norm_act(self, name: str, unit: str, stage: int, act: bool) -> None: ...

    def se(self, block: Block) -> None: ...

    def residual(self, block: Block, block_input: str) -> None: ...


@dataclass(frozen=True)
class BlockKind:
    name: str  # what `stages[i].block` says
    summary: str
    lower: Callable[[Lowering, Block], None]  # appends the block's nodes, in forward order
    module: Callable[[bool], str]  # the torch block class, by whether the block expands
    # the layers that class takes, by whether the block expands (those a block leaves out, such as
    # its squeeze-excite, are given as identities)
    slots: Callable[[bool], tuple[str, ...]]
    # its grouped k x k conv: the layer's name in the block, by whether the block expands, and its
    # (input, output) channels from the block's (in, mid, out, expands)
    grouped_conv: Callable[[bool], str]
    global_group_size: bool  # the spec's `group_size` applies to it (else a stage's own, or dense)
    grouped_channels: Callable[[int, int, int, bool], tuple[int, int]]


_BUILT_IN = ("mbconv", "fused_mbconv")


@cache
def registry() -> dict[str, BlockKind]:
    """Every block kind by name: the built-ins, then those of installed plug-ins."""
    return by_name((import_module(f"{__name__}.{name}").KIND for name in _BUILT_IN), ENTRY_POINTS, BlockKind)


def kind(name: str) -> BlockKind:
    return registry()[name]
