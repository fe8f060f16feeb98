"""Cost of proxy normalization: forward+backward time of B0-G16 at 128 px, GN vs LN+PN, eager and
torch.compile (issue: batch-independent normalization). Targets: LN+PN at most 1.3x GN eager on
CPU, at most 1.10x GN with torch.compile on GPU.

    python benchmarks/norm_speed.py [--device cpu|cuda] [--batch-size 16] [--steps 10] [--no-compile]

Writes benchmarks/results/norm_speed_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _machine import save_result

import archspec

ROOT = Path(__file__).resolve().parents[1]


def step_times(norm: str, device: str, batch: int, steps: int, compiled: bool) -> dict[str, float]:
    model = archspec.build_model({"base": str(ROOT / "specs/b0_g16.yaml"), "norm": {"type": norm}}, seed=0)
    model = model.to(device).train()
    if device == "cuda":
        model = model.to(memory_format=torch.channels_last)
    run = torch.compile(model) if compiled else model
    x = torch.randn(batch, 3, 128, 128, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    if device == "cuda":
        x = x.to(memory_format=torch.channels_last)

    def one() -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = F.cross_entropy(run(x), y)
        loss.backward()
        model.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    t0 = time.perf_counter()
    one()  # warm-up (and compilation)
    first = time.perf_counter() - t0
    for _ in range(2):
        one()
    times = [one() for _ in range(steps)]
    return {"median_s": statistics.median(times), "min_s": min(times), "first_step_s": first}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    modes = [False] if args.no_compile else [False, True]
    results: dict[str, dict] = {}
    for compiled in modes:
        mode = "compile" if compiled else "eager"
        for norm in ("gn", "ln+pn"):
            results[f"{norm}/{mode}"] = step_times(norm, args.device, args.batch_size, args.steps, compiled)
            print(norm, mode, results[f"{norm}/{mode}"], flush=True)
    ratios = {
        mode: results[f"ln+pn/{mode}"]["median_s"] / results[f"gn/{mode}"]["median_s"]
        for mode in ("eager", "compile")
        if f"gn/{mode}" in results
    }
    out = {
        "spec": "specs/b0_g16.yaml (norm overridden)",
        "resolution": 128,
        "batch_size": args.batch_size,
        "device": args.device,
        "step": "forward + backward, cross-entropy"
        + (", bf16 autocast, channels_last" if args.device == "cuda" else ", fp32"),
        "results": results,
        "ln_pn_over_gn": ratios,
    }
    save_result(f"norm_speed_{args.device}", out)
    print(json.dumps({"ln_pn_over_gn": ratios}, indent=2))


if __name__ == "__main__":
    main()
