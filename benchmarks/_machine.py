"""The machine a benchmark ran on, recorded beside its numbers."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess


def machine() -> dict[str, object]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    info: dict[str, object] = {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    with contextlib.suppress(ImportError):
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    with contextlib.suppress(OSError):
        info["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    return info


def save_result(name: str, result: dict[str, object]) -> dict[str, object]:
    """Write benchmarks/results/<name>.json: the figures with the machine they came from."""
    import json
    from pathlib import Path

    stamped = {**result, "machine": machine()}
    path = Path(__file__).resolve().parent / "results" / f"{name}.json"
    path.write_text(json.dumps(stamped, indent=2) + "\n")
    return stamped
