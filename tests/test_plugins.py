"""A user's package extends archspec through entry points, without editing it: tests/plugin holds
one (`archspec_example_plugin`, with its dist-info) that adds the `rms` norm and the `layer-list`
backend; with it on the path, validate, compile, stats and train use them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, run_archspec

PLUGIN = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "tests" / "plugin"), os.environ.get("PYTHONPATH")]))}
SPEC = (
    "name: p\nbase: efficientnet-b0\nwidth_multiplier: 0.25\ndepth_multiplier: 0.25\nnorm: rms\n"
    "resolution: {native: 32, train: native, test: [32]}\nnum_classes: 10\n"
)


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(SPEC)
    return path


def test_validate_knows_a_plugin_norm_and_suggests_it(spec, tmp_path):
    assert run_archspec("validate", spec, env=PLUGIN).code == 0
    typo = tmp_path / "q.yaml"
    typo.write_text(SPEC.replace("norm: rms", "norm: rmz"))
    result = run_archspec("validate", typo, env=PLUGIN)
    assert result.code == 2 and "'rms'" in result.err and "(did you mean 'rms'?)" in result.err
    assert "'rms'" not in run_archspec("validate", typo).err  # not installed: not a choice


def test_compile_and_stats_use_the_plugin_norm_and_backend(spec, tmp_path):
    out = tmp_path / "out"
    compiled = run_archspec("compile", spec, "--backend", "layer-list", "--out", out, env=PLUGIN)
    assert compiled.code == 0, compiled.err
    rows = (out / "layers.txt").read_text().splitlines()
    stats = json.loads(run_archspec("stats", spec, "--json", env=PLUGIN).out)
    assert sum(int(r.split("\t")[2]) for r in rows) == stats["params"]
    assert sum(int(r.split("\t")[3]) for r in rows) == stats["macs"]
    torch_out = tmp_path / "torch"
    assert run_archspec("compile", spec, "--out", torch_out, env=PLUGIN).code == 0
    # the generated model.py carries the plug-in's layer class; the live model agrees with stats
    check = (
        "import runpy, sys, torch, archspec\n"
        "built = runpy.run_path(sys.argv[1])['build']()\n"
        "model = archspec.build_model(sys.argv[2])\n"
        "built.load_state_dict(model.state_dict())\n"
        "x = torch.randn(2, 3, 32, 32)\n"
        "assert torch.equal(built.eval()(x), model.eval()(x))\n"
        "print(sum(p.numel() for p in model.parameters()))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", check, str(torch_out / "model.py"), str(spec)],
        capture_output=True,
        text=True,
        env={**os.environ, **PLUGIN},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == stats["params"]


def test_train_runs_the_plugin_backend(spec, tmp_path):
    run = tmp_path / "run"
    result = run_archspec("train", spec, "--backend", "layer-list", "--out", run, env=PLUGIN)
    assert result.code == 0, result.err
    assert json.loads((run / "layer-list.json").read_text())["loss"] > 0


@pytest.mark.slow
def test_the_runner_trains_a_plugin_norm(spec, tmp_path):
    run = tmp_path / "run"
    args = ("train", spec, "--dataset", "synthetic", "--max-steps", "2", "--batch-size", "4", "--out", run)
    result = run_archspec(*args, env=PLUGIN, timeout=300)
    assert result.code == 0, result.err
    assert (run / "checkpoint.pt").exists()
