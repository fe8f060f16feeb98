"""The kernel classes a device profile measures and the predictor reads: one list, so that
`archspec profile` (which writes them) and `archspec.predict` (which reads them) cannot drift.

Every IR node runs one or two of these: a k x k conv of some group size and stride, a 1x1 conv,
the stem conv, a normalization, the proxy-normalization part of a norm layer, an activation,
squeeze-excite, a residual add (with drop-path when training), global pooling, dropout and the
classifier.
"""

from __future__ import annotations

from enum import Enum


class Kernel(str, Enum):
    CONV = "conv"
    CONV1X1 = "conv1x1"
    STEM = "stem"
    NORM = "norm"
    PN = "pn"
    ACT = "act"
    SE = "se"
    ADD = "add"
    DROPPATH_ADD = "droppath_add"
    POOL = "pool"
    LINEAR = "linear"
    DROPOUT = "dropout"


CONVS = frozenset({Kernel.CONV, Kernel.CONV1X1, Kernel.STEM})
# the parts of a network whose time in context departs from their time alone in the same way:
# a calibration fits one factor per group (archspec.predict)
GROUPS: dict[Kernel, str] = {
    Kernel.CONV: "grouped_conv",
    Kernel.CONV1X1: "dense_conv",
    Kernel.STEM: "dense_conv",
    Kernel.LINEAR: "dense_conv",
    Kernel.NORM: "elementwise",
    Kernel.PN: "elementwise",
    Kernel.ACT: "elementwise",
    Kernel.ADD: "elementwise",
    Kernel.DROPPATH_ADD: "elementwise",
    Kernel.SE: "reduce",
    Kernel.POOL: "reduce",
    Kernel.DROPOUT: "reduce",
}
