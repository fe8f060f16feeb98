"""How well `archspec.predict` predicts measured speed, on networks it has never seen.

A profile (`archspec profile`'s default: its kernel grid and its calibration networks, drawn from
seed archspec.calibration.DEFAULT_SEED) predicts held-out networks drawn from another seed (2027,
never used while the predictor was designed): G 1-64, E 2-6, every norm, 64-380 px, width and depth
multipliers. Each is timed as `archspec bench` times it (inference and a training step's forward
+ backward at batch 16; inference at batch 1 for latency) and compared with the prediction.

    python benchmarks/speed_predictor.py profile  [--threads 1 --clock thread] [--tag t1]
    python benchmarks/speed_predictor.py measure  [--seed 2026 --specs 40] [same flags]
    python benchmarks/speed_predictor.py evaluate [--seed 2026] [same flags]

`profile` writes results/profile_<device>[_TAG].json, `measure` results/speed_measured_<device>
[_TAG]_seed<S>.json (resuming where a stopped run left off), `evaluate` results/speed_predictor_
<device>[_TAG]_seed<S>.json.

Targets (issue 22): batch 16 inference and batch-1 latency within +-10% for >= 80% of the specs with
Kendall tau >= 0.9 (FLOPs alone beside it); training steps within +-15% for >= 70%.

A shared machine: other processes' load stretches wall-clock times. `--threads 1 --clock thread`
times by the CPU clock of the one intra-op thread (time.thread_time), which the load cannot
stretch, profile and networks alike; what it still sees (caches and memory bandwidth shared with
the others) is noise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _machine import machine, save_result

import archspec
from archspec.api import as_graph
from archspec.calibration import sample_specs
from archspec.predict import load_profile, predict

RESULTS = Path(__file__).resolve().parent / "results"
HELD_OUT_SEED = 2027
MODES = (("infer", 16, False), ("train", 16, True), ("latency", 1, False))
BANDS = {"infer": 0.10, "latency": 0.10, "train": 0.15}


def _name(what: str, args: argparse.Namespace, seed: bool = True) -> str:
    tag = f"_{args.tag}" if args.tag else ""
    return f"{what}_{args.device}{tag}" + (f"_seed{args.seed}" if seed else "")


def _clock(args: argparse.Namespace) -> Any:
    import torch

    torch.set_num_threads(args.threads or torch.get_num_threads())
    return time.thread_time if args.clock == "thread" else time.perf_counter


def _method(args: argparse.Namespace) -> str:
    import torch

    clock = "CPU time of the one intra-op thread" if args.clock == "thread" else "wall clock"
    return f"{torch.get_num_threads()} threads, {clock}"


def profile(args: argparse.Namespace) -> None:
    """`archspec profile`'s default (kernel grid and calibration networks) at batch 16."""
    from archspec.backends.torch import profile as P

    clock = _clock(args)
    t0 = time.perf_counter()
    data = P.profile(args.device, "fp32", 16, True, clock=clock)
    wall = round(time.perf_counter() - t0, 1)
    data["machine"] = {**machine(), "method": _method(args), "note": "shared machine", "wall_seconds": wall}
    (RESULTS / f"{_name('profile', args, seed=False)}.json").write_text(json.dumps(data, indent=1) + "\n")
    print(f"profile: {data['seconds']} s (wall {wall} s), noise {data['noise']}")


def measure(args: argparse.Namespace) -> None:
    from archspec.backends.torch.profile import network_seconds

    clock = _clock(args)
    name = _name("speed_measured", args)
    path = RESULTS / f"{name}.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []  # resume after these
    for spec in sample_specs(args.specs, args.seed, args.max_gmacs)[len(rows) :]:
        row: dict[str, Any] = {"spec": spec, "macs": archspec.stats(spec).macs}
        for mode, batch, train in MODES:
            seconds, spread = network_seconds(spec, args.device, batch, train, clock)
            row[f"{mode}_s"], row[f"{mode}_spread"] = seconds, spread
        rows.append(row)
        print(spec["name"], {k: round(v, 4) for k, v in row.items() if k.endswith("_s")}, flush=True)
        save_result(
            name,
            {
                "what": "measured seconds per batch (archspec bench's step) of held-out random specs",
                "device": args.device,
                "seed": args.seed,
                "method": _method(args),
                "note": "shared machine",
                "rows": rows,
            },
        )


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from scipy.stats import kendalltau

    out: dict[str, Any] = {"specs": len(rows)}
    for mode, band in BANDS.items():
        measured = [r[f"{mode}_s"] for r in rows]
        predicted = [r[f"predicted_{mode}_s"] for r in rows]
        errors = [p / m - 1 for p, m in zip(predicted, measured)]
        out[mode] = {
            f"within_{band:.0%}": sum(abs(e) <= band for e in errors) / len(errors),
            "kendall_tau": kendalltau(predicted, measured).statistic,
            "kendall_tau_flops_only": kendalltau([r["macs"] for r in rows], measured).statistic,
            "median_abs_error": statistics.median(abs(e) for e in errors),
            "worst_error": max(errors, key=abs),
            "median_measurement_spread": statistics.median(r[f"{mode}_spread"] for r in rows),
        }
    return out


def evaluate(args: argparse.Namespace) -> None:
    measured_file = RESULTS / f"{_name('speed_measured', args)}.json"
    measured = json.loads(measured_file.read_text())
    profile_file = args.profile or RESULTS / f"{_name('profile', args, seed=False)}.json"
    loaded = load_profile(profile_file)
    rows = []
    for row in measured["rows"]:
        g = as_graph(row["spec"])
        p = predict(g, loaded, 16)
        predicted = {"infer": p.infer_s, "train": p.train_s, "latency": p.latency_ms / 1e3}
        rows.append(
            {
                **row,
                **{f"predicted_{m}_s": v for m, v in predicted.items()},
                **{f"{m}_error": (v or 0) / row[f"{m}_s"] - 1 for m, v in predicted.items()},
            }
        )
    result = {
        "what": "archspec.predict (from the profile: kernels and calibration networks) against measured time",
        "measured": f"results/{measured_file.name}",
        "measured_machine": measured["machine"],
        "profile": f"results/{Path(profile_file).name}",
        "profile_seconds": loaded.seconds,
        "profile_noise": loaded.noise,
        "summary": summary(rows),
        "rows": rows,
    }
    save_result(_name("speed_predictor", args), result)
    json.dump(result["summary"], sys.stdout, indent=2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("phase", choices=("profile", "measure", "evaluate"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--profile", type=Path, help="evaluate: this profile (default: the profile phase's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall")
    parser.add_argument("--tag", default="", help="in the result files' names")
    parser.add_argument("--specs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED)
    parser.add_argument("--max-gmacs", type=float, default=1.0)
    args = parser.parse_args()
    {"profile": profile, "measure": measure, "evaluate": evaluate}[args.phase](args)


if __name__ == "__main__":
    main()
