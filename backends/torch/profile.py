"""`archspec profile`: how fast this device runs the kernel classes archspec networks are made of,
timed where they sit: inside networks.

Every IR node is one of a few kernel classes: a k x k conv with some group size and stride, a 1x1
conv, the stem conv, a normalization (BN, GN, LN, FRN, plug-ins'), the proxy-normalization part of
a norm layer, an activation, squeeze-excite, a residual add (with drop-path when training), global
pooling, dropout and the classifier. `profile` runs a set of calibration networks drawn from the
space archspec is for (archspec.calibration: group sizes 1-64, every registered norm, 64-380 px,
width and depth multipliers) and times every layer inside them, as `bench --per-layer` does, at the
profile's batch and at batch 1, forward (eval mode, no grad) and forward + backward (train mode),
and each network's whole step without the timing hooks. A kernel timed alone misses what its
neighbours do to it (the cache they leave, the allocator's state, the working set): on two cores
the same grouped conv ran 0.4x, an SE 2-3x and an activation 0.5x its time alone. `archspec.predict`
reads the file; it never imports torch.
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

from archspec.api import as_graph
from archspec.atomic import write_text
from archspec.calibration import default_specs
from archspec.errors import SpecError
from archspec.graph import layers
from archspec.predict import NOISY, Mode, node_shapes, shape_entry

from .allocator import keep_freed_memory
from .bench import STEP_DTYPE, layer_times
from .fast import require_device
from .timing import Clock, peaks, spread

FORMAT = "archspec-profile"
VERSION = 4  # 4: layers timed inside networks (3: kernels timed alone)
# timed steps per network, batch and mode (each layer's median), with as many plain steps between,
# after one untimed pair (the allocator holds the step's memory after one)
STEPS = 4
WARMUP = 1
LATENCY_BATCH = 1
# a node's time never goes below this fraction of what was measured when the hooks' own cost is
# taken off it
HOOK_FLOOR = 0.25


def network_layers(
    spec: dict[str, Any], device: str, batch: int, train: bool, clock: Clock = time.perf_counter
) -> tuple[list[dict[str, Any]], float, float]:
    """One network timed at `batch` (forward; forward + backward with `train`): every layer as
    profile entries (its kernel classes' shapes and seconds), and the whole step's median seconds
    and spread (interquartile range over the median), from steps without hooks. The hooks' own cost
    (the hooked steps' excess over the plain ones, taken in turn with them) is shared evenly among
    the timed nodes and taken off each (never below HOOK_FLOOR of it)."""
    g = as_graph(spec)
    t = layer_times(g, device, batch, train, STEPS, clock, warmup=WARMUP)
    mode: Mode = "train" if train else "infer"
    plain = statistics.median(t.plain_s)
    hooks = max(0.0, statistics.median(t.hooked_s) - plain) / max(len(t.nodes), 1)
    entries: list[dict[str, Any]] = []
    for name, d in layers(g):
        if name not in t.nodes:
            continue
        forward, backward, pn = t.nodes[name]
        total = forward + backward
        kept = max(total - hooks, HOOK_FLOOR * total) / total if total > 0 else 1.0
        shapes = node_shapes(d, batch, mode)
        seconds = [total - pn, pn] if len(shapes) == 2 else [total]
        for shape, sec in zip(shapes, seconds):
            entries.append({**shape_entry(shape), "node": name, f"{mode}_s": max(sec * kept, 1e-9)})
    return entries, plain, spread(t.plain_s)


def check_dtype(device: str, dtype: str | None) -> str:
    """What a step computes in on `device` (the profile predicts `bench`'s step: fp32 on a CPU,
    bf16 autocast on a GPU); a SpecError if `dtype` says otherwise."""
    if dtype is not None and dtype != STEP_DTYPE[device]:
        raise SpecError(
            f"profile times networks as `bench` runs them, in {STEP_DTYPE[device]} on {device}; got {dtype}",
            parameter="dtype",
        )
    return STEP_DTYPE[device]


def _quieter(
    spec: dict[str, Any], device: str, batch: int, train: bool, clock: Clock
) -> tuple[list[dict[str, Any]], float, float]:
    """`network_layers`, timed again where its steps spread more than NOISY (another tenant of a
    shared machine slows some steps), keeping the faster of the two: load only ever slows a step."""
    with torch.random.fork_rng(devices=[]):
        first = network_layers(spec, device, batch, train, clock)
        if first[2] <= NOISY:
            return first
        return min(first, network_layers(spec, device, batch, train, clock), key=lambda t: t[1])


def calibrate(
    specs: list[tuple[str, dict[str, Any]]],
    device: str,
    batch: int,
    train: bool,
    clock: Clock = time.perf_counter,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Networks timed on the device, layer by layer and whole, at batch 1 and `batch` (forward +
    backward too at `batch`): (the layers as profile entries, the networks' whole steps). `specs`:
    (where it came from, the spec as data)."""
    entries: list[dict[str, Any]] = []
    networks = []
    for source, spec in specs:
        for b in sorted({LATENCY_BATCH, batch}):
            row: dict[str, Any] = {"source": source, "spec": spec, "batch_size": b}
            by_layer: dict[tuple[str, str], dict[str, Any]] = {}
            for backward in (False, True) if train and b != LATENCY_BATCH else (False,):
                mode = "train" if backward else "infer"
                layers_, row[f"{mode}_s"], row[f"{mode}_spread"] = _quieter(spec, device, b, backward, clock)
                for e in layers_:
                    # a layer's forward and forward + backward in one entry where its class is the same
                    key = (e.pop("node"), e["kind"])
                    by_layer.setdefault(key, e).update(e)
            entries += by_layer.values()
            networks.append(row)
    return entries, networks


def profile(
    device: str,
    dtype: str,
    batch: int,
    train: bool,
    progress: Callable[[int, int, str], None] | None = None,
    out: Path | None = None,
    networks: list[tuple[str, dict[str, Any]]] | None = None,
    clock: Clock = time.perf_counter,
) -> dict[str, Any]:
    """Time the calibration `networks` (default: archspec.calibration's) layer by layer and whole,
    at `batch` and at batch 1; the profile as JSON data, written to `out` if given. `clock` times
    CPU steps (wall time; a thread's CPU time on a shared machine, benchmarks/)."""
    require_device(device)
    check_dtype(device, dtype)
    allocator = keep_freed_memory() if device == "cpu" else "torch's CUDA caching allocator"
    networks = [("default", s) for s in default_specs()] if networks is None else networks
    t0 = time.perf_counter()
    entries: list[dict[str, Any]] = []
    calibration_rows: list[dict[str, Any]] = []
    for j, (source, spec) in enumerate(networks):
        if progress is not None:
            progress(j, len(networks), f"network {spec.get('name', source)}")
        layers_, rows = calibrate([(source, spec)], device, batch, train, clock)
        entries += layers_
        calibration_rows += rows
    if progress is not None:
        progress(len(networks), len(networks), "done")
    data = {
        **header(device, dtype, batch, train),
        "allocator": allocator,
        "seconds": round(time.perf_counter() - t0, 1),
        "entries": entries,
        "calibration": calibration_rows,
    }
    data["noise"] = noise(calibration_rows)
    if out is not None:
        try:
            write_text(out, json.dumps(data, indent=1) + "\n")
        except OSError as exc:
            raise SpecError(f"{out}: cannot write ({exc.strerror or exc})", parameter="out") from None
    return data


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


def noise(networks: list[dict[str, Any]]) -> dict[str, float]:
    """The median spread of the networks' whole steps: how quiet the machine was."""
    spreads = [v for r in networks for k, v in r.items() if k.endswith("_spread")]
    return {"networks": statistics.median(spreads) if spreads else 0.0}
