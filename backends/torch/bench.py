"""`archspec bench`: measured throughput of a compiled model (images/s), optionally against timm."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Optional

import networkx as nx
import torch
import torch.nn.functional as F
from torch import nn

from archspec import norms
from archspec.cost import arithmetic_intensity
from archspec.graph import Node, build_graph, info, layers
from archspec.presets import B0_STAGES, SCALING
from archspec.resolve import ResolvedSpec

from .allocator import keep_freed_memory
from .fast import FastPaths, check, prepare, require_device, to_memory_format

EAGER = FastPaths()


def _inputs(
    model: nn.Module,
    device: str,
    batch: int,
    resolution: int,
    train: bool,
    in_channels: int,
    classes: int,
    paths: FastPaths = EAGER,
) -> tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor, int]:
    """The model on `device` in train or eval mode with the fast paths applied, as (the module, what
    to call, BN layers folded), a random batch in the model's memory format, and labels."""
    model = model.to(device).train(train)
    model, run, folded = prepare(model, paths, device)
    x = to_memory_format(torch.randn(batch, in_channels, resolution, resolution, device=device), paths.channels_last)
    return model, run, x, torch.randint(0, classes, (batch,), device=device), folded


# what a step computes in: bf16 autocast on a GPU, fp32 on a CPU
STEP_DTYPE = {"cpu": "fp32", "cuda": "bf16"}


def _step(model: nn.Module, run: Callable[..., Any], x: torch.Tensor, y: torch.Tensor, train: bool) -> None:
    """One inference batch, or one training step without the optimizer: forward, cross-entropy,
    backward, zero_grad (bf16 autocast on a GPU)."""
    gpu = x.device.type == "cuda"
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=gpu), torch.set_grad_enabled(train):
        logits = run(x)
        if train:
            F.cross_entropy(logits.float(), y).backward()
    if train:
        model.zero_grad(set_to_none=True)


def _timed(fn: Any, device: str, clock: Callable[[], float] = time.perf_counter) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = clock()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return clock() - t0


WARMUP_STEPS = 2  # after the first batch (which compiles, with --compile), untimed


@dataclass
class _Contestant:
    """One model as `bench` times it: prepared once, then stepped in turn with the others."""

    model: nn.Module
    run: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    folded: int
    first_s: float = 0.0
    times: list[float] = field(default_factory=list)

    def once(self, device: str, train: bool) -> float:
        return _timed(lambda: _step(self.model, self.run, self.x, self.y, train), device)

    def summary(self, batch: int) -> dict[str, float]:
        median = statistics.median(self.times)
        return {
            "seconds_per_batch": median,
            "images_per_s": batch / median,
            "first_batch_s": self.first_s,
            # the spread of the timed batches: interquartile range over the median
            "spread": _iqr(self.times) / median,
        }


def _iqr(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q3 - q1


def interleaved(
    models: dict[str, nn.Module],
    device: str,
    batch: int,
    resolution: int,
    train: bool,
    paths: FastPaths,
    steps: int,
    in_channels: int = 3,
    classes: int = 1000,
    paths_of: Optional[dict[str, FastPaths]] = None,
) -> dict[str, _Contestant]:
    """Every model timed over `steps` batches, taken in turn (A B B A A B ...) so that each sees
    the same machine: on a shared, noisy one the ratio of neighbouring batches is what can be trusted,
    not two runs minutes apart. Each model first runs one batch (it compiles, with --compile) and
    WARMUP_STEPS more, untimed. `paths_of`: a model's own fast paths (one network in several modes)."""
    contestants = {}
    for name, model in models.items():
        own = (paths_of or {}).get(name, paths)
        m, run, x, y, folded = _inputs(model, device, batch, resolution, train, in_channels, classes, own)
        contestants[name] = _Contestant(m, run, x, y, folded)
    for c in contestants.values():
        c.first_s = c.once(device, train)
        for _ in range(WARMUP_STEPS):
            c.once(device, train)
    order = list(contestants.values())
    for i in range(steps):
        # A B, then B A: neither model always runs right after the other (the cache and allocator
        # state one batch leaves the next), so an order effect cancels instead of biasing the ratio
        for c in order if i % 2 == 0 else order[::-1]:
            c.times.append(c.once(device, train))
    return contestants


def _timm_norm_layer(res: ResolvedSpec) -> Any:
    """timm's norm + act layer for the spec's norm, as its kind names it (BN, GN of the spec's group
    count, LN as timm's GroupNorm1Act, FRN + TLU); None for proxy norm or a kind timm lacks."""
    import timm.layers

    norm = res.norm
    if norm.proxy or norm.kind.timm is None:
        return None
    layer = norms.NormLayer(0, norm.kind.groups(norm.groups, 0), norm.eps, norm.momentum, norm.pn_eps, None)
    name, kwargs = norm.kind.timm(layer)
    return partial(getattr(timm.layers, name), **kwargs)


def _drop_path_rate(res: ResolvedSpec) -> float:
    """The spec's drop-path rate: block i of N drops with rate * i / N, in archspec as in timm."""
    n = len(res.blocks)
    return res.blocks[-1].drop_path * n / (n - 1) if n > 1 else 0.0


def _timm_efficientnet(res: ResolvedSpec, norm_layer: Any) -> nn.Module:
    """timm's EfficientNet class built from the preset's stage table in timm's block notation,
    with the spec's expansion ratio, group size, norm, dropout and drop path (timm's presets fix
    E = 6 and BN), so that training steps do the same work."""
    from timm.models._efficientnet_builder import decode_arch_def, round_channels
    from timm.models.efficientnet import EfficientNet

    assert res.preset is not None
    width, depth = SCALING[res.preset][:2]
    expansion = res.expansion_ratio or 6
    arch_def = [
        [f"ds_r{r}_k{k}_s{s}_e1_c{c}_se{se}" if e == 1 else f"ir_r{r}_k{k}_s{s}_e{expansion:g}_c{c}_se{se}"]
        for _, r, k, s, e, c, se in B0_STAGES
    ]
    group_size = res.group_size if res.group_size > 1 else None
    round_chs = partial(round_channels, multiplier=width, divisor=8)
    return EfficientNet(
        block_args=decode_arch_def(arch_def, depth, group_size=group_size),
        num_features=round_chs(1280),
        stem_size=32,
        round_chs_fn=round_chs,
        act_layer=nn.SiLU,
        norm_layer=norm_layer,
        num_classes=res.num_classes,
        drop_rate=res.dropout,
        drop_path_rate=_drop_path_rate(res),
    )


def timm_equivalent(res: ResolvedSpec, params: int) -> tuple[Optional[nn.Module], str]:
    """timm's EfficientNet for the spec's preset, expansion ratio, group size and norm (BN, GN or
    LN), if it is the same network: SiLU, 3 inputs, and the same parameters."""
    if res.preset not in SCALING:  # the B0 stage table is what it rebuilds timm's network from
        return None, "the spec has no EfficientNet B0-B7 preset base"
    name = res.preset.replace("-", "_")
    norm_layer = _timm_norm_layer(res)
    differs = [
        what
        for what, same in (
            (f"norm {res.norm.type}", norm_layer is not None),
            ("activation", res.activation == "silu"),
            ("input channels", res.in_channels == 3),
        )
        if not same
    ]
    if differs:
        return None, f"timm's {name} is not the same network ({', '.join(differs)}: timm has no such option)"
    model = _timm_efficientnet(res, norm_layer)
    theirs = sum(p.numel() for p in model.parameters())
    described = f"{name} (group_size={res.group_size}, E={res.expansion_ratio or 6:g}, {res.norm.type})"
    if theirs != params:
        return None, (
            f"timm's {described} has {theirs:,} parameters, this spec {params:,}: not the same network "
            "(timm rounds group sizes and mid channels its own way)"
        )
    return model, f"timm {described}"


def _ratio(ours: list[float], theirs: list[float]) -> dict[str, float]:
    """archspec's speed over timm's, pair by pair (neighbours in time): the median and the
    quartiles of the per-pair ratios."""
    ratios = sorted(t / o for o, t in zip(ours, theirs))
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else (ratios[0],) * 3
    return {"median": statistics.median(ratios), "q1": q1, "q3": q3, "min": ratios[0], "max": ratios[-1]}


def bench(
    res: ResolvedSpec,
    device: str,
    batch: int,
    resolution: int | str | None,
    train: bool,
    paths: FastPaths,
    vs_timm: bool,
    steps: int,
) -> dict[str, Any]:
    """Images/s of the spec's model at `resolution` (pixels, native, half or train) with the fast
    paths asked for, and of timm's equivalent in the same mode if asked, timed in turn."""
    from .model import model_from_graph

    require_device(device)
    check(paths, device, train)
    resolution = res.resolution.pick(resolution)
    model = model_from_graph(build_graph(res))
    params = sum(p.numel() for p in model.parameters())
    models: dict[str, nn.Module] = {"archspec": model}
    note = None
    if vs_timm:
        reference, note = timm_equivalent(res, params)
        if reference is not None:
            models["timm"] = reference
    timed = interleaved(models, device, batch, resolution, train, paths, steps, res.in_channels, res.num_classes)
    result: dict[str, Any] = {
        "name": res.name,
        "device": device,
        "batch_size": batch,
        "resolution": resolution,
        "mode": "train" if train else "inference",
        "compiled": paths.compiled,
        "channels_last": paths.channels_last,
        "fold": paths.fold,
        "fast_paths": paths.describe(),
        "allocator": keep_freed_memory() if device == "cpu" else "torch's CUDA caching allocator",
        "steps": steps,
        "params": params,
        **{name: c.summary(batch) for name, c in timed.items()},
    }
    if paths.fold:
        result["folded"] = {name: c.folded for name, c in timed.items()}
    if note is not None:
        result["timm_note"] = note
    if "timm" in timed:
        result["ratio"] = _ratio(timed["archspec"].times, timed["timm"].times)
    return result


# ---------------------------------------------------------------------------------------------
# bench --per-layer: the time of every IR node, under the IR's names
# ---------------------------------------------------------------------------------------------

# The per-layer times are read at module boundaries inside a step, so they leave out only the
# Python between modules, the loss and zero_grad: they must add up to the step they were timed in
# to within this fraction (docs/speed.md; tests/test_speed.py checks it on a small spec).
SUM_TOLERANCE = 0.10
NodeTimes = dict[str, tuple[float, float, float]]


class _Clock:
    """Timestamps at module boundaries: perf_counter on a CPU (hooks run in step with the work);
    CUDA events on a GPU, recorded in the stream without synchronising, so that host and device
    overlap as in a plain step and the intervals between events partition the device's timeline."""

    def __init__(self, device: str, clock: Callable[[], float] = time.perf_counter) -> None:
        self.gpu = device == "cuda"
        self.clock = clock

    def mark(self) -> Any:
        if not self.gpu:
            return self.clock()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def seconds(self, start: Any, end: Any) -> float:
        return start.elapsed_time(end) / 1e3 if self.gpu else end - start


class _Marks:
    """Hooks that timestamp the start and end of each module's forward and backward."""

    def __init__(self, model: nn.Module, paths: list[str], clock: _Clock, backward: bool) -> None:
        self.clock = clock
        self.paths = set(paths)
        self.at: dict[tuple[str, str], Any] = {}
        self.order: list[tuple[str, str]] = []  # the marks in the order they were taken
        self.handles: list[Any] = []
        modules = dict(model.named_modules())
        for path in paths:
            m = modules[path]
            self.handles += [
                m.register_forward_pre_hook(self._hook(path, "fwd0")),
                m.register_forward_hook(self._hook(path, "fwd1")),
            ]
            if backward:
                self.handles += [
                    m.register_full_backward_pre_hook(self._hook(path, "bwd0")),
                    m.register_full_backward_hook(self._hook(path, "bwd1")),
                ]

    def _hook(self, path: str, what: str) -> Any:
        def hook(*_: Any) -> None:
            self.at[(path, what)] = self.clock.mark()
            self.order.append((path, what))

        return hook

    def span(self, a: tuple[str, str], b: tuple[str, str]) -> float:
        return self.clock.seconds(self.at[a], self.at[b])

    def own_times(self) -> dict[tuple[str, str], float]:
        """Every module's own forward and backward seconds, the intervals between consecutive
        marks partitioned among them: time inside a module and outside its hooked children is
        its own; time between two modules (Python, hooks, unhooked glue) goes to the one that
        starts next. So the per-node times add up to the step from its first mark to its last."""
        own: dict[tuple[str, str], float] = {}
        open_: list[str] = []
        for previous, mark in zip(self.order, self.order[1:]):
            path, what = mark
            starts = what.endswith("0")
            owner = open_[-1] if open_ else path
            if not starts and owner != path and path in open_:  # out of order: close up to it
                owner = path
            key = (owner, what[:3])
            own[key] = own.get(key, 0.0) + self.span(previous, mark)
            if starts:
                open_.append(path)
            elif path in open_:
                del open_[len(open_) - 1 - open_[::-1].index(path) :]
        return own

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _hooked_paths(g: nx.DiGraph[str]) -> list[str]:
    """Every module whose boundaries time an IR node: the nodes' own modules, and for a residual
    add its block (the add runs in the block's forward, after its drop-path layer)."""
    paths: list[str] = []
    for _, d in layers(g):
        if d["module"] is not None:
            paths.append(d["module"])
        if d["op"] == "add":
            paths.append(d["unit"])
    return paths


def _node_times(g: nx.DiGraph[str], marks: _Marks, backward: bool) -> NodeTimes:
    """(forward, backward, proxy-norm part of both) seconds of every IR node in one step: its
    module's own time (a residual add: its drop-path layer's and its block's glue); a norm's
    activation is a child module, timed as its own node, and what the norm does after it is
    proxy normalization."""
    own = marks.own_times()
    out: NodeTimes = {}
    for name, d in layers(g):
        m = d["module"]
        if m is None or m not in marks.paths:
            continue
        paths = (m, d["unit"]) if d["op"] == "add" else (m,)
        fwd = sum(own.get((p, "fwd"), 0.0) for p in paths)
        bwd = sum(own.get((p, "bwd"), 0.0) for p in paths) if backward else 0.0
        pn = 0.0
        if d["op"] == "norm" and d["activation"] is not None and d["proxy"]:
            act = f"{m}.act"
            pn = marks.span((act, "fwd1"), (m, "fwd1"))
            pn += marks.span((m, "bwd0"), (act, "bwd0")) if backward else 0.0
        out[name] = (fwd, bwd, pn)
    return out


def _layer_step(
    g: nx.DiGraph[str],
    model: nn.Module,
    hooked: list[str],
    x: torch.Tensor,
    y: torch.Tensor,
    train: bool,
    clock: Callable[[], float],
) -> tuple[NodeTimes, float]:
    """One step with every module's boundaries timestamped: per-node times, and the step's time."""
    device = x.device.type
    marks = _Marks(model, hooked, _Clock(device, clock), backward=train)
    try:
        wall = _timed(lambda: _step(model, model, x, y, train), device, clock)
        return _node_times(g, marks, train), wall
    finally:
        marks.remove()


@dataclass
class LayerTimes:
    nodes: NodeTimes  # median (forward, backward, proxy-norm part) seconds of every node
    plain_s: list[float]  # steps without hooks
    hooked_s: list[float]  # the timed steps
    sums_s: list[float]  # each timed step's per-node times, summed


def _out_of_place(model: nn.Module, paths: list[str]) -> None:
    """A backward hook wraps its module's input in a view that an in-place activation may not
    change; with backward hooks, the hooked activations run out of place (docs/speed.md)."""
    modules = dict(model.named_modules())
    for path in paths:
        if getattr(modules[path], "inplace", False):
            modules[path].inplace = False


def layer_times(
    g: nx.DiGraph[str],
    device: str,
    batch: int,
    train: bool,
    steps: int,
    clock: Callable[[], float] = time.perf_counter,
    model: Optional[nn.Module] = None,
    warmup: int = 2,
) -> LayerTimes:
    """Every IR node's time over `steps` timed steps, and plain steps taken alternately so that
    both see the same machine. `clock` times a CPU (wall time; a thread's CPU time on a shared
    machine, benchmarks/). `model`: another implementation of the same network whose modules
    carry the IR's names (timm's EfficientNet); nodes it has no module for are left out. `warmup`:
    plain and timed steps taken first, untimed."""
    from .model import model_from_graph

    res = info(g)["resolved"]
    model = model_from_graph(g, seed=0) if model is None else model
    paths = FastPaths(channels_last=device == "cuda")  # as the runner trains on a GPU
    model, _, x, y, _ = _inputs(
        model, device, batch, info(g)["resolution"][0], train, res.in_channels, res.num_classes, paths
    )
    names = dict(model.named_modules())
    hooked = [p for p in _hooked_paths(g) if p in names]
    if train:
        _out_of_place(model, hooked)
    # the image takes a gradient too, so that the stem's backward ends with a hook like every other layer's
    x.requires_grad_(train)
    for _ in range(warmup):
        _step(model, model, x, y, train)
        _layer_step(g, model, hooked, x, y, train, clock)
    out = LayerTimes({}, [], [], [])
    samples = []
    for _ in range(steps):
        out.plain_s.append(_timed(lambda: _step(model, model, x, y, train), device, clock))
        nodes, wall = _layer_step(g, model, hooked, x, y, train, clock)
        samples.append(nodes)
        out.hooked_s.append(wall)
        out.sums_s.append(sum(f + b for f, b, _ in nodes.values()))
    out.nodes = {n: tuple(statistics.median(s[n][i] for s in samples) for i in range(3)) for n in samples[0]}  # type: ignore[misc]
    return out


def op_kind(d: Node) -> str:
    """The op kind a node's time is counted under (a proxy norm's PN part goes to "pn")."""
    if d["op"] == "conv":
        return {"spatial": "grouped conv", "stem": "stem conv"}.get(d["role"], "pointwise conv")
    return {"norm": "norm", "act": "activation", "se": "se", "add": "add"}.get(d["op"], "head")


def _work(d: Node, batch: int, element_bytes: int) -> tuple[int, int]:
    """FLOPs and bytes moved of one forward: a conv's bytes per Appendix A (weights + input
    activations), other layers' their parameters, input and output."""
    inputs = math.prod(d["in_shape"]) * batch
    outputs = 0 if d["op"] == "conv" else d["activations"] * batch
    return (2 * d["macs"] + d["elementwise"]) * batch, (d["params"] + inputs + outputs) * element_bytes


def _row(name: str, d: Node, t: tuple[float, float, float], batch: int, element_bytes: int) -> dict[str, Any]:
    flops, moved = _work(d, batch, element_bytes)
    fwd, bwd, pn = t
    return {
        "name": name,
        "op": d["op"],
        "kind": op_kind(d),
        "stage": d["stage"],
        "macs": d["macs"] * batch,
        "flops": flops,
        "bytes": moved,
        "flop_per_byte": flops / moved if moved else 0.0,
        "intensity": arithmetic_intensity(d, batch) if d["op"] == "conv" else None,
        "forward_s": fwd,
        "backward_s": bwd,
        "pn_s": pn,
        "gflops": flops / fwd / 1e9 if fwd > 0 else 0.0,
    }


def _shares(rows: list[dict[str, Any]], train: bool) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Time, MACs and achieved GFLOP/s (forward) per stage; seconds per op kind."""
    stages: dict[Any, dict[str, Any]] = {}
    kinds: dict[str, float] = {}
    for r in rows:
        total = r["forward_s"] + (r["backward_s"] if train else 0.0)
        s = stages.setdefault(r["stage"], {"stage": r["stage"], "time_s": 0.0, "forward_s": 0.0, "flops": 0})
        s["time_s"] += total
        s["forward_s"] += r["forward_s"]
        s["flops"] += r["flops"] if r["macs"] else 0
        kinds[r["kind"]] = kinds.get(r["kind"], 0.0) + total - r["pn_s"]
        if r["pn_s"]:
            kinds["pn"] = kinds.get("pn", 0.0) + r["pn_s"]
    for s in stages.values():
        s["gflops"] = s["flops"] / s["forward_s"] / 1e9 if s["forward_s"] else 0.0
    return list(stages.values()), kinds


def per_layer(
    res: ResolvedSpec,
    device: str,
    batch: int,
    resolution: int | str | None,
    train: bool,
    steps: int,
    clock: Callable[[], float] = time.perf_counter,
    vs_timm: bool = False,
) -> dict[str, Any]:
    """`bench --per-layer`: the measured time of every IR node joined with its MACs, bytes moved
    and arithmetic intensity; per-stage and per-op-kind sums; the device's peaks; and how the
    per-layer sum compares with the plain step's time. With `vs_timm`, timm's equivalent network
    is timed under the same IR names, node by node, to show where the two differ."""
    from .model import model_from_graph
    from .timing import peaks

    require_device(device)
    g = build_graph(res, res.resolution.pick(resolution))
    t = layer_times(g, device, batch, train, steps, clock)
    element_bytes = 2 if device == "cuda" else 4  # bf16 autocast on a GPU
    rows = [_row(name, d, t.nodes[name], batch, element_bytes) for name, d in layers(g) if name in t.nodes]
    stages, kinds = _shares(rows, train)
    step = statistics.median(t.plain_s)
    summed = sum(r["forward_s"] + r["backward_s"] for r in rows)
    out = {
        "name": res.name,
        "device": device,
        "batch_size": batch,
        "resolution": info(g)["resolution"][0],
        "mode": "train" if train else "inference",
        "steps": steps,
        "step_s": step,
        "images_per_s": batch / step,
        "layers_s": summed,
        # the check: each timed step's per-node times against that step's own time
        "sum_ratio": statistics.median(a / b for a, b in zip(t.sums_s, t.hooked_s)),
        "tolerance": SUM_TOLERANCE,
        "hooked_step_s": statistics.median(t.hooked_s),
        "hook_overhead": statistics.median(t.hooked_s) / step - 1,
        "rows": rows,
        "stages": stages,
        "kinds": {k: {"time_s": v, "share": v / summed} for k, v in kinds.items()},
        "peaks": peaks(device, STEP_DTYPE[device]),
    }
    if vs_timm:
        params = sum(p.numel() for p in model_from_graph(g).parameters())
        reference, out["timm_note"] = timm_equivalent(res, params)
        if reference is not None:
            out["timm"] = _timm_layers(g, rows, reference, device, batch, train, steps, clock)
    return out


def _timm_layers(
    g: nx.DiGraph[str],
    rows: list[dict[str, Any]],
    reference: nn.Module,
    device: str,
    batch: int,
    train: bool,
    steps: int,
    clock: Callable[[], float],
) -> dict[str, Any]:
    """timm's per-node times beside archspec's rows (each row gains timm_forward_s and
    timm_backward_s), their sums per op kind, and timm's plain step."""
    theirs = layer_times(g, device, batch, train, steps, clock, model=reference)
    kinds: dict[str, dict[str, float]] = {}
    for r in rows:
        fwd, bwd, _ = theirs.nodes.get(r["name"], (math.nan, math.nan, 0.0))
        r["timm_forward_s"], r["timm_backward_s"] = fwd, bwd
        if math.isnan(fwd):
            continue
        k = kinds.setdefault(r["kind"], {"archspec_s": 0.0, "timm_s": 0.0})
        k["archspec_s"] += r["forward_s"] + r["backward_s"]
        k["timm_s"] += fwd + bwd
    step = statistics.median(theirs.plain_s)
    return {"step_s": step, "images_per_s": batch / step, "kinds": kinds}
