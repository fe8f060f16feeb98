"""How fast the analytic path is: `archspec compile` wall time, `stats` against tracing the built
model with FlopCounterMode (issue: compiler core), and `archspec match-flops` wall time for B0, B2,
B5 G16 against G1 (issue: FLOP matching). Run: python benchmarks/compile_speed.py

Writes benchmarks/results/compile_speed.json.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from _machine import save_result
from torch.utils.flop_counter import FlopCounterMode

import archspec

ROOT = Path(__file__).resolve().parents[1]
SPEC = "specs/b5_g16.yaml"


def timed(fn, repeats: int) -> tuple[list[float], object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def wall(cmd: list[str], repeats: int = 5) -> list[float]:
    return timed(lambda: subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True), repeats)[0]


def trace(device: str) -> int:
    spec = archspec.load_spec(ROOT / SPEC)
    r = archspec.resolve(spec).resolution.train
    with torch.device(device):
        model = archspec.build_model(spec).eval()
        x = torch.randn(1, 3, r, r)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


def main() -> None:
    cli = [sys.executable, "-m", "archspec.cli"]
    compile_wall = wall([*cli, "compile", SPEC])
    stats_wall = wall([*cli, "stats", SPEC, "--json"])
    match_walls = {
        f"b{b}": max(
            wall([*cli, "match-flops", f"specs/b{b}_g16.yaml", "--target", f"specs/b{b}_g1.yaml", "--json"], repeats=3)
        )
        for b in (0, 2, 5)
    }
    stats_times, cost = timed(lambda: archspec.stats(ROOT / SPEC), 20)
    meta_times, meta_macs = timed(lambda: trace("meta"), 3)
    cpu_times, cpu_macs = timed(lambda: trace("cpu"), 3)
    assert cost.macs == meta_macs == cpu_macs, (cost.macs, meta_macs, cpu_macs)
    med = statistics.median
    result = {
        "spec": SPEC,
        "macs": cost.macs,
        "compile_cli_wall_s": {"median": med(compile_wall), "max": max(compile_wall)},
        "stats_cli_wall_s": {"median": med(stats_wall), "max": max(stats_wall)},
        "match_flops_cli_wall_s_max": match_walls,
        "stats_in_process_s": med(stats_times),
        "flopcounter_trace_cpu_s": med(cpu_times),
        "flopcounter_trace_meta_s": med(meta_times),
        "speedup_vs_cpu_trace": med(cpu_times) / med(stats_times),
        "speedup_vs_meta_trace": med(meta_times) / med(stats_times),
        "notes": "stats = load + resolve + build_graph + totals, in process; a trace = build_model + one "
        "forward (batch 1, native resolution) under FlopCounterMode; both produce the same MACs. "
        "CLI walls include interpreter start-up and imports.",
    }
    print(json.dumps(save_result("compile_speed", result), indent=2))


if __name__ == "__main__":
    main()
