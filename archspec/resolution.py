"""Train/test resolution rules (paper section 3.3 and Table 1).

A test resolution keeps the positions of the asymmetric (odd-input) downsampling layers of
training when r_test = r_train (mod 2^n), n being the number of stride-2 layers.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

from .errors import SpecError

if TYPE_CHECKING:
    from .resolve import ResolvedSpec


def congruent(r_test: int, r_train: int, n_downsampling: int) -> bool:
    return (r_test - r_train) % (2**n_downsampling) == 0


def half_resolution(native: int, n_downsampling: int) -> int:
    """The resolution nearest to native/sqrt(2) that is congruent to native (mod 2^n).

    Training there halves the pixel count while testing at native keeps the downsampling layers
    where training had them. Ties go to the larger resolution.
    """
    step = 2**n_downsampling
    target = native / math.sqrt(2)
    below = native - step * math.ceil((native - target) / step)
    candidates = [r for r in (below, below + step) if r >= 1]
    return min(candidates, key=lambda r: (abs(r - target), -r))


def valid_test_resolutions(r_train: int, n_downsampling: int, maximum: int) -> list[int]:
    """Congruent resolutions from 2^n (smaller ones shrink the last feature map below 1x1) to maximum."""
    step = 2**n_downsampling
    first = r_train % step + step
    return list(range(first, maximum + 1, step))


def nearest_valid(r: int, r_train: int, n_downsampling: int) -> tuple[int, int]:
    """The valid test resolutions just below and just above `r`."""
    step = 2**n_downsampling
    below = r - (r - r_train) % step
    return below, below + step


def congruence_warnings(r_train: int, tests: list[int] | tuple[int, ...], n_downsampling: int) -> list[str]:
    """One warning per test resolution that moves the downsampling layers (paper section 3.3)."""
    out = []
    for r in tests:
        if not congruent(r, r_train, n_downsampling):
            below, above = nearest_valid(r, r_train, n_downsampling)
            out.append(f"test resolution {r} is not congruent to the training resolution {r_train} "
                       f"(mod {2**n_downsampling}): the {n_downsampling} stride-2 layers will see odd sizes "
                       f"where training did not; nearest valid: {below}, {above}")
    return out


def parse_resolution(value: Optional[str], resolved: "ResolvedSpec") -> Optional[int]:
    """A --resolution flag: pixels, or the spec's 'native', 'half' or 'train' resolution."""
    if value is None:
        return None
    r = resolved.resolution
    named = {"native": r.native, "half": r.half, "train": r.train}
    if value in named:
        if named[value] is None:
            raise SpecError(f"this spec has no {value} resolution", field="--resolution")
        return named[value]
    try:
        pixels = int(value)
    except ValueError:
        raise SpecError(f"expected a pixel count, 'native', 'half' or 'train', got {value!r}",
                        field="--resolution") from None
    return checked_pixels(pixels)


def checked_pixels(pixels: int) -> int:
    """A --resolution in pixels, within what the model and the cost model handle."""
    if not 8 <= pixels <= 4096:
        raise SpecError(f"must be from 8 to 4096, got {pixels}", field="--resolution")
    return pixels
