"""Every `bash` block of the README runs as written, in order, on a fresh copy of the repository.

Two kinds of step are not run again here: setting up the environment (`python3 -m venv`, activating
it, `pip install`: CI's own run is that step) and the test command itself (this test runs inside
it). Training commands get a small --max-steps, as the README says they may.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

SETUP = ("python3 -m venv", ". .venv/bin/activate", "pip install", "python -m pytest")
SMALL_STEPS = {"train": "3", "finetune": "2"}


def readme_commands(text: str) -> list[str]:
    """The commands of every ```bash block, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip() if not line.strip().startswith("#") else ""
            commands += [part.strip() for part in line.split("&&") if part.strip()]
    return [c for c in commands if not c.startswith(SETUP)]


def with_small_steps(command: str) -> str:
    words = shlex.split(command)
    if words[:1] != ["archspec"] or words[1] not in SMALL_STEPS:
        return command
    if "--max-steps" in words:
        words[words.index("--max-steps") + 1] = SMALL_STEPS[words[1]]
    else:
        words += ["--max-steps", SMALL_STEPS[words[1]]]
    return shlex.join(words)


def test_the_readme_commands_are_found():
    commands = readme_commands((ROOT / "README.md").read_text())
    starts = [c.split()[:2] for c in commands]
    assert ["archspec", "compile"] in starts and ["archspec", "train"] in starts and ["archspec", "eval"] in starts
    assert with_small_steps("archspec finetune r --max-steps 20").endswith("--max-steps 2")


@pytest.mark.slow
def test_every_readme_command_runs_as_written(tmp_path):
    repo = tmp_path / "archspec"
    shutil.copytree(
        ROOT,
        repo,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "runs", "build", "*.egg-info", ".pytest_cache", ".hypothesis", "__pycache__"
        ),
    )
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for command in readme_commands((repo / "README.md").read_text()):
        run = subprocess.run(
            ["bash", "-c", with_small_steps(command)], cwd=repo, env=env, capture_output=True, text=True, timeout=900
        )
        assert run.returncode == 0, (command, run.stderr[-3000:])
