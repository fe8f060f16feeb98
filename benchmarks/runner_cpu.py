"""The README's training example, measured as written, on this machine:

    archspec train specs/tiny.yaml --recipe recipes/synthetic-quick.yaml --out runs/tiny
    archspec finetune runs/tiny --resolution 96 --blocks 2 --max-steps 20
    archspec eval runs/tiny --resolutions 64,96

with the wall time of each command and the accuracies they print; then the training run again with
the same thread count (it must give the same weights) and with one thread (a different order of
floating-point sums, so a different result). Targets: >= 80% val top-1 (EMA) at 64 px within 5
minutes on two CPU cores.

    python benchmarks/runner_cpu.py        # writes benchmarks/results/runner_cpu.json
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import save_result

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["train", "specs/tiny.yaml", "--recipe", "recipes/synthetic-quick.yaml"]


def timed(args: list[str], threads: int) -> tuple[float, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "archspec.cli", *args], check=True, cwd=ROOT, env=env, capture_output=True, text=True
    )
    return time.perf_counter() - t0, done.stdout


def weights_digest(run: Path) -> str:
    from archspec.runner.checkpoint import load

    state = load(run / "ema.pt", "EMA weights")["model"]  # verified, as every reader of a run loads it
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode() + state[key].numpy().tobytes())
    return digest.hexdigest()[:16]


def training(run: Path, threads: int) -> dict[str, object]:
    wall, _ = timed([*TRAIN, "--out", str(run)], threads)
    summary = json.loads((run / "run.json").read_text())["summary"]
    return {
        "threads": threads,
        "wall_s": round(wall, 1),
        "val_top1_ema": summary["val_top1_ema"],
        "val_top1_raw": summary["val_top1_raw"],
        "steps": summary["steps"],
        "ema_sha256": weights_digest(run),
    }


def main() -> None:
    threads = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "tiny"
        first = training(run, threads)
        finetune_s, _ = timed(
            ["finetune", str(run), "--resolution", "96", "--blocks", "2", "--max-steps", "20"], threads
        )
        eval_s, out = timed(["eval", str(run), "--resolutions", "64,96", "--json"], threads)
        results = json.loads(out)["results"]
        again = training(Path(tmp) / "again", threads)
        one_thread = training(Path(tmp) / "one", 1)
    result = {
        "readme": {
            "train": first,
            "finetune_wall_s": round(finetune_s, 1),
            "eval_wall_s": round(eval_s, 1),
            "eval": [{k: r[k] for k in ("resolution", "top1", "top5", "weights_file")} for r in results],
        },
        "same_threads_again": again,
        "same_weights_with_the_same_threads": again["ema_sha256"] == first["ema_sha256"],
        "one_thread": one_thread,
    }
    print(json.dumps(save_result("runner_cpu", result), indent=2))


if __name__ == "__main__":
    main()
