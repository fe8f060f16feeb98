"""What the norm, block and backend registries share: their kinds by name, the built-ins first,
then those installed packages declare under an entry point group (plug-ins)."""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Protocol, TypeVar


class Named(Protocol):
    @property
    def name(self) -> str: ...


K = TypeVar("K", bound=Named)


def by_name(built_in: Iterable[K], group: str, cls: type[K]) -> dict[str, K]:
    """Every kind by its name; a plug-in's entry point names a `cls` instance. A name declared
    twice is refused: which one would win is not something to leave to install order."""
    kinds = list(built_in)
    for ep in entry_points(group=group):
        kind = ep.load()
        if not isinstance(kind, cls):
            raise TypeError(f"entry point {ep.name!r} of {group} is not a {cls.__name__}: {kind!r}")
        kinds.append(kind)
    out: dict[str, K] = {}
    for kind in kinds:
        if kind.name in out:
            raise ValueError(f"{cls.__name__} {kind.name!r} is declared twice")
        out[kind.name] = kind
    return out
