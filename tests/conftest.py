"""Shared helpers: run the CLI in-process (fast) or as a real subprocess (isolation, limits)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"

# Reference numbers. Native resolutions: EfficientNet B0-B7 (Tan & Le, 2019), which the paper's Table 1
# repeats for B0-B5; half resolutions: the paper's Table 1.
NATIVE = {0: 224, 1: 240, 2: 260, 3: 300, 4: 380, 5: 456, 6: 528, 7: 600}
HALF = {0: 160, 1: 176, 2: 192, 3: 204, 4: 252, 5: 328}
# The paper's Table 2, (size, G, E): (P in millions, F in billions) as printed
TABLE_2 = {
    (0, 1, 6): (5.3, 0.4), (0, 4, 5): (5.1, 0.4), (0, 16, 4): (5.9, 0.6), (0, 32, 3): (6.2, 0.9),
    (0, 64, 2): (6.7, 1.5),
    (1, 1, 6): (7.8, 0.7), (1, 16, 4): (8.3, 1.1),
    (2, 1, 6): (9.1, 1.0), (2, 4, 5): (8.6, 1.0), (2, 16, 4): (9.5, 1.5), (2, 32, 3): (10.3, 2.1),
    (2, 64, 2): (9.9, 3.6),
    (3, 1, 6): (12.2, 1.8), (3, 16, 4): (12.6, 2.7),
    (4, 1, 6): (19.3, 4.4), (4, 16, 4): (19.3, 6.2),
    (5, 1, 6): (30.4, 10.2), (5, 16, 4): (28.7, 13.4),
}


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


def run_archspec(*args: str, cwd: Path = ROOT, timeout: float = 120, env: dict | None = None,
                 preexec_fn=None) -> Result:
    """The installed console script in a fresh interpreter."""
    proc = subprocess.run(
        [sys.executable, "-m", "archspec.cli", *map(str, args)], cwd=cwd, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **(env or {})}, preexec_fn=preexec_fn,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)
