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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.ops import StochasticDepth

from archspec import norms
from archspec.atomic import write_text
from archspec.errors import SpecError

from .layers import GlobalPool, SqueezeExcite
from .norms import ProxyNormAct, make_activation, norm_act

FORMAT = "archspec-profile"
VERSION = 1
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# (channels, input size) of the grid: channel counts divisible by every group size up to 64 from
# 64 on, sizes from a 380 px network's stem output down to a 64 px network's last stage, keeping
# the pairs whose per-image activation (C x H x W) lies where a network's layers do.
CHANNELS = (16, 32, 64, 128, 256, 512, 1024, 2048)
SIZES = (2, 4, 8, 16, 32, 64, 128, 192)
ACTIVATION_RANGE = (1_000, 2_500_000)
MAX_MACS = 500_000_000  # per image: a larger conv than any layer of the networks archspec is for
GROUP_SIZES = (1, 2, 4, 8, 16, 32, 64)
KERNELS = (3, 5)
ACTIVATIONS = ("silu", "relu", "gelu")
# the norm kernel classes: one per registered norm kind (archspec.norms), plug-ins' included
NORMS = tuple(kind.kernel_class for kind in norms.registry().values())
CLASSES = 1000
# time each configuration until this many seconds have been spent on it (at least MIN_REPS calls)
BUDGET_S = 0.03
MIN_REPS = 3
MAX_REPS = 50
GPU_CYCLES_PER_S = 2e9  # to size the sleep kernel; a rough clock is enough (it is checked)


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
                # stride 2 is a few layers a network: half the grid along each axis, and odd sizes
                # too (where 'same' padding rounds up), so that MACs and elements moved part ways
                for c, h in shapes(1) if stride == 1 else [(c, h + odd) for c, h in shapes(2) for odd in (0, 1)]:
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
    for c, h in shapes():
        out += [{"kind": "norm", "variant": n, "channels": c, "size": h} for n in NORMS]
        out += [{"kind": "act", "variant": a, "channels": c, "size": h} for a in ACTIVATIONS]
        out += [{"kind": "pn", "variant": "silu", "channels": c, "size": h}]
        out += [{"kind": k, "variant": "", "channels": c, "size": h} for k in ("se", "add", "droppath_add", "pool")]
    # the harness's own cost per call (a module that does nothing): every other entry includes it
    # once, a network's step once in all, so the predictor takes it off each layer
    out += [{"kind": "call", "variant": "", "channels": 16, "size": 8} for _ in range(5)]
    for c in CHANNELS:
        out.append({"kind": "linear", "variant": "", "channels": c, "out_channels": CLASSES, "size": 1})
        out.append({"kind": "dropout", "variant": "", "channels": c, "size": 1})
    return out


def _conv(cin: int, cout: int, k: int, stride: int, group_size: int, size: int) -> dict[str, Any]:
    kind = "conv1x1" if k == 1 else ("stem" if cin == group_size and cin != cout else "conv")
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
    kind, c, h, v = cfg["kind"], cfg["channels"], cfg["size"], cfg["variant"]
    if kind in ("conv", "conv1x1", "stem"):
        k = cfg["kernel"]
        m: nn.Module = nn.Conv2d(
            c, cfg["out_channels"], k, cfg["stride"], padding=k // 2, groups=c // cfg["group_size"], bias=False
        )
        return m, (c, h, h)
    makers: dict[str, Callable[[], nn.Module]] = {
        "norm": lambda: _norm_module(c, v),
        "act": lambda: make_activation(v),
        "pn": lambda: ProxyPart(c, v),
        "se": lambda: SqueezeExcite(c, max(1, c // 16), "silu"),
        "add": lambda: DropPathAdd(0.0),
        "droppath_add": lambda: DropPathAdd(0.1),
        "pool": GlobalPool,
        "linear": lambda: nn.Linear(c, cfg["out_channels"]),
        "dropout": lambda: nn.Dropout(0.2),
        "call": nn.Identity,
    }
    return makers[kind](), ((c,) if kind in ("linear", "dropout") else (c, h, h))


Clock = Callable[[], float]


def _cpu_seconds(fn: Callable[[], Any], clock: Clock) -> float:
    """Median seconds per call, repeated within the time budget."""
    fn()
    times: list[float] = []
    while len(times) < MIN_REPS or (sum(times) < BUDGET_S and len(times) < MAX_REPS):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.median(times)


def _gpu_seconds(fn: Callable[[], Any]) -> tuple[float, float]:
    """(device, host) seconds per call. The device is held in a sleep kernel while the host
    enqueues the calls, so the events after the sleep time the kernels back to back, without the
    host's gaps, and the host's own time is read apart: a network's step is a queue between the
    two (archspec.predict)."""
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    host = time.perf_counter() - t0
    torch.cuda.synchronize()
    calls = max(1, min(10, int(2e-3 / (time.perf_counter() - t0))))  # a few ms of device work
    hold = 3 * calls * host + 1e-3  # longer than the host needs to enqueue them
    device_s: list[float] = []
    host_s: list[float] = []
    doublings = 0
    while len(device_s) < MIN_REPS:
        begin, start, end = (torch.cuda.Event(enable_timing=True) for _ in range(3))
        begin.record()
        torch.cuda._sleep(int(hold * GPU_CYCLES_PER_S))
        start.record()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        enqueue = time.perf_counter() - t0
        end.record()
        torch.cuda.synchronize()
        if enqueue > 0.8 * begin.elapsed_time(start) / 1e3 and doublings < 6:
            hold, doublings = 2 * hold, doublings + 1  # the device caught up with the host: hold it longer
            continue
        device_s.append(start.elapsed_time(end) / 1e3 / calls)
        host_s.append(enqueue / calls)
    return statistics.median(device_s), statistics.median(host_s)


def _timed(
    out: dict[str, float], mode: str, fn: Callable[[], Any], device: str, clock: Clock = time.perf_counter
) -> None:
    if device == "cuda":
        out[f"{mode}_s"], out[f"{mode}_host_s"] = _gpu_seconds(fn)
    else:
        out[f"{mode}_s"] = _cpu_seconds(fn, clock)


@contextlib.contextmanager
def _autocast(device: str, dtype: str) -> Iterator[None]:
    with torch.autocast(device, dtype=DTYPES[dtype], enabled=dtype != "fp32"):
        yield


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
        with _autocast(device, dtype), torch.no_grad():
            module(x)

    _timed(out, "infer", infer, device, clock)
    if train:
        module.train()
        x.requires_grad_(True)
        with _autocast(device, dtype):
            grad = torch.randn_like(module(x))

        def step() -> None:
            with _autocast(device, dtype):
                y = module(x)
            y.backward(grad)
            module.zero_grad(set_to_none=True)
            x.grad = None

        _timed(out, "train", step, device, clock)
    return out


def peaks(device: str, dtype: str) -> dict[str, float]:
    """The device's measured peak compute (GFLOP/s of a large matrix product) and memory bandwidth
    (GB/s of a large copy, bytes read and written): the roofline's ceilings."""
    n = 8192 if device == "cuda" else 1024
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    src = torch.empty(1 << (28 if device == "cuda" else 25), device=device)
    dst = torch.empty_like(src)
    timing: dict[str, float] = {}
    with _autocast(device, dtype):
        _timed(timing, "mm", lambda: a @ b, device)
    _timed(timing, "copy", lambda: dst.copy_(src), device)
    return {"gflops": 2 * n**3 / timing["mm_s"] / 1e9, "gbps": 2 * src.nbytes / timing["copy_s"] / 1e9}


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


def require_device(device: str) -> None:
    """A located error, before any work, where the device asked for is not on this machine."""
    if device == "cuda" and not torch.cuda.is_available():
        raise SpecError("CUDA is not available on this machine; use --device cpu", parameter="device")


def profile(
    device: str,
    dtype: str,
    batch: int,
    train: bool,
    configs: list[dict[str, Any]] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    out: Path | None = None,
) -> dict[str, Any]:
    """Time every configuration of `configs` (default: the grid) at `batch`; the profile as JSON
    data, written to `out` if given."""
    require_device(device)
    configs = grid() if configs is None else configs
    t0 = time.perf_counter()
    entries = []
    for i, cfg in enumerate(configs):
        if progress is not None:
            progress(i, len(configs), f"{cfg['kind']} {cfg['variant']}".strip())
        with torch.random.fork_rng(devices=[]):
            entries.append({**cfg, **measure(cfg, device, dtype, batch, train)})
    if progress is not None:
        progress(len(configs), len(configs), "done")
    data = {**header(device, dtype, batch, train), "seconds": round(time.perf_counter() - t0, 1), "entries": entries}
    if out is not None:
        try:
            write_text(out, json.dumps(data, indent=1) + "\n")
        except OSError as exc:
            raise SpecError(f"{out}: cannot write ({exc.strerror or exc})", parameter="out") from None
    return data
