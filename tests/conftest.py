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
