"""torch-pipeline: the plan executed with torch.distributed.pipelining in two CPU processes (gloo)
gives the single-process model's loss and gradients on the same batch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import archspec
from conftest import ROOT, SPECS, checkpoint_state, kill_when, run_archspec, start_archspec

TINY = SPECS / "tiny.yaml"


def _reference():
    spec = archspec.load_spec({"base": str(TINY), "head": {"dropout": 0.0}, "drop_path": 0.0})
    model = archspec.build_model(spec, seed=0).train()
    x = torch.randn(8, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 10, (8,), generator=torch.Generator().manual_seed(2))
    # the pipeline's objective: the mean of the two micro-batches' mean losses
    loss = (F.cross_entropy(model(x[:4]), y[:4]) + F.cross_entropy(model(x[4:]), y[4:])) / 2
    loss.backward()
    return loss.item(), {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_two_stage_pipeline_equals_one_process(tmp_path, schedule):
    out = tmp_path / "result.pt"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node=2",
            str(ROOT / "tests" / "pipeline_worker.py"),
            str(out),
            str(TINY),
            schedule,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = torch.load(out, weights_only=True)
    loss, grads = _reference()
    assert result["boundaries"] and result["boundaries"][0].startswith("blocks.")
    assert result["loss"] == pytest.approx(loss, rel=1e-4)
    assert set(result["grads"]) == set(grads)
    for name, grad in grads.items():
        # relative to each gradient's norm: the two runs sum in different orders (threads, micro-batches)
        error = (result["grads"][name] - grad).norm() / grad.norm().clamp_min(1e-12)
        assert error <= 1e-4, (name, error.item())


def test_train_with_the_pipeline_backend(tmp_path, cli):
    run = tmp_path / "pipe"
    recipe = tmp_path / "small.yaml"
    recipe.write_text("global_batch_size: 16\nsynthetic: {train_size: 640, val_size: 200, canvas: 80}\n")
    result = run_archspec(
        "train",
        TINY,
        "--dataset",
        "synthetic",
        "--backend",
        "torch-pipeline",
        "--stages",
        "2",
        "--max-steps",
        "5",
        "--out",
        run,
        "--recipe",
        recipe,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.code == 0, result.err[-3000:]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["backend"] == "torch-pipeline" and info["summary"]["steps"] == 5
    assert len(info["plan"]["stages"]) == 2
    # the gathered EMA weights are a whole model, usable by finetune and eval
    payload = json.loads(cli("eval", run, "--resolutions", "64", "--json").out)
    assert payload["results"][0]["weights"] == "ema" and payload["results"][0]["images"] == 200


@pytest.mark.slow
def test_a_killed_pipeline_run_resumes_to_the_same_weights(tmp_path):
    """SIGKILL of every process of a 2-stage run after its first checkpoint; --resume ends where an
    uninterrupted run of the same seed ends, with the same run directory as a data-parallel run."""
    recipe = tmp_path / "small.yaml"
    recipe.write_text(
        "global_batch_size: 16\ncheckpoint_every_steps: 2\nlog_every_steps: 100\n"
        "synthetic: {train_size: 320, val_size: 32, canvas: 48}\n"
    )
    common = [
        "train",
        TINY,
        "--backend",
        "torch-pipeline",
        "--stages",
        "2",
        "--accum",
        "2",
        "--resolution",
        "48",
        "--recipe",
        recipe,
        "--max-steps",
        "8",
        "--seed",
        "5",
    ]
    reference = run_archspec(*common, "--out", tmp_path / "reference", timeout=600, cwd=tmp_path)
    assert reference.code == 0, reference.err[-3000:]

    killed = tmp_path / "killed"
    proc = start_archspec(*common, "--out", killed, cwd=tmp_path)
    kill_when(proc, lambda: (killed / "checkpoint.pt").exists())
    at_kill = checkpoint_state(killed)["step"]
    assert at_kill < 8, "the run finished before it could be killed"
    resumed = run_archspec(*common, "--out", killed, "--resume", timeout=600, cwd=tmp_path)
    assert resumed.code == 0, resumed.err[-3000:]

    a, b = checkpoint_state(tmp_path / "reference"), checkpoint_state(killed)
    assert a["step"] == b["step"] == 8 and a.keys() == b.keys()
    assert not [k for k in a if k != "step" and not torch.equal(a[k], b[k])]
    files = {p.name for p in killed.iterdir()}
    assert {"spec.yaml", "recipe.yaml", "resolved.yaml", "run.json", "metrics.csv", "checkpoint.pt", "ema.pt"} <= files
    info = json.loads((killed / "run.json").read_text())
    assert info["status"] == "finished" and info["backend"] == "torch-pipeline" and info["summary"]["steps"] == 8


def test_pipeline_bad_input(tmp_path, cli):
    result = cli("train", TINY, "--backend", "torch-pipeline", "--stages", "2", "--nproc", "2", "--out", tmp_path / "x")
    assert result.code == 2 and "--nproc: goes with --backend torch" in result.err
    result = cli("train", TINY, "--backend", "pipeline", "--out", tmp_path / "y")
    assert (
        result.code == 2
        and "Invalid value for '--backend': must be one of torch, torch-pipeline, poptorch, got 'pipeline'"
        in result.err
    )
