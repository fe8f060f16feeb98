"""The bounds of every number archspec accepts, in one place: the spec schema, the CLI's flags
and the functions of the core all read them from here."""

from __future__ import annotations

from typing import Final

from .errors import SpecError

MIN_RESOLUTION: Final = 8  # pixels; smaller images vanish under EfficientNet's five stride-2 layers
MAX_RESOLUTION: Final = 4096
MAX_GROUP_SIZE: Final = 4096
MIN_EXPANSION: Final = 1.0
MAX_EXPANSION: Final = 16.0
MAX_CHANNELS: Final = 65536  # of any resolved layer
MAX_BLOCKS: Final = 1024  # of a resolved network
MAX_BATCH: Final = 1 << 20


def check_resolution(pixels: int, parameter: str = "resolution") -> int:
    """`pixels`, if a network can be costed and run at it; else a SpecError about `parameter`."""
    if not MIN_RESOLUTION <= pixels <= MAX_RESOLUTION:
        raise SpecError(f"must be from {MIN_RESOLUTION} to {MAX_RESOLUTION}, got {pixels}", parameter=parameter)
    return pixels
