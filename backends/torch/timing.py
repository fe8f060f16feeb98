"""How archspec times a device's peaks (the roofline's ceilings): medians of repeated calls after
a warm-up, on a CPU by the wall clock, on a GPU by events around a queue the host has filled
ahead; and the spread of a list of timings."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# time each call until this many seconds have been spent on it (at least MIN_REPS calls)
BUDGET_S = 0.03
MIN_REPS = 3
MAX_REPS = 50
GPU_CYCLES_PER_S = 2e9  # to size the sleep kernel; a rough clock is enough (it is checked)


Clock = Callable[[], float]


def _cpu_seconds(fn: Callable[[], Any]) -> float:
    """Median seconds per call, repeated within the time budget."""
    fn()
    times: list[float] = []
    while len(times) < MIN_REPS or (sum(times) < BUDGET_S and len(times) < MAX_REPS):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _gpu_seconds(fn: Callable[[], Any]) -> float:
    """Device seconds per call. The device is held in a sleep kernel while the host enqueues the
    calls, so the events after the sleep time the kernels back to back, without the host's gaps."""
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    host = time.perf_counter() - t0
    torch.cuda.synchronize()
    calls = max(1, min(10, int(2e-3 / (time.perf_counter() - t0))))  # a few ms of device work
    hold = 3 * calls * host + 1e-3  # longer than the host needs to enqueue them
    device_s: list[float] = []
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
    return statistics.median(device_s)


def _seconds(fn: Callable[[], Any], device: str) -> float:
    return _gpu_seconds(fn) if device == "cuda" else _cpu_seconds(fn)


@contextlib.contextmanager
def autocast(device: str, dtype: str) -> Iterator[None]:
    with torch.autocast(device, dtype=DTYPES[dtype], enabled=dtype != "fp32"):
        yield


def spread(times: list[float]) -> float:
    """Interquartile range over the median."""
    if len(times) < 2:
        return 0.0
    q1, median, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return (q3 - q1) / median


def peaks(device: str, dtype: str) -> dict[str, float]:
    """The device's measured peak compute (GFLOP/s of a large matrix product) and memory bandwidth
    (GB/s of a large copy, bytes read and written): the roofline's ceilings."""
    n = 8192 if device == "cuda" else 1024
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    src = torch.empty(1 << (28 if device == "cuda" else 25), device=device)
    dst = torch.empty_like(src)
    with autocast(device, dtype):
        mm = _seconds(lambda: a @ b, device)
    copy = _seconds(lambda: dst.copy_(src), device)
    return {"gflops": 2 * n**3 / mm / 1e9, "gbps": 2 * src.nbytes / copy / 1e9}
