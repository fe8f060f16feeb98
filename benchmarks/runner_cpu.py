"""Wall time of the runner on this machine (issue: shared runner):
1. the demo: train (30 steps, B = 16, 64 px) + finetune (10 steps, 96 px, 2 blocks) + eval (64, 96),
   target under 3 minutes together on two CPU cores;
2. learning: the tiny G16 LN+PN spec with recipes/synthetic-quick.yaml, target >= 80% val top-1
   within 5 minutes on two CPU cores.

    python benchmarks/runner_cpu.py        # writes benchmarks/results/runner_cpu.json
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import save_result

ROOT = Path(__file__).resolve().parents[1]


def timed(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "archspec.cli", *args],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(tmp) / "demo"
        steps = {
            "train": timed(
                [
                    "train",
                    "specs/tiny.yaml",
                    "--epochs",
                    "1",
                    "--max-steps",
                    "30",
                    "--batch-size",
                    "16",
                    "--resolution",
                    "64",
                    "--out",
                    str(demo),
                ]
            ),
            "finetune": timed(["finetune", str(demo), "--resolution", "96", "--blocks", "2", "--max-steps", "10"]),
            "eval": timed(["eval", str(demo), "--resolutions", "64,96", "--json"]),
        }
        learn = Path(tmp) / "learn"
        learn_s = timed(
            [
                "train",
                "specs/tiny.yaml",
                "--recipe",
                "recipes/synthetic-quick.yaml",
                "--resolution",
                "64",
                "--out",
                str(learn),
            ]
        )
        summary = json.loads((learn / "run.json").read_text())["summary"]
    result = {
        "demo_wall_s": {**steps, "total": sum(steps.values())},
        "learning": {
            "wall_s": learn_s,
            "val_top1_ema": summary["val_top1_ema"],
            "val_top1_raw": summary["val_top1_raw"],
            "steps": summary["steps"],
            "recipe": "recipes/synthetic-quick.yaml",
            "spec": "specs/tiny.yaml",
        },
    }
    print(json.dumps(save_result("runner_cpu", result), indent=2))


if __name__ == "__main__":
    main()
