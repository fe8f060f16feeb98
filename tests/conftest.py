"""Shared helpers: run the CLI in-process (fast) or as a real subprocess (isolation, limits)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from archspec.paper import TABLE_2  # noqa: F401 - the paper's Table 2, for the tests

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"

# Reference numbers. Native resolutions: EfficientNet B0-B7 (Tan & Le, 2019), which the paper's Table 1
# repeats for B0-B5; half resolutions: the paper's Table 1.
NATIVE = {0: 224, 1: 240, 2: 260, 3: 300, 4: 380, 5: 456, 6: 528, 7: 600}
HALF = {0: 160, 1: 176, 2: 192, 3: 204, 4: 252, 5: 328}


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """cli("compile", "specs/x.yaml") -> Result, through the real entry point."""
    from archspec.cli.app import main

    def run(*args: str) -> Result:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        else:  # pragma: no cover - main always exits
            code = 0
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def run_archspec(
    *args: str, cwd: Path = ROOT, timeout: float = 120, env: dict | None = None, preexec_fn=None
) -> Result:
    """The installed console script in a fresh interpreter."""
    proc = subprocess.run(
        [sys.executable, "-m", "archspec.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        preexec_fn=preexec_fn,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def start_archspec(*args: str, cwd: Path = ROOT) -> subprocess.Popen:
    """The CLI in its own process group (so that a kill reaches every process it starts)."""
    return subprocess.Popen(
        [sys.executable, "-m", "archspec.cli", *map(str, args)],
        cwd=cwd,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill_when(proc: subprocess.Popen, ready, timeout: float = 300) -> None:
    """SIGKILL the process group as soon as `ready()` holds (a machine losing power, for the run)."""
    import signal
    import time

    deadline = time.time() + timeout
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def checkpoint_state(run: Path) -> dict:
    """Step, model and EMA of a run's checkpoint, flattened."""
    from archspec.runner.checkpoint import load

    state = load(run / "checkpoint.pt")
    return {
        "step": state["step"],
        **{f"model.{k}": v for k, v in state["model"].items()},
        **{f"ema.{k}": v for k, v in state["ema"].items()},
    }


MAC_OPS = {"aten.convolution", "aten.addmm", "aten.mm"}


def torch_counts(spec, resolution: int) -> tuple[int, int]:
    """Parameters and multiply-accumulates of a spec's model as torch itself counts them (the
    module's parameters; FlopCounterMode's conv and matmul FLOPs, halved): an oracle that does not
    go through archspec's cost model."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import archspec

    with torch.device("meta"):
        model = archspec.build_model(spec).eval()
        x = torch.empty(1, 3, resolution, resolution)
    with FlopCounterMode(display=False) as counter:
        model(x)
    flops = sum(v for op, v in counter.get_flop_counts()["Global"].items() if str(op) in MAC_OPS)
    return sum(p.numel() for p in model.parameters()), flops // 2
