"""`archspec profile`: how fast this device runs the kernel classes archspec networks are made of.

Every IR node is one of a few kernel classes: a k x k conv with some group size and stride, a 1x1
conv, the stem conv, a normalization (BN, GN, LN), the proxy-normalization part of a norm layer, an
activation, squeeze-excite, a residual add (with drop-path when training), global pooling, dropout
and the classifier. `profile` times each class's own torch module (the very layers the model
builder uses) over a grid of channel counts and spatial sizes spanning what EfficientNets from
64 to 380+ px contain, forward (eval mode, no grad) and forward + backward (train mode), and
writes the times with the machine they came from. `archspec.predict` reads the file; it never
imports torch.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.ops import StochasticDepth

from archspec import norms
from archspec.api import as_graph
from archspec.atomic import write_text
from archspec.calibration import default_specs
from archspec.errors import SpecError
from archspec.graph import info
from archspec.kernels import CONVS, Kernel

from .allocator import keep_freed_memory
from .bench import _inputs, _step
from .fast import FastPaths, require_device
from .layers import GlobalPool, SqueezeExcite
from .norms import ProxyNormAct, make_activation, norm_act
from .timing import Clock, autocast, peaks, spread, timed

FORMAT = "archspec-profile"
VERSION = 3  # 3: timed with the allocator that keeps freed memory (module allocator)

# (channels, input size) of the grid: channel counts divisible by every group size up to 64 from
# 64 on, sizes from a 380 px network's stem output down to a 64 px network's last stage, keeping
# the pairs whose per-image activation (C x H x W) lies where a network's layers do.
CHANNELS = (16, 32, 64, 128, 256, 512, 1024, 2048)
SIZES = (2, 4, 8, 16, 32, 64, 128, 192)
ACTIVATION_RANGE = (1_000, 2_500_000)
MAX_MACS = 150_000_000  # per image: a larger conv than any layer of the networks a profile is for
GROUP_SIZES = (1, 2, 4, 8, 16, 32, 64)
KERNELS = (3, 5)
ACTIVATIONS = ("silu", "relu", "gelu")
# the norm kernel classes: one per registered norm kind (archspec.norms), plug-ins' included
NORMS = tuple(kind.kernel_class for kind in norms.registry().values())
CLASSES = 1000
# kernels are timed at this batch (or the profile's, if smaller): their time grows in proportion
# beyond it, and the calibration networks, timed at the profile's batch, fit what it misses
KERNEL_BATCH = 4


def shapes(every: int = 1) -> list[tuple[int, int]]:
    """(channels, size) pairs of the grid; `every` > 1 keeps every n-th along each axis."""
    lo, hi = ACTIVATION_RANGE
    return [(c, h) for c in CHANNELS[::every] for h in SIZES[::every] if lo <= c * h * h <= hi]


def grid() -> list[dict[str, Any]]:
    """The default grid: one dict per configuration (its kernel class and shape)."""
    out: list[dict[str, Any]] = []
    for k in KERNELS:
        for stride in (1, 2):
            for g in GROUP_SIZES:
                # stride 2 at odd sizes, where 'same' padding rounds up, so that MACs and elements
                # moved part ways
                for c, h in shapes(2) if stride == 1 else [(c, h + 1) for c, h in shapes(2)]:
                    macs = c * g * k * k * (h // stride) ** 2
                    if g <= c and c % g == 0 and h >= stride and macs <= MAX_MACS:
                        out.append(_conv(c, c, k, stride, g, h))
    for cin, cout in ((16, 64), (64, 16), (32, 32), (64, 256), (256, 64), (256, 1024), (1024, 256), (512, 2048)):
        for c, h in shapes():
            if c == max(cin, cout):
                out.append(_conv(cin, cout, 1, 1, cin, h))  # dense: one group of all the inputs
    for cout in (16, 32, 64):
        for h in (32, 64, 128, 256, 400):
            out.append(_conv(3, cout, 3, 2, 3, h))
    for c, h in shapes(2):
        out += [{"kind": Kernel.NORM, "variant": n, "channels": c, "size": h} for n in NORMS]
        out += [{"kind": Kernel.ACT, "variant": a, "channels": c, "size": h} for a in ACTIVATIONS]
        out += [{"kind": Kernel.PN, "variant": "silu", "channels": c, "size": h}]
        plain = (Kernel.SE, Kernel.ADD, Kernel.DROPPATH_ADD, Kernel.POOL)
        out += [{"kind": k, "variant": "", "channels": c, "size": h} for k in plain]
    # the harness's own cost per call (a module that does nothing): every other entry includes it
    # once, a network's step once in all, so the predictor takes it off each layer
    out += [{"kind": Kernel.CALL, "variant": "", "channels": 16, "size": 8} for _ in range(5)]
    for c in CHANNELS:
        out.append({"kind": Kernel.LINEAR, "variant": "", "channels": c, "out_channels": CLASSES, "size": 1})
        out.append({"kind": Kernel.DROPOUT, "variant": "", "channels": c, "size": 1})
    return out


def _conv(cin: int, cout: int, k: int, stride: int, group_size: int, size: int) -> dict[str, Any]:
    kind = Kernel.CONV1X1 if k == 1 else (Kernel.STEM if cin == group_size and cin != cout else Kernel.CONV)
    return {
        "kind": kind,
        "variant": "",
        "channels": cin,
        "out_channels": cout,
        "kernel": k,
        "stride": stride,
        "group_size": group_size,
        "size": size,
    }


class ProxyPart(nn.Module):
    """What proxy normalization adds to a norm layer: its per-channel moments and the multiply-add
    after the activation (ProxyNormAct.forward's last step), on its own."""

    def __init__(self, channels: int, activation: str) -> None:
        super().__init__()
        self.norm = ProxyNormAct(channels, 1, activation=activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, shift = self.norm.proxy_scale_shift()
        return x * scale.to(x.dtype)[:, None, None] + shift.to(x.dtype)[:, None, None]


class DropPathAdd(nn.Module):
    """A residual add as a block does it: drop-path on the branch (active in training), then add."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.drop_path: nn.Module = StochasticDepth(p, "row") if p > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop_path(x) + x


def _norm_module(channels: int, kernel_class: str) -> nn.Module:
    """A norm kernel class's layer: 4 statistics groups where the kind has groups and they divide
    the channels; with its own activation (FRN's TLU) where it brings one, as the IR times it."""
    kind = next(k for k in norms.registry().values() if k.kernel_class == kernel_class)
    return norm_act(channels, kind.name, num_groups=4 if channels % 4 == 0 else 1, activation=kind.own_activation)


def module_for(cfg: dict[str, Any]) -> tuple[nn.Module, tuple[int, ...]]:
    """The torch module of a configuration, and its per-sample input shape."""
    kind, c, h, v = Kernel(cfg["kind"]), cfg["channels"], cfg["size"], cfg["variant"]
    if kind in CONVS:
        k = cfg["kernel"]
        m: nn.Module = nn.Conv2d(
            c, cfg["out_channels"], k, cfg["stride"], padding=k // 2, groups=c // cfg["group_size"], bias=False
        )
        return m, (c, h, h)
    makers: dict[Kernel, Callable[[], nn.Module]] = {
        Kernel.NORM: lambda: _norm_module(c, v),
        Kernel.ACT: lambda: make_activation(v),
        Kernel.PN: lambda: ProxyPart(c, v),
        Kernel.SE: lambda: SqueezeExcite(c, max(1, c // 16), "silu"),
        Kernel.ADD: lambda: DropPathAdd(0.0),
        Kernel.DROPPATH_ADD: lambda: DropPathAdd(0.1),
        Kernel.POOL: GlobalPool,
        Kernel.LINEAR: lambda: nn.Linear(c, cfg["out_channels"]),
        Kernel.DROPOUT: lambda: nn.Dropout(0.2),
        Kernel.CALL: nn.Identity,
    }
    return makers[kind](), ((c,) if kind in (Kernel.LINEAR, Kernel.DROPOUT) else (c, h, h))


def measure(
    cfg: dict[str, Any], device: str, dtype: str, batch: int, train: bool, clock: Clock = time.perf_counter
) -> dict[str, float]:
    """{"infer_s": ..., "train_s": ...} of one configuration (on a GPU also the host's part,
    "infer_host_s" and "train_host_s"). `clock` times CPU calls: wall time, or on a shared machine
    a thread's CPU time (benchmarks/speed_predictor.py)."""
    module, shape = module_for(cfg)
    module = module.to(device)
    x = torch.randn(batch, *shape, device=device)
    if device == "cuda" and x.dim() == 4:
        module = module.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    out: dict[str, float] = {}
    module.eval()

    def infer() -> None:
        # autocast entered per call as a step enters it: weights are cast once per call
        with autocast(device, dtype), torch.no_grad():
            module(x)

    timed(out, "infer", infer, device, clock)
    if train:
        module.train()
        x.requires_grad_(True)
        with autocast(device, dtype):
            grad = torch.randn_like(module(x))

        def step() -> None:
            with autocast(device, dtype):
                y = module(x)
            y.backward(grad)
            module.zero_grad(set_to_none=True)
            x.grad = None

        timed(out, "train", step, device, clock)
    return out


def machine(device: str) -> dict[str, Any]:
    """What the profile was measured on."""
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    out: dict[str, Any] = {"cpu": cpu, "cores": cores, "platform": platform.platform()}
    out["python"] = platform.python_version()
    if device == "cuda":
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


def header(device: str, dtype: str, batch: int, train: bool) -> dict[str, Any]:
    """What a profile says besides its entries: how and where it was measured, and the peaks."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "device": device,
        "dtype": dtype,
        "batch_size": batch,
        "channels_last": device == "cuda",
        "train": train,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": machine(device),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "peaks": peaks(device, dtype),
    }


# a calibration network's batch is timed until this many seconds are spent on it (at least
# NETWORK_MIN_REPS batches, after NETWORK_WARMUP untimed ones)
NETWORK_BUDGET_S = 1.0
NETWORK_MIN_REPS = 3
NETWORK_MAX_REPS = 20
NETWORK_WARMUP = 2
LATENCY_BATCH = 1


def network_seconds(
    spec: dict[str, Any], device: str, batch: int, train: bool, clock: Clock = time.perf_counter
) -> tuple[float, float]:
    """(median seconds, spread) of one batch of a whole network, the step `archspec bench` times:
    inference, or forward + backward. The spread is the interquartile range over the median."""
    from .model import model_from_graph

    g = as_graph(spec)
    paths = FastPaths(channels_last=device == "cuda")
    size, res = info(g)["resolution"][0], info(g)["resolved"]
    built = model_from_graph(g, seed=0)
    model, run, x, y, _ = _inputs(built, device, batch, size, train, res.in_channels, res.num_classes, paths)
    step = lambda: _step(model, run, x, y, train)  # noqa: E731
    for _ in range(NETWORK_WARMUP):
        step()
    times: list[float] = []
    while len(times) < NETWORK_MIN_REPS or (sum(times) < NETWORK_BUDGET_S and len(times) < NETWORK_MAX_REPS):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = clock()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(clock() - t0)
    return statistics.median(times), spread(times)


def calibrate(
    specs: list[tuple[str, dict[str, Any]]],
    device: str,
    batch: int,
    train: bool,
    clock: Clock = time.perf_counter,
) -> list[dict[str, Any]]:
    """Whole networks timed on the device, at batch 1 and `batch`, for the predictor to learn what
    kernels timed alone miss (archspec.predict). `specs`: (where it came from, the spec as data)."""
    out = []
    for source, spec in specs:
        for b in sorted({LATENCY_BATCH, batch}):
            row: dict[str, Any] = {"source": source, "spec": spec, "batch_size": b}
            modes = (("infer", False), ("train", True)) if train and b != LATENCY_BATCH else (("infer", False),)
            for mode, backward in modes:
                with torch.random.fork_rng(devices=[]):
                    row[f"{mode}_s"], row[f"{mode}_spread"] = network_seconds(spec, device, b, backward, clock)
            out.append(row)
    return out


def profile(
    device: str,
    dtype: str,
    batch: int,
    train: bool,
    configs: list[dict[str, Any]] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    out: Path | None = None,
    networks: list[tuple[str, dict[str, Any]]] | None = None,
    clock: Clock = time.perf_counter,
) -> dict[str, Any]:
    """Time every configuration of `configs` (default: the grid) at `batch`, then the calibration
    `networks` (default: archspec.calibration's); the profile as JSON data, written to `out` if given.
    `clock` times CPU calls (module `measure`'s)."""
    require_device(device)
    allocator = keep_freed_memory() if device == "cpu" else "torch's CUDA caching allocator"
    configs = grid() if configs is None else configs
    kernel_batch = min(batch, KERNEL_BATCH)
    networks = [("default", s) for s in default_specs()] if networks is None else networks
    total = len(configs) + len(networks)
    t0 = time.perf_counter()
    entries = []
    for i, cfg in enumerate(configs):
        if progress is not None:
            progress(i, total, f"{cfg['kind']} {cfg['variant']}".strip())
        with torch.random.fork_rng(devices=[]):
            entries.append({**cfg, **measure(cfg, device, dtype, kernel_batch, train, clock)})
    calibration_rows: list[dict[str, Any]] = []
    for j, (source, spec) in enumerate(networks):
        if progress is not None:
            progress(len(configs) + j, total, f"network {spec.get('name', source)}")
        calibration_rows += calibrate([(source, spec)], device, batch, train, clock)
    if progress is not None:
        progress(total, total, "done")
    data = {
        **header(device, dtype, batch, train),
        "kernel_batch_size": kernel_batch,
        "allocator": allocator,
        "seconds": round(time.perf_counter() - t0, 1),
        "entries": entries,
        "calibration": calibration_rows,
    }
    data["noise"] = noise(entries, calibration_rows)
    if out is not None:
        try:
            write_text(out, json.dumps(data, indent=1) + "\n")
        except OSError as exc:
            raise SpecError(f"{out}: cannot write ({exc.strerror or exc})", parameter="out") from None
    return data


def noise(entries: list[dict[str, Any]], networks: list[dict[str, Any]]) -> dict[str, float]:
    """The median spread of the kernels' and of the networks' timings: how quiet the machine was."""
    out = {}
    for name, rows in (("kernels", entries), ("networks", networks)):
        spreads = [v for r in rows for k, v in r.items() if k.endswith("_spread")]
        out[name] = statistics.median(spreads) if spreads else 0.0
    return out
