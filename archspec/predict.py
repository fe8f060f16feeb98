"""Predicted speed: a network's images/s, batch-1 latency and time per stage on a device, from the
IR and a device profile (`archspec profile`), without running the network. docs/speed.md.

Each IR node is one kernel class of the profile (a k x k conv of some group size and stride, a
1x1 conv, the stem, a norm, proxy normalization, an activation, SE, an add, pooling, dropout, the
classifier). Within a class, time is a roofline-like sum fitted to the class's measurements,

    t = a + b * MACs + c * elements moved + d * weights      (convs; others: a + b * elements + c * channels)

with non-negative coefficients (fitted to relative error), times a correction read off the
measurements nearest the layer in log(channels) and log(batch x pixels): how far the fit was from
them. Between measured group sizes the prediction is interpolated in log G. The network's time is
the sum of its nodes' times (on a GPU the host's and the device's timelines are run through a
queue: docs/speed.md); images/s is batch / time.

Pure Python: no torch, no numpy, so that `stats --profile`, `sweep` and `search` rank designs as
fast as they cost them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations
from pathlib import Path
from typing import Any, Literal, Optional, Union

import networkx as nx
from pydantic import Field, PrivateAttr, ValidationError

from . import norms
from .errors import SpecError, format_path
from .graph import Node, StageKey, layers
from .reader import PROFILE, read_json
from .validation import Strict

FORMAT = "archspec-profile"
Mode = Literal["infer", "train", "infer_host", "train_host"]
Kind = Literal[
    "conv", "conv1x1", "stem", "norm", "act", "pn", "se", "add", "droppath_add", "pool", "linear", "dropout", "call"
]
CONVS = ("conv", "conv1x1", "stem")
NEIGHBOURS = 4  # measurements the correction is read from


class Peaks(Strict):
    gflops: float = Field(gt=0, description="Measured peak compute (a large matrix product).")
    gbps: float = Field(gt=0, description="Measured memory bandwidth (a large copy, read + write).")


class Entry(Strict):
    """One measured configuration: its kernel class, its shape and its times per call."""

    kind: Kind
    variant: str = Field("", max_length=16)  # norm type, activation function
    channels: int = Field(ge=1)
    out_channels: int = Field(0, ge=0)
    kernel: int = Field(1, ge=1)
    stride: int = Field(1, ge=1)
    group_size: int = Field(1, ge=1)
    size: int = Field(ge=1)
    infer_s: float = Field(gt=0)
    train_s: Optional[float] = Field(None, gt=0)
    # on a GPU, the host's part of a call (the device's is infer_s / train_s)
    infer_host_s: Optional[float] = Field(None, gt=0)
    train_host_s: Optional[float] = Field(None, gt=0)


class Profile(Strict):
    """A device profile as `archspec profile` writes it."""

    format: Literal["archspec-profile"]
    version: Literal[1]
    device: str
    dtype: Literal["fp32", "bf16", "fp16"]
    batch_size: int = Field(ge=1)
    channels_last: bool
    train: bool
    torch: str
    threads: int = Field(ge=1)
    machine: dict[str, Union[str, int, float]]
    created: str
    seconds: float = Field(ge=0)
    peaks: Peaks
    entries: list[Entry] = Field(min_length=1)
    _fits: dict[tuple[Any, ...], _Fit | None] = PrivateAttr(default_factory=dict)
    _conv_keys: dict[str, set[tuple[Any, ...]]] = PrivateAttr(default_factory=dict)

    def fit(self, key: tuple[Any, ...], mode: Mode) -> _Fit | None:
        """The fitted model of one kernel class (key: kind, variant, kernel, stride, group size)."""
        cache = (*key, mode)
        if cache not in self._fits:
            rows = [e for e in self.entries if _key(e) == key and _time(e, mode) is not None]
            self._fits[cache] = _Fit.of(rows, mode, self.batch_size, self.overhead(mode)) if rows else None
        return self._fits[cache]

    def conv_keys(self, mode: Mode) -> set[tuple[Any, ...]]:
        """The k x k conv classes measured in `mode`."""
        if mode not in self._conv_keys:
            keys = {key for e in self.entries if (key := _key(e))[0] == "conv" and _time(e, mode) is not None}
            self._conv_keys[mode] = keys
        return self._conv_keys[mode]

    def overhead(self, mode: Mode) -> float:
        """The measuring harness's own seconds per call (a module that does nothing), which every
        entry includes once and a network's step once in all; 0 if the profile did not measure it."""
        times = [t for e in self.entries if e.kind == "call" and (t := _time(e, mode)) is not None]
        return statistics.median(times) if times else 0.0


def load_profile(path: Union[str, Path]) -> Profile:
    """A profile file, validated; a SpecError (one line, about `profile`) if it is not one."""
    path = Path(path)

    def refuse(message: str) -> SpecError:
        return SpecError(message, parameter="profile", file=str(path))

    data = read_json(path, PROFILE, parameter="profile")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise refuse("not an archspec profile (write one with `archspec profile`)")
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        raise refuse(f"corrupt profile: {format_path(tuple(err['loc']))}: {err['msg']}") from None


# ---------------------------------------------------------------------------------------------
# features of a configuration, read the same way off a profile entry and off an IR node
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """A layer as the predictor sees it: class, channels and sizes, batch included."""

    kind: str
    variant: str
    cin: int
    cout: int
    kernel: int
    stride: int
    group_size: int
    height: int
    width: int
    batch: int

    @property
    def key(self) -> tuple[Any, ...]:
        if self.kind == "conv":
            return ("conv", "", self.kernel, self.stride, self.group_size)
        return (self.kind, self.variant, 0, 0, 0)

    @property
    def out_pixels(self) -> int:
        return self.batch * -(-self.height // self.stride) * -(-self.width // self.stride)

    def features(self) -> tuple[float, ...]:
        """What time is fitted to: (1, work, elements moved, weights or channels)."""
        pixels_in = self.batch * self.height * self.width
        if self.kind in CONVS:
            weights = self.cout * self.group_size * self.kernel**2
            macs = self.out_pixels * weights
            return (1.0, macs, pixels_in * self.cin + self.out_pixels * self.cout, weights)
        if self.kind == "linear":
            return (1.0, self.batch * self.cin * self.cout, self.cin * self.cout)
        return (1.0, pixels_in * self.cin, self.cin)

    def coords(self) -> tuple[float, ...]:
        """Where the layer sits, for the correction: log channels in and out, log batch x pixels."""
        return (math.log(self.cin), math.log(max(self.cout, 1)), math.log(self.out_pixels))


def _entry_shape(e: Entry, batch: int) -> Shape:
    kind = e.kind
    out = e.out_channels if kind in (*CONVS, "linear") else e.channels
    return Shape(kind, e.variant, e.channels, out, e.kernel, e.stride, e.group_size, e.size, e.size, batch)


def _key(e: Entry) -> tuple[Any, ...]:
    return _entry_shape(e, 1).key


def _time(e: Entry, mode: Mode) -> float | None:
    t: float | None = getattr(e, f"{mode}_s")
    return t


# ---------------------------------------------------------------------------------------------
# fitting: non-negative least squares in relative error, by enumerating active sets (<= 4 terms)
# ---------------------------------------------------------------------------------------------


def _solve(a: list[list[float]], b: list[float]) -> list[float] | None:
    """Gaussian elimination with partial pivoting; None if singular."""
    n = len(b)
    m = [[*row, rhs] for row, rhs in zip(a, b)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        if abs(m[pivot][col]) < 1e-12:
            return None
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(n):
            if r != col:
                f = m[r][col] / m[col][col]
                m[r] = [x - f * y for x, y in zip(m[r], m[col])]
    return [m[i][n] / m[i][i] for i in range(n)]


def nnls_relative(xs: Sequence[Sequence[float]], ys: Sequence[float]) -> list[float]:
    """Coefficients >= 0 minimising sum(((x . c) - y) / y)^2: the fit that is right in ratio,
    so that small layers count as much as large ones."""
    n = len(xs[0])
    # scale each column to unit magnitude so the normal equations stay well conditioned
    scale = [max(abs(x[j] / y) for x, y in zip(xs, ys)) or 1.0 for j in range(n)]
    rows = [[x[j] / y / scale[j] for j in range(n)] for x, y in zip(xs, ys)]
    best: tuple[float, list[float]] = (math.inf, [0.0] * n)
    for size in range(1, n + 1):
        for active in combinations(range(n), size):
            ata = [[sum(r[i] * r[j] for r in rows) for j in active] for i in active]
            atb = [sum(r[i] for r in rows) for i in active]
            sol = _solve(ata, atb)
            if sol is None or min(sol) < 0:
                continue
            coef = [0.0] * n
            for i, v in zip(active, sol):
                coef[i] = v
            err = sum((sum(c * v for c, v in zip(coef, r)) - 1.0) ** 2 for r in rows)
            if err < best[0]:
                best = (err, coef)
    return [c / s for c, s in zip(best[1], scale)]


@dataclass
class _Fit:
    """One kernel class: the fitted coefficients, and each measurement's position and how far the
    fit was from it (log of measured / fitted)."""

    coef: list[float]
    points: list[tuple[tuple[float, ...], float]] = field(default_factory=list)

    @classmethod
    def of(cls, rows: list[Entry], mode: Mode, batch: int, overhead: float) -> _Fit:
        shapes = [_entry_shape(e, batch) for e in rows]
        # the kernel's own time: the call's overhead off (never below a tenth of what was measured)
        times = [max(t - overhead, 0.1 * t) for e in rows if (t := _time(e, mode)) is not None]
        coef = nnls_relative([s.features() for s in shapes], times)
        fit = cls(coef)
        fit.points = [(s.coords(), math.log(t / fit.base(s))) for s, t in zip(shapes, times)]
        return fit

    def base(self, shape: Shape) -> float:
        return max(sum(c * f for c, f in zip(self.coef, shape.features())), 1e-9)

    def __call__(self, shape: Shape) -> float:
        """The fit at `shape`, corrected by the inverse-distance-weighted residuals of the nearest
        measurements."""
        q = shape.coords()
        near = sorted((math.dist(q, p), r) for p, r in self.points)[:NEIGHBOURS]
        if near[0][0] < 1e-9:
            return self.base(shape) * math.exp(near[0][1])
        weights = [1 / d**2 for d, _ in near]
        correction = sum(w * r for w, (_, r) in zip(weights, near)) / sum(weights)
        return self.base(shape) * math.exp(correction)


# ---------------------------------------------------------------------------------------------
# the IR's nodes as kernel classes, and their predicted times
# ---------------------------------------------------------------------------------------------


def node_shapes(d: Node, batch: int, mode: Mode) -> list[Shape]:
    """The kernel classes one IR node runs (a proxy-normalized norm runs two; input runs none)."""
    op = d["op"]
    c, *hw = d["in_shape"] or (1,)
    h, w = (hw[0], hw[1]) if len(hw) == 2 else (1, 1)

    def shape(kind: str, variant: str = "", cin: int = c, cout: int = c) -> Shape:
        return Shape(kind, variant, cin, cout, 1, 1, 1, h, w, batch)

    if d["op"] == "conv":
        kind = "stem" if d["role"] == "stem" else "conv1x1" if d["kernel"] == 1 and d["groups"] == 1 else "conv"
        cin, cout = d["in_channels"], d["out_channels"]
        return [Shape(kind, "", cin, cout, d["kernel"], d["stride"], d["group_size"], h, w, batch)]
    if d["op"] == "norm":
        pn = [shape("pn", d["activation"] or "")] if d["proxy"] else []
        return [shape("norm", norms.kind(d["norm"]).kernel_class), *pn]
    if d["op"] == "linear":
        return [shape("linear", cin=d["in_features"], cout=d["out_features"])]
    if d["op"] == "act":
        return [shape("act", d["function"])]
    if d["op"] == "add":
        return [shape("droppath_add" if mode.startswith("train") and d["drop_path"] > 0 else "add")]
    if op in ("se", "pool", "dropout"):
        return [shape(op)]
    return []


def _nearest(options: set[int], value: int) -> int:
    return min(options, key=lambda o: (abs(math.log(o / value)), -o))


def kernel_seconds(profile: Profile, shape: Shape, mode: Mode) -> float:
    """Predicted seconds of one kernel-class call."""
    if shape.kind != "conv":
        fit = profile.fit(shape.key, mode) or profile.fit((*shape.key[:1], "silu", 0, 0, 0), mode)
        if fit is None:
            raise SpecError(
                f"the profile has no {mode} measurements of {shape.kind} {shape.variant}", parameter="profile"
            )
        return fit(shape)
    keys = profile.conv_keys(mode)
    if not keys:
        raise SpecError(f"the profile has no {mode} measurements of grouped convolutions", parameter="profile")
    k = _nearest({key[2] for key in keys}, shape.kernel)
    s = _nearest({key[3] for key in keys if key[2] == k}, shape.stride)
    sizes: list[int] = sorted(key[4] for key in keys if key[2:4] == (k, s))
    g = shape.group_size
    lo = max((v for v in sizes if v <= g), default=sizes[0])
    hi = min((v for v in sizes if v >= g), default=sizes[-1])

    def at(group_size: int) -> float:
        """The layer's time with a measured group size (a class's fit is read on its own G only)."""
        fit = profile.fit(("conv", "", k, s, group_size), mode)
        assert fit is not None
        return fit(replace(shape, group_size=group_size))

    if hi == lo:  # beyond the measured group sizes: time in proportion to the MACs
        return at(lo) * g / lo
    w = math.log(g / lo) / math.log(hi / lo)
    return math.exp((1 - w) * math.log(at(lo)) + w * math.log(at(hi)))


def node_seconds(g: nx.DiGraph[str], profile: Profile, batch_size: int, mode: Mode) -> dict[str, float]:
    """Predicted seconds of every IR node (forward; forward + backward for `train`)."""
    return {
        name: sum(kernel_seconds(profile, s, mode) for s in node_shapes(d, batch_size, mode))
        for name, d in layers(g)
        if d["op"] != "input"
    }


@dataclass(frozen=True)
class StageTime:
    stage: StageKey
    infer_s: float
    train_s: float | None


@dataclass(frozen=True)
class Prediction:
    """Predicted time of one batch (inference; a training step's forward + backward) and of one
    image alone (latency), in total and per stage."""

    batch_size: int
    infer_s: float
    train_s: float | None
    latency_ms: float
    stages: list[StageTime]
    device: str
    dtype: str

    @property
    def infer_images_per_s(self) -> float:
        return self.batch_size / self.infer_s

    @property
    def train_images_per_s(self) -> float | None:
        return None if self.train_s is None else self.batch_size / self.train_s

    @property
    def stage_seconds(self) -> dict[StageKey, float]:
        return {s.stage: s.infer_s for s in self.stages}

    def as_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "dtype": self.dtype,
            "batch_size": self.batch_size,
            "infer_images_per_s": self.infer_images_per_s,
            "train_images_per_s": self.train_images_per_s,
            "latency_ms": self.latency_ms,
            "infer_s": self.infer_s,
            "train_s": self.train_s,
            "stages": [{"stage": s.stage, "infer_s": s.infer_s, "train_s": s.train_s} for s in self.stages],
        }


def _by_stage(g: nx.DiGraph[str], seconds: dict[str, float]) -> dict[StageKey, float]:
    out: dict[StageKey, float] = {}
    for name, d in layers(g):
        if name in seconds:
            out[d["stage"]] = out.get(d["stage"], 0.0) + seconds[name]
    return out


def network_seconds(g: nx.DiGraph[str], profile: Profile, batch_size: int, mode: Mode) -> dict[str, float]:
    """Each node's share of a batch's predicted time (the step's own overhead, once, goes to its
    first node). On a CPU a node's time is its kernels'; on a GPU (a profile with host times) the
    host enqueues each node's kernels and the device runs them once enqueued and once it is free,
    so a node adds what it moves the device's finish by."""
    device = node_seconds(g, profile, batch_size, mode)
    host_mode: Mode = "train_host" if mode == "train" else "infer_host"
    gpu = any(e.infer_host_s for e in profile.entries)
    host = node_seconds(g, profile, batch_size, host_mode) if gpu else dict.fromkeys(device, 0.0)
    issued = profile.overhead(host_mode if gpu else mode)
    finished = 0.0
    out = {}
    for name, t in device.items():
        issued += host[name]
        start = max(finished, issued)
        out[name] = start + t - finished
        finished = start + t
    return out


def predict(g: nx.DiGraph[str], profile: Profile, batch_size: int) -> Prediction:
    """Predicted speed of the network `g` at its resolution on the profile's device."""
    if not 1 <= batch_size <= 1 << 20:
        raise SpecError(f"must be from 1 to {1 << 20}, got {batch_size}", parameter="batch_size")
    infer = network_seconds(g, profile, batch_size, "infer")
    train = network_seconds(g, profile, batch_size, "train") if profile.train else None
    latency = network_seconds(g, profile, 1, "infer")
    infer_stages = _by_stage(g, infer)
    train_stages = _by_stage(g, train) if train is not None else {}
    stages = [StageTime(k, v, train_stages.get(k)) for k, v in infer_stages.items()]
    return Prediction(
        batch_size=batch_size,
        infer_s=sum(infer.values()),
        train_s=sum(train.values()) if train is not None else None,
        latency_ms=sum(latency.values()) * 1e3,
        stages=stages,
        device=profile.device,
        dtype=profile.dtype,
    )


def speed_report(g: nx.DiGraph[str], profile: Union[str, Path], batch_size: int | None = None) -> dict[str, Any]:
    """`stats --profile`: the prediction at `batch_size` (default: the profile's) as plain data."""
    loaded = load_profile(profile)
    result = predict(g, loaded, batch_size or loaded.batch_size).as_dict()
    return {"profile": str(profile), **result}
