"""Train/test resolution rules (paper section 3.3 and Table 1).

A test resolution keeps the positions of the asymmetric (odd-input) downsampling layers of
training when r_test = r_train (mod 2^n), n being the number of stride-2 layers.
"""

from __future__ import annotations

import math


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
    step = 2**n_downsampling
    first = r_train % step or step
    return list(range(first, maximum + 1, step))
