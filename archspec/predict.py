"""Predicted speed: a network's images/s, batch-1 latency and time per stage on a device, from the
IR and a device profile (`archspec profile`), without running the network. docs/speed.md.

Each IR node is one kernel class of the profile (a k x k conv of some group size and stride, a
1x1 conv, the stem, a norm, proxy normalization, an activation, SE, an add, pooling, dropout, the
classifier). A profile holds every layer of its calibration networks timed where it sits, inside
the network: inside one the same kernel took 0.4x to 7x its time alone (its neighbours' cache,
allocator state and working set; docs/speed.md). Within a class, time is a roofline-like sum
fitted to those layers,

    t = a + b * MACs + c * elements moved + d * weights      (convs; others: a + b * elements + c * channels)

with non-negative coefficients (fitted to relative error), times a correction read off the layers
timed at the same batch nearest in log(channels in, out), log(pixels) and, for k x k convs (one fit
per kernel size and stride), log(group size): how far the fit was from them. Between two timed
batches the corrections are interpolated in log batch. The network's time is the sum of its
nodes' times, corrected by a fit of the calibration networks' whole steps (the Python between
layers, the step's own overhead). On a GPU a layer's time in a network is the device's timeline
between its boundaries, idle gaps while the host enqueues included. images/s is batch / time.

Pure Python: no torch, no numpy, so that `stats --profile`, `sweep` and `search` rank designs as
fast as they cost them.
"""

from __future__ import annotations

import heapq
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Literal, Optional, Union

import networkx as nx
from pydantic import Field, PrivateAttr, ValidationError, model_validator

from . import norms
from .errors import SpecError, format_path
from .graph import Node, StageKey, build_graph, layers
from .kernels import CONVS, GROUPS, Kernel
from .reader import PROFILE, read_json
from .resolve import resolve
from .spec import load_spec
from .validation import Strict

FORMAT = "archspec-profile"
Mode = Literal["infer", "train"]
NEIGHBOURS = 4  # measurements the correction is read from
GROUP_WEIGHT = 4.0  # how far apart two group sizes are for the correction, against channels and pixels
# batches beyond the largest calibrated one by more than this factor are not predicted: the
# calibration says nothing about them
EXTRAPOLATION = 2
# a profile whose calibration networks' timings spread more than this (interquartile range over
# the median) was measured on a machine too busy to trust
NOISY = 0.10
# what the predictor can no longer stand behind in an older profile, by format version
OUTDATED = {
    1: "a profile without calibration networks",
    2: "a profile timed with the system allocator, which archspec no longer runs with",
    3: "a profile of kernels timed alone, which the predictor no longer reads",
}


class Peaks(Strict):
    gflops: float = Field(gt=0, description="Measured peak compute (a large matrix product).")
    gbps: float = Field(gt=0, description="Measured memory bandwidth (a large copy, read + write).")


class Entry(Strict):
    """One layer of a calibration network, timed in the network: its kernel class, its shape, the
    batch and its seconds per call (forward; forward + backward for `train_s`)."""

    kind: Kernel = Field(strict=False)  # a name in the file
    variant: str = Field("", max_length=16)  # norm type, activation function
    channels: int = Field(ge=1)
    out_channels: int = Field(0, ge=0)
    kernel: int = Field(1, ge=1)
    stride: int = Field(1, ge=1)
    group_size: int = Field(1, ge=1)
    size: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    # a residual add is one kernel class in inference and another (drop-path) in training
    infer_s: Optional[float] = Field(None, gt=0)
    train_s: Optional[float] = Field(None, gt=0)

    @model_validator(mode="after")
    def _timed(self) -> Entry:
        if self.infer_s is None and self.train_s is None:
            raise ValueError("an entry needs infer_s or train_s")
        return self


class Network(Strict):
    """One calibration network: the spec it was built from and its measured seconds per batch."""

    source: str = Field(max_length=4096)
    spec: dict[str, Any]
    batch_size: int = Field(ge=1)
    infer_s: float = Field(gt=0)
    infer_spread: float = Field(ge=0)
    train_s: Optional[float] = Field(None, gt=0)
    train_spread: Optional[float] = Field(None, ge=0)


class Profile(Strict):
    """A device profile as `archspec profile` writes it."""

    format: Literal["archspec-profile"]
    version: Literal[4]
    device: str
    dtype: Literal["fp32", "bf16", "fp16"]
    batch_size: int = Field(ge=1)
    channels_last: bool
    train: bool
    torch: str
    threads: int = Field(ge=1)
    machine: dict[str, Union[str, int, float]]
    created: str
    allocator: str
    seconds: float = Field(ge=0)
    peaks: Peaks
    entries: list[Entry] = Field(min_length=1)
    calibration: list[Network] = Field(min_length=1)
    noise: dict[str, float]
    _fits: dict[tuple[Any, ...], _Fit | None] = PrivateAttr(default_factory=dict)
    _conv_keys: dict[str, set[tuple[Any, ...]]] = PrivateAttr(default_factory=dict)
    _by_key: dict[tuple[Any, ...], list[Entry]] = PrivateAttr(default_factory=dict)
    _corrections: dict[str, dict[int, Correction]] = PrivateAttr(default_factory=dict)

    def corrections(self, mode: Mode) -> dict[int, Correction]:
        """The calibration fitted at each batch size the networks were timed at (for `mode`)."""
        if mode not in self._corrections:
            rows: dict[int, list[tuple[dict[str, float], int, float]]] = {}
            graphs: dict[str, nx.DiGraph[str]] = {}
            for n in self.calibration:
                measured = getattr(n, f"{mode}_s", None)
                if measured is None:
                    continue
                key = repr(n.spec)
                g = graphs[key] = graphs.get(key) or build_graph(resolve(load_spec(n.spec)))
                by_group = kernel_seconds_by_group(g, self, n.batch_size, mode)
                nodes = sum(1 for _, d in layers(g) if d["op"] != "input")
                rows.setdefault(n.batch_size, []).append((by_group, nodes, measured))
            self._corrections[mode] = {b: Correction.fit(r) for b, r in rows.items()}
        return self._corrections[mode]

    def fit(self, key: tuple[Any, ...], mode: Mode) -> _Fit | None:
        """The fitted model of one kernel class (key: kind, variant, kernel, stride, 0)."""
        cache = (*key, mode)
        if cache not in self._fits:
            if not self._by_key:
                for e in self.entries:
                    self._by_key.setdefault(_key(e), []).append(e)
            rows = [e for e in self._by_key.get(key, []) if _time(e, mode) is not None]
            self._fits[cache] = _Fit.of(rows, mode) if rows else None
        return self._fits[cache]

    def conv_keys(self, mode: Mode) -> set[tuple[Any, ...]]:
        """The k x k conv classes measured in `mode`."""
        if mode not in self._conv_keys:
            keys = {key for e in self.entries if (key := _key(e))[0] == Kernel.CONV and _time(e, mode) is not None}
            self._conv_keys[mode] = keys
        return self._conv_keys[mode]


def load_profile(path: Union[str, Path]) -> Profile:
    """A profile file, validated; a SpecError (one line, about `profile`) if it is not one."""
    path = Path(path)

    def refuse(message: str) -> SpecError:
        return SpecError(message, parameter="profile", file=str(path))

    data = read_json(path, PROFILE, parameter="profile")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise refuse("not an archspec profile (write one with `archspec profile`)")
    if data.get("version") in OUTDATED:
        raise refuse(f"{OUTDATED[data['version']]} (format version {data['version']}): run `archspec profile` again")
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

    kind: Kernel
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
        if self.kind == Kernel.CONV:
            return (Kernel.CONV, "", self.kernel, self.stride, 0)
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
        if self.kind == Kernel.LINEAR:
            return (1.0, self.batch * self.cin * self.cout, self.cin * self.cout)
        return (1.0, pixels_in * self.cin, self.cin)

    def coords(self) -> tuple[float, ...]:
        """Where the layer sits among others at its batch, for the correction: log channels in and
        out, log pixels per image."""
        pixels = self.out_pixels // self.batch
        where = (math.log(self.cin), math.log(max(self.cout, 1)), math.log(pixels))
        return (*where, GROUP_WEIGHT * math.log(self.group_size)) if self.kind == Kernel.CONV else where


def _entry_shape(e: Entry) -> Shape:
    kind = e.kind
    out = e.out_channels if kind in CONVS | {Kernel.LINEAR} else e.channels
    return Shape(kind, e.variant, e.channels, out, e.kernel, e.stride, e.group_size, e.size, e.size, e.batch_size)


def shape_entry(shape: Shape) -> dict[str, Any]:
    """A layer's shape as a profile entry's fields (`archspec profile` writes them)."""
    fields = ("variant", "kernel", "stride", "group_size")
    out = {"kind": shape.kind.value, **{f: getattr(shape, f) for f in fields}}
    return out | {"channels": shape.cin, "out_channels": shape.cout, "size": shape.height, "batch_size": shape.batch}


def _key(e: Entry) -> tuple[Any, ...]:
    return _entry_shape(e).key


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
    """One kernel class: the fitted coefficients, and at each batch it was timed at, each layer's
    position and how far the fit was from it (log of measured / fitted)."""

    coef: list[float]
    points: dict[int, list[tuple[tuple[float, ...], float]]] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: list[Entry], mode: Mode) -> _Fit:
        shapes = [_entry_shape(e) for e in rows]
        times = [t for e in rows if (t := _time(e, mode)) is not None]
        coef = nnls_relative([s.features() for s in shapes], times)
        fit = cls(coef)
        # layers of one shape (a stage's repeated blocks, networks alike in a stage) are one point,
        # at their median residual: no one of them stands for the others
        same: dict[tuple[int, tuple[float, ...]], list[float]] = {}
        for s, t in zip(shapes, times):
            same.setdefault((s.batch, s.coords()), []).append(math.log(t / fit.base(s)))
        for (batch, coords), residuals in same.items():
            fit.points.setdefault(batch, []).append((coords, statistics.median(residuals)))
        return fit

    def base(self, shape: Shape) -> float:
        return max(sum(c * f for c, f in zip(self.coef, shape.features())), 1e-9)

    def residual(self, coords: tuple[float, ...], batch: int) -> float:
        """The inverse-distance-weighted residual of the layers nearest `coords` timed at `batch`."""
        near = heapq.nsmallest(NEIGHBOURS, ((math.dist(coords, p), r) for p, r in self.points[batch]))
        if near[0][0] < 1e-9:
            return near[0][1]
        weights = [1 / d**2 for d, _ in near]
        return sum(w * r for w, (_, r) in zip(weights, near)) / sum(weights)

    def __call__(self, shape: Shape) -> float:
        """The fit at `shape`, corrected by the residuals of the nearest layers timed at the same
        batch; between two timed batches, the two corrections interpolated in log batch."""
        q = shape.coords()
        lo = max((b for b in self.points if b <= shape.batch), default=min(self.points))
        hi = min((b for b in self.points if b >= shape.batch), default=max(self.points))
        correction = self.residual(q, lo)
        if hi != lo:
            w = math.log(shape.batch / lo) / math.log(hi / lo)
            correction = (1 - w) * correction + w * self.residual(q, hi)
        return self.base(shape) * math.exp(correction)


# ---------------------------------------------------------------------------------------------
# the IR's nodes as kernel classes, and their predicted times
# ---------------------------------------------------------------------------------------------


def node_shapes(d: Node, batch: int, mode: Mode) -> list[Shape]:
    """The kernel classes one IR node runs (a proxy-normalized norm runs two; input runs none)."""
    op = d["op"]
    c, *hw = d["in_shape"] or (1,)
    h, w = (hw[0], hw[1]) if len(hw) == 2 else (1, 1)

    def shape(kind: Kernel, variant: str = "", cin: int = c, cout: int = c) -> Shape:
        return Shape(kind, variant, cin, cout, 1, 1, 1, h, w, batch)

    if d["op"] == "conv":
        dense = d["kernel"] == 1 and d["groups"] == 1
        kind = Kernel.STEM if d["role"] == "stem" else Kernel.CONV1X1 if dense else Kernel.CONV
        cin, cout = d["in_channels"], d["out_channels"]
        return [Shape(kind, "", cin, cout, d["kernel"], d["stride"], d["group_size"], h, w, batch)]
    if d["op"] == "norm":
        pn = [shape(Kernel.PN, d["activation"] or "")] if d["proxy"] else []
        return [shape(Kernel.NORM, norms.kind(d["norm"]).kernel_class), *pn]
    if d["op"] == "linear":
        return [shape(Kernel.LINEAR, cin=d["in_features"], cout=d["out_features"])]
    if d["op"] == "act":
        return [shape(Kernel.ACT, d["function"])]
    if d["op"] == "add":
        dropped = mode.startswith("train") and d["drop_path"] > 0
        return [shape(Kernel.DROPPATH_ADD if dropped else Kernel.ADD)]
    if op in ("se", "pool", "dropout"):
        return [shape(Kernel(op))]
    return []


def _nearest(options: set[int], value: int) -> int:
    return min(options, key=lambda o: (abs(math.log(o / value)), -o))


def kernel_seconds(profile: Profile, shape: Shape, mode: Mode) -> float:
    """Predicted seconds of one kernel-class call."""
    if shape.kind != Kernel.CONV:
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
    fit = profile.fit((Kernel.CONV, "", k, s, 0), mode)
    assert fit is not None
    return fit(shape)


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


GROUP_NAMES = sorted(set(GROUPS.values()))


def _group(d: Node, batch_size: int, mode: Mode) -> str | None:
    shapes = node_shapes(d, batch_size, mode)
    return GROUPS[shapes[0].kind] if shapes else None


@dataclass(frozen=True)
class Correction:
    """What a network's layers, each predicted from the profile's layers, miss of its whole step,
    at one batch size: a factor per group of kernel classes (archspec.kernels.GROUPS), seconds per
    node and seconds per step, fitted to the profile's calibration networks."""

    factors: dict[str, float]
    per_node_s: float
    per_step_s: float

    @classmethod
    def fit(cls, rows: list[tuple[dict[str, float], int, float]]) -> Correction:
        """From (kernel seconds by group, nodes, measured seconds) of each calibration network."""
        xs = [[*(by_group.get(name, 0.0) for name in GROUP_NAMES), nodes, 1.0] for by_group, nodes, _ in rows]
        coef = nnls_relative(xs, [t for *_, t in rows])
        return cls(dict(zip(GROUP_NAMES, coef)), coef[-2], coef[-1])

    @staticmethod
    def between(lo: tuple[int, Correction], hi: tuple[int, Correction], batch: int) -> Correction:
        """Linear in log batch between two calibrated batch sizes."""
        w = math.log(batch / lo[0]) / math.log(hi[0] / lo[0])

        def mix(x: float, y: float) -> float:
            return (1 - w) * x + w * y

        a, b = lo[1], hi[1]
        factors = {k: mix(a.factors[k], b.factors[k]) for k in a.factors}
        return Correction(factors, mix(a.per_node_s, b.per_node_s), mix(a.per_step_s, b.per_step_s))


def kernel_seconds_by_group(g: nx.DiGraph[str], profile: Profile, batch_size: int, mode: Mode) -> dict[str, float]:
    """A network's layers' predicted seconds (before the calibration) summed by group."""
    out: dict[str, float] = {}
    layer_s = node_seconds(g, profile, batch_size, mode)
    for name, d in layers(g):
        if (group := _group(d, batch_size, mode)) is not None:
            out[group] = out.get(group, 0.0) + layer_s[name]
    return out


def calibrated_range(profile: Profile, mode: Mode) -> tuple[float, float]:
    """The batch sizes the profile predicts `mode` at: those its networks were timed at, and
    EXTRAPOLATION times beyond them either way (never below 1)."""
    sizes = sorted(profile.corrections(mode))
    if not sizes:
        raise SpecError(f"the profile's calibration networks have no {mode} times", parameter="profile")
    return max(1.0, sizes[0] / EXTRAPOLATION), sizes[-1] * EXTRAPOLATION


def correction(profile: Profile, batch_size: int, mode: Mode) -> Correction:
    """The calibration at `batch_size`: fitted at each batch size the profile's networks were timed
    at, interpolated between them, the nearest one's a little beyond; a SpecError further out."""
    lo_limit, hi_limit = calibrated_range(profile, mode)
    fitted = profile.corrections(mode)
    sizes = sorted(fitted)
    if not lo_limit <= batch_size <= hi_limit:
        raise SpecError(
            f"batch {batch_size} is outside what the profile was calibrated for (batch {sizes[0]} to "
            f"{sizes[-1]}, predicted from {lo_limit:g} up to {hi_limit:g}); profile with --batch-size {batch_size}",
            parameter="batch_size",
        )
    lo = max((b for b in sizes if b <= batch_size), default=sizes[0])
    hi = min((b for b in sizes if b >= batch_size), default=sizes[-1])
    return fitted[lo] if lo == hi else Correction.between((lo, fitted[lo]), (hi, fitted[hi]), batch_size)


def network_seconds(g: nx.DiGraph[str], profile: Profile, batch_size: int, mode: Mode) -> dict[str, float]:
    """Each node's share of a batch's predicted time (the step's own overhead, once, goes to its
    first node): its layers' time in networks, corrected by the profile's calibration."""
    fix = correction(profile, batch_size, mode)
    layer_s = node_seconds(g, profile, batch_size, mode)
    out = {}
    for i, (name, d) in enumerate((n, d) for n, d in layers(g) if n in layer_s):
        group = _group(d, batch_size, mode)
        t = (fix.factors[group] * layer_s[name] + fix.per_node_s) if group is not None else 0.0
        out[name] = t + (fix.per_step_s if i == 0 else 0.0)
    return out


def predict(g: nx.DiGraph[str], profile: Profile, batch_size: int) -> Prediction:
    """Predicted speed of the network `g` at its resolution on the profile's device."""
    if not 1 <= batch_size <= 1 << 20:
        raise SpecError(f"must be from 1 to {1 << 20}, got {batch_size}", parameter="batch_size")
    infer = network_seconds(g, profile, batch_size, "infer")
    # training is timed whole at the profile's batch only: a batch far below it has no prediction
    trainable = profile.train and calibrated_range(profile, "train")[0] <= batch_size
    train = network_seconds(g, profile, batch_size, "train") if trainable else None
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


def calibration_summary(profile: Profile) -> dict[str, Any]:
    """Which networks calibrated the profile, at which batch sizes, and how quiet the machine was."""
    sources: dict[str, int] = {}
    for n in profile.calibration:
        if n.batch_size == min(m.batch_size for m in profile.calibration):
            sources[n.source] = sources.get(n.source, 0) + 1
    return {
        "networks": sum(sources.values()),
        "sources": sources,
        "batch_sizes": sorted({n.batch_size for n in profile.calibration}),
        "noise": profile.noise,
    }


def run_threads() -> int:
    """The threads a torch run here would use: OMP_NUM_THREADS, else torch's own count where torch
    is loaded already, else the CPUs this process may run on (torch is not imported for this)."""
    import os
    import sys

    if (env := os.environ.get("OMP_NUM_THREADS", "")).isdigit() and int(env) > 0:
        return int(env)
    if "torch" in sys.modules:
        return int(sys.modules["torch"].get_num_threads())
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def warnings_for(profile: Profile) -> list[str]:
    """What makes a prediction from this profile doubtful here, one line each."""
    out = []
    if profile.device == "cpu" and profile.threads != (threads := run_threads()):
        measured = f"{profile.threads} thread{'s' * (profile.threads != 1)}"
        out.append(f"the profile was measured with {measured}, a run here uses {threads}")
    if profile.noise.get("networks", 0.0) > NOISY:
        out.append(
            f"the machine was noisy while profiling (calibration timings spread {profile.noise['networks']:.0%}); "
            "profile again on a quieter machine"
        )
    return out


def speed_report(g: nx.DiGraph[str], profile: Union[str, Path], batch_size: int | None = None) -> dict[str, Any]:
    """`stats --profile`: the prediction at `batch_size` (default: the profile's) as plain data."""
    loaded = load_profile(profile)
    result = predict(g, loaded, batch_size or loaded.batch_size).as_dict()
    return {
        "profile": str(profile),
        **result,
        "calibration": calibration_summary(loaded),
        "warnings": warnings_for(loaded),
    }
