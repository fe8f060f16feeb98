"""Train/test resolution rules (paper section 3.3 and Table 1).

A test resolution keeps the positions of the asymmetric (odd-input) downsampling layers of
training when r_test = r_train (mod 2^n), n being the number of stride-2 layers.
"""

from __future__ import annotations

import math


def congruent(r_test: int, r_train: int, n_downsampling: int) -> bool:
    return (r_test - r_train) % (1 << n_downsampling) == 0


def half_resolution(native: int, n_downsampling: int) -> int:
    """The resolution nearest to native/sqrt(2) that is congruent to native (mod 2^n).

    Training there halves the pixel count while testing at native keeps the downsampling layers
    where training had them. Ties go to the larger resolution.
    """
    step = 1 << n_downsampling
    target = native / math.sqrt(2)
    below = native - step * math.ceil((native - target) / step)
    candidates = [r for r in (below, below + step) if r >= 1]
    return min(candidates, key=lambda r: (abs(r - target), -r))


def valid_test_resolutions(r_train: int, n_downsampling: int, maximum: int) -> list[int]:
    """Congruent resolutions from 2^n (smaller ones shrink the last feature map below 1x1) to maximum."""
    step = 1 << n_downsampling
    first = r_train % step + step
    return list(range(first, maximum + 1, step))


def nearest_valid(r: int, r_train: int, n_downsampling: int) -> tuple[int, int]:
    """The valid test resolutions just below and just above `r`."""
    step = 1 << n_downsampling
    below = r - (r - r_train) % step
    return below, below + step


def congruence_warnings(r_train: int, tests: list[int] | tuple[int, ...], n_downsampling: int) -> list[str]:
    """One warning per test resolution that moves the downsampling layers (paper section 3.3)."""
    out = []
    for r in tests:
        if not congruent(r, r_train, n_downsampling):
            below, above = nearest_valid(r, r_train, n_downsampling)
            out.append(
                f"test resolution {r} is not congruent to the training resolution {r_train} "
                f"(mod {(1 << n_downsampling)}): the {n_downsampling} stride-2 layers will see odd sizes "
                f"where training did not; nearest valid: {below}, {above}"
            )
    return out
