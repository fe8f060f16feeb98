"""The allocator archspec runs networks with (backends/torch/allocator.py) against glibc's default:
B0 at G1 and G16, BN and LN+PN, inference and training steps, batch 16, on the CPU. Each cell is
a fresh process (the allocator is a process's setting), the two allocators in turn (A B A B ...);
per process: two warm-up steps, then the median of `--steps` timed ones, and the kernel's share of
the process's CPU time (page faults and zeroing) over those steps.

    python benchmarks/allocator.py [--rounds 3] [--steps 6] [--batch-size 16]

Writes benchmarks/results/allocator_cpu.json and prints the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from typing import Any

from _machine import save_result
from fast_paths import NETWORKS

CELLS = ["b0_g1_bn", "b0_g16_bn", "b0_g16_ln+pn"]
ALLOCATORS = ("system", "kept")


def child(args: argparse.Namespace) -> None:
    """One process: time `args.steps` steps of one network with one allocator."""
    import resource
    import time

    import torch

    from archspec.api import as_graph
    from archspec.backends.torch.allocator import keep_freed_memory
    from archspec.backends.torch.bench import _step
    from archspec.backends.torch.model import model_from_graph

    if args.allocator == "kept":
        keep_freed_memory()
    train = args.mode == "train"
    g = as_graph(NETWORKS[args.network])
    model = model_from_graph(g, seed=0).train(train)
    x = torch.randn(args.batch_size, 3, 224, 224)
    y = torch.randint(0, 1000, (args.batch_size,))
    for _ in range(2):
        _step(model, model, x, y, train)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        _step(model, model, x, y, train)
        times.append(time.perf_counter() - t0)
    after = resource.getrusage(resource.RUSAGE_SELF)
    kernel = after.ru_stime - usage.ru_stime
    total = kernel + after.ru_utime - usage.ru_utime
    print(json.dumps({"seconds": statistics.median(times), "kernel_share": kernel / total}))


def cell(args: argparse.Namespace, network: str, mode: str) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {a: [] for a in ALLOCATORS}
    for _ in range(args.rounds):
        for allocator in ALLOCATORS:
            command = [sys.executable, __file__, "--child", network, mode, allocator]
            command += ["--steps", str(args.steps), "--batch-size", str(args.batch_size)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            runs[allocator].append(json.loads(done.stdout))
    out: dict[str, Any] = {"network": network, "mode": mode}
    for allocator, rs in runs.items():
        out[allocator] = {
            "images_per_s": args.batch_size / statistics.median(r["seconds"] for r in rs),
            "kernel_share": statistics.median(r["kernel_share"] for r in rs),
        }
    ratios = [s["seconds"] / k["seconds"] for s, k in zip(runs["system"], runs["kept"])]
    out["speedup"] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
    return out


def table(cells: list[dict[str, Any]]) -> str:
    lines = [
        "| network | step | system img/s (kernel share) | kept img/s (kernel share) | speed-up (median, min-max) |",
        "|---|---|---|---|---|",
    ]
    for c in cells:
        s, k, r = c["system"], c["kept"], c["speedup"]
        lines.append(
            f"| {c['network']} | {c['mode']} | {s['images_per_s']:.1f} ({s['kernel_share']:.0%}) | "
            f"{k['images_per_s']:.1f} ({k['kernel_share']:.0%}) | "
            f"**{r['median']:.2f}** ({r['min']:.2f}-{r['max']:.2f}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=3, metavar=("NETWORK", "MODE", "ALLOCATOR"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    if args.child:
        args.network, args.mode, args.allocator = args.child
        return child(args)
    cells = [cell(args, network, mode) for network in CELLS for mode in ("inference", "train")]
    settings = {"device": "cpu", "batch_size": args.batch_size, "rounds": args.rounds, "steps": args.steps}
    save_result("allocator_cpu", {"settings": settings, "cells": cells, "table": table(cells)})
    print(table(cells))


if __name__ == "__main__":
    main()
