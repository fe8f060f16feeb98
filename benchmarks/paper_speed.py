"""The paper's argument on this machine: FLOPs are not speed. EfficientNet-B0 with depthwise
convs (G1, the fewest MACs) against G16 (more MACs, E4) and G16 with LN+PN, at 224 px: MACs
against measured images/s (inference and a training step), and the achieved GFLOP/s of the
spatial (grouped) convs, layer by layer (`archspec bench --per-layer`).

    python benchmarks/paper_speed.py [--device cpu|cuda] [--batch-size 8] [--steps 5] [--threads 1 --clock thread]

(`--threads 1 --clock thread` on a shared machine: see speed_predictor.py.)

Writes results/paper_speed_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from _machine import save_result
from speed_predictor import _clock, _method, step_seconds

import archspec
from archspec.backends.torch.bench import per_layer

ROOT = Path(__file__).resolve().parents[1]
NETWORKS = {
    "B0 G1 (GN)": {"base": str(ROOT / "specs/b0_g1.yaml")},
    "B0 G16 (GN)": {"base": str(ROOT / "specs/b0_g16.yaml")},
    "B0 G16 LN+PN": {"base": str(ROOT / "specs/b0_g16.yaml"), "norm": {"type": "ln+pn"}},
}
RESOLUTION = 224


def network(label: str, spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    spec = {**spec, "resolution": {"train": RESOLUTION}}
    cost = archspec.stats(spec)
    out: dict[str, Any] = {"spec": spec, "params": cost.params, "macs": cost.macs}
    for mode, train in (("infer", False), ("train", True)):
        seconds = step_seconds(spec, args.device, args.batch_size, train, args.steps, args.timer)
        out[f"{mode}_images_per_s"] = args.batch_size / seconds
        # a training step does about 3x the forward's MACs (forward, input and weight gradients)
        out[f"{mode}_gflops"] = (3 if train else 1) * 2 * cost.macs * args.batch_size / seconds / 1e9
    res = archspec.api.as_resolved(spec)
    layers = per_layer(res, args.device, args.batch_size, RESOLUTION, False, args.steps, args.timer)
    spatial = [r for r in layers["rows"] if r["kind"] == "grouped conv"]
    out["spatial_convs"] = [{k: r[k] for k in ("name", "macs", "intensity", "forward_s", "gflops")} for r in spatial]
    spatial_s = sum(r["forward_s"] for r in spatial)
    out["spatial_conv_share"] = spatial_s / layers["layers_s"]
    out["spatial_conv_gflops"] = sum(r["flops"] for r in spatial) / spatial_s / 1e9
    out["spatial_conv_gflops_median_layer"] = statistics.median(r["gflops"] for r in spatial)
    out["pointwise_conv_gflops"] = _kind_gflops(layers["rows"], "pointwise conv")
    out["peaks"] = layers["peaks"]
    print(label, {k: v for k, v in out.items() if not isinstance(v, (list, dict))}, flush=True)
    return out


def _kind_gflops(rows: list[dict[str, Any]], kind: str) -> float:
    chosen = [r for r in rows if r["kind"] == kind]
    return sum(r["flops"] for r in chosen) / sum(r["forward_s"] for r in chosen) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall")
    args = parser.parse_args()
    args.timer = _clock(args)
    results = {label: network(label, spec, args) for label, spec in NETWORKS.items()}
    g1, g16 = results["B0 G1 (GN)"], results["B0 G16 (GN)"]
    out = {
        "what": "B0 G1 vs G16 vs G16 LN+PN at 224 px: MACs against measured images/s; spatial-conv GFLOP/s",
        "device": args.device,
        "batch_size": args.batch_size,
        "step": "fp32" if args.device == "cpu" else "bf16 autocast, channels_last",
        "method": _method(args),
        "g16_over_g1": {
            "macs": g16["macs"] / g1["macs"],
            "infer_images_per_s": g16["infer_images_per_s"] / g1["infer_images_per_s"],
            "train_images_per_s": g16["train_images_per_s"] / g1["train_images_per_s"],
            "spatial_conv_gflops": g16["spatial_conv_gflops"] / g1["spatial_conv_gflops"],
        },
        "networks": results,
    }
    save_result(f"paper_speed_{args.device}" + (f"_t{args.threads}" if args.threads else ""), out)
    print(json.dumps(out["g16_over_g1"], indent=2))


if __name__ == "__main__":
    main()
