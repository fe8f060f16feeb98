"""archspec against timm in every mode (issue 21): B0 at G1 and G16 with BN, GN, LN and LN+PN, eager,
channels_last, torch.compile and (inference) BN folded, training steps and inference, batch 16.
Each cell is one `archspec bench --vs-timm` run in a fresh process: the two models timed in turn
(A B A B ...), the median of the per-pair speed ratios with its quartiles.

    python benchmarks/fast_paths.py [--steps 12] [--batch-size 16] [--resolution 224]
                                    [--only NAME,...] [--modes eager,channels_last,compile,fold]

Writes benchmarks/results/fast_paths_<device>.json after every cell (a rerun skips the cells it
has; --fresh starts over), and prints the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _machine import save_result

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# (name, spec): G1 as timm's B0 (E = 6), G16 as the paper's (E = 4, mid channels multiples of 16)
G16 = {"base": "efficientnet-b0", "group_size": 16, "expansion_ratio": 4, "mid_channel_rounding": "group",
       "group_rounding": "count"}  # fmt: skip
NETWORKS = {
    "b0_g1_bn": {"base": "efficientnet-b0"},
    "b0_g1_gn": {"base": "efficientnet-b0", "norm": {"type": "gn", "groups": 4}},
    "b0_g1_ln+pn": {"base": "efficientnet-b0", "norm": {"type": "ln+pn"}},
    "b0_g16_bn": {**G16, "norm": {"type": "bn"}},
    "b0_g16_gn": {**G16, "norm": {"type": "gn", "groups": 4}},
    "b0_g16_ln": {**G16, "norm": {"type": "ln"}},
    "b0_g16_ln+pn": {**G16, "norm": {"type": "ln+pn"}},
}
MODES = {
    "eager": (),
    "channels_last": ("--channels-last",),
    "compile": ("--compile",),
    "fold": ("--fold",),  # inference only; on GN/LN networks there is nothing to fold
}


def cell(spec: dict, mode: str, train: bool, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "spec.yaml"
        path.write_text(json.dumps({"name": "bench", **spec}))  # JSON is YAML
        command = [sys.executable, "-m", "archspec.cli", "bench", str(path), "--vs-timm", "--json",
                   "--batch-size", str(args.batch_size), "--steps", str(args.steps),
                   "--resolution", str(args.resolution), "--device", args.device, *MODES[mode],
                   *(["--train"] if train else [])]  # fmt: skip
        proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=3600)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    p = json.loads(proc.stdout)
    ours = p["archspec"]
    out = {"pairs": p["steps"], "archspec_images_per_s": ours["images_per_s"], "archspec_spread": ours["spread"],
           "archspec_first_batch_s": ours["first_batch_s"]}  # fmt: skip
    if "timm" in p:
        out.update(timm_images_per_s=p["timm"]["images_per_s"], timm_spread=p["timm"]["spread"], ratio=p["ratio"])
    else:
        out["timm"] = p.get("timm_note", "")
    return out


def table(cells: dict) -> str:
    lines = ["| network | mode | step | archspec img/s | timm img/s | archspec / timm (median, quartiles) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for key, c in cells.items():
        net, mode, step = key.split("|")
        if "error" in c:
            lines.append(f"| {net} | {mode} | {step} | {c['error']} | | |")
            continue
        timm = f"{c['timm_images_per_s']:.1f}" if "ratio" in c else "n/a (timm has no such network)"
        r = c.get("ratio")
        ratio = f"**{r['median']:.2f}** ({r['q1']:.2f}-{r['q3']:.2f})" if r else ""
        lines.append(f"| {net} | {mode} | {step} | {c['archspec_images_per_s']:.1f} | {timm} | {ratio} |")
    return "\n".join(lines)


def over_eager(spec_file: str, steps: int) -> dict:
    """One network in each mode, timed in turn in one process (A B C, C B A, ...): each mode's
    speed over eager, inference and training, from neighbouring batches."""
    from archspec.api import as_resolved
    from archspec.backends.torch.bench import interleaved
    from archspec.backends.torch.fast import FastPaths
    from archspec.backends.torch.model import model_from_graph
    from archspec.graph import build_graph

    res = as_resolved(spec_file)
    out = {}
    for train in (False, True):
        modes = {"eager": FastPaths(), "channels_last": FastPaths(channels_last=True),
                 "compile": FastPaths(compiled=True), "compile+channels_last": FastPaths(True, True)}  # fmt: skip
        if not train:
            modes["fold+channels_last"] = FastPaths(channels_last=True, fold=True)
        models = {m: model_from_graph(build_graph(res), seed=0) for m in modes}
        timed = interleaved(models, "cpu", 16, 224, train, FastPaths(), steps, paths_of=modes)
        eager = timed["eager"].times
        out["train" if train else "inference"] = {
            m: statistics.median(e / t for e, t in zip(eager, c.times)) for m, c in timed.items()
        }
        print(out, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--only", default=",".join(NETWORKS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--steps-kind", default="inference,train")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--over-eager", metavar="SPEC", help="each mode's speed over eager for SPEC, in one process")
    args = parser.parse_args()
    if args.over_eager:
        result = {
            "spec": args.over_eager,
            "steps": args.steps,
            "median_speed_over_eager": over_eager(args.over_eager, args.steps),
        }
        save_result("fast_paths_over_eager_cpu", result)
        return
    name = f"fast_paths_{args.device}"
    file = RESULTS / f"{name}.json"
    cells: dict = {} if args.fresh or not file.exists() else json.loads(file.read_text())["cells"]
    for net in args.only.split(","):
        for mode in args.modes.split(","):
            for step in args.steps_kind.split(","):
                key = f"{net}|{mode}|{step}"
                if key in cells or (mode == "fold" and step == "train"):
                    continue
                cells[key] = cell(NETWORKS[net], mode, step == "train", args)
                print(key, json.dumps(cells[key]), flush=True)
                settings = {k: getattr(args, k) for k in ("device", "batch_size", "resolution")}
                save_result(name, {"settings": settings, "cells": cells, "table": table(cells)})
    print(table(cells))


if __name__ == "__main__":
    main()
