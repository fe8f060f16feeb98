"""The core works without torch, timm or matplotlib (`pip install archspec`, no extras), and the
commands that need them say which extra to install."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from conftest import ROOT

# an interpreter in which torch, torchvision, timm and matplotlib cannot be imported
HIDE = (
    "import sys\n"
    "class Hidden:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('torch', 'torchvision', 'timm', 'matplotlib'):\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, Hidden())\n"
    "from archspec.cli.app import main\n"
    "main(sys.argv[1:])\n"
)


def _without_extras(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", HIDE, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "args",
    [
        ("validate", "specs/b0_g16.yaml", "specs/tiny.yaml"),
        ("compile", "specs/b5_g16.yaml"),
        ("stats", "specs/tiny.yaml"),
        ("match-flops", "specs/b0_g16.yaml", "--target", "specs/b0_g1.yaml"),
        ("resolutions", "efficientnet-b3"),
        ("plan", "specs/b0_g16.yaml", "--stages", "2"),
        ("schema",),
        ("sweep", "efficientnet-b0", "--group-sizes", "1,16", "--expansions", "6,4"),
    ],
)
def test_the_core_commands_need_no_torch(args):
    result = _without_extras(*args)
    assert result.returncode == 0, result.stderr


def test_compile_writes_its_files_without_torch(tmp_path):
    result = _without_extras("compile", str(ROOT / "specs" / "tiny.yaml"), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert {"model.py", "report.json", "resolved.yaml"} <= {p.name for p in (tmp_path / "out").iterdir()}


@pytest.mark.parametrize(
    "args,extra",
    [
        (("train", "specs/tiny.yaml", "--out", "{tmp}/run"), "torch"),
        (("bench", "specs/tiny.yaml"), "torch"),
        (("sweep", "efficientnet-b0", "--group-sizes", "1", "--expansions", "6", "--plot", "{tmp}/x.png"), "plot"),
    ],
)
def test_commands_that_need_an_extra_name_it(tmp_path, args, extra):
    result = _without_extras(*(a.format(tmp=tmp_path) for a in args))
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pip install 'archspec[{extra}]'" in lines[0], result.stderr
    assert lines[0].startswith(f"archspec {args[0]}: needs "), lines[0]


@pytest.mark.slow
def test_a_fresh_venv_with_only_the_core(tmp_path):
    """`pip install .` alone, in a new virtual environment (from the package registry)."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "*.egg-info", "build"))
    environment = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", str(source)],
        capture_output=True,
        text=True,
        timeout=900,
        env=environment,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    listed = subprocess.run([python, "-m", "pip", "list"], capture_output=True, text=True, env=environment).stdout
    assert not any(line.split()[0].lower() in ("torch", "timm", "matplotlib") for line in listed.splitlines()[2:])
    archspec = env_dir / "bin" / "archspec"
    specs = sorted(str(p) for p in (ROOT / "specs").glob("*.yaml"))
    for args in (
        ["validate", *specs],
        ["compile", "specs/b5_g16.yaml"],
        ["stats", "specs/b0_g16.yaml"],
        ["match-flops", "specs/b0_g16.yaml", "--target", "specs/b0_g1.yaml"],
    ):
        result = subprocess.run(
            [archspec, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=environment
        )
        assert result.returncode == 0, (args, result.stderr)
    refused = subprocess.run(
        [archspec, "train", "specs/tiny.yaml", "--out", str(tmp_path / "run")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "pip install 'archspec[torch]'" in refused.stderr
