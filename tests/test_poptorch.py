"""The PopTorch backend, run against a recording stand-in for poptorch (tests/poptorch_stub): the
Poplar SDK cannot be installed here, so this checks what the generated program asks of PopTorch."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, SPECS, run_archspec

STUB = ROOT / "tests" / "poptorch_stub"


def _compile(cli, out, *flags):
    out.mkdir(parents=True)
    recipe = out / "small.yaml"  # the quick recipe on a small synthetic set
    recipe.write_text(
        (ROOT / "recipes" / "synthetic-quick.yaml")
        .read_text()
        .replace("synthetic:\n", "synthetic:\n  train_size: 512\n  val_size: 64\n")
    )
    result = cli("compile", SPECS / "tiny.yaml", "--backend", "poptorch", "--recipe", recipe, "--out", out, *flags)
    assert result.code == 0, result.err
    return json.loads((out / "plan.json").read_text())


def _run_stub(out, *args):
    env = {**os.environ, "PYTHONPATH": str(STUB), "POPTORCH_STUB_LOG": str(out / "stub.json")}
    proc = subprocess.run(
        [sys.executable, str(out / "ipu_train.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=out,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return json.loads((out / "stub.json").read_text()), lines


def test_generated_program_follows_the_plan_and_the_flags(tmp_path, cli):
    out = tmp_path / "ipu"
    plan = _compile(
        cli,
        out,
        "--ipus",
        "2",
        "--replicas",
        "4",
        "--micro-batch",
        "4",
        "--accumulation",
        "6",
        "--device-iterations",
        "2",
        "--available-memory-proportion",
        "0.1",
    )
    ast.parse((out / "ipu_train.py").read_text())
    record, lines = _run_stub(out, "--max-steps", "4")

    # BeginBlock: one per plan stage, on the stage's first module, IPU i for stage i
    first_modules = ["conv_stem"] + plan["boundaries"]
    assert [[path.removeprefix("model."), user, ipu] for path, user, ipu in record["blocks"]] == [
        [module, f"stage{i}", i] for i, module in enumerate(first_modules)
    ]
    assert [s["first_layer"] for s in plan["stages"]][1].startswith(plan["boundaries"][0])

    options = {name: args for name, args, _ in record["options"][:8]}  # the training options
    assert options["replicationFactor"] == [4]
    assert options["deviceIterations"] == [2]
    assert options["Training.gradientAccumulation"] == [6]
    assert options["Training.accumulationAndReplicationReductionType"] == ["Mean"]
    assert options["setAvailableMemoryProportion"] == [{"IPU0": 0.1, "IPU1": 0.1}]
    assert options["Precision.setPartialsType"] == ["torch.float16"]
    assert options["setExecutionStrategy"] == ["PipelinedExecution(AutoIncrement)"]
    assert plan["ipu"] == {
        "ipus": 2,
        "replicas": 4,
        "micro_batch": 4,
        "accumulation": 6,
        "device_iterations": 2,
        "available_memory_proportion": 0.1,
    }

    # fp16 model, fp32 optimizer state, the TF variant of RMSProp with the recipe's numbers
    optimizer = record["optimizer"]
    assert optimizer["use_tf_variant"] is True
    assert {
        optimizer[k] for k in ("accum_type", "first_order_momentum_accum_type", "second_order_momentum_accum_type")
    } == {"torch.float32"}
    assert (optimizer["lr"], optimizer["eps"], optimizer["momentum"]) == (0.008, 1e-3, 0.9)
    # one call to the IPUs makes device_iterations (2) weight updates
    assert record["training_calls"] == 2 and record["set_optimizer"] == 2
    assert record["checkpoints"] > 0  # recomputation checkpoints on block outputs
    assert record["dataloaders"][0] == {"batch_size": 4, "combined": 4 * 2 * 6}
    assert [line["step"] for line in lines if "step" in line] == [2, 4]
    assert "val_top1" in lines[-1]


def test_single_ipu_program_has_no_pipeline(tmp_path, cli):
    out = tmp_path / "one"
    _compile(cli, out, "--ipus", "1")
    record, _ = _run_stub(out, "--max-steps", "1")
    names = [name for name, _, _ in record["options"]]
    assert "setExecutionStrategy" not in names and record["checkpoints"] == 0
    assert len(record["blocks"]) == 1


@pytest.mark.slow  # tens of seconds: in the slow run, which CI runs too
def test_train_backend_poptorch(tmp_path, cli):
    result = cli("train", SPECS / "tiny.yaml", "--backend", "poptorch", "--out", tmp_path / "run")
    assert result.code == 2
    assert result.err.strip() == "PopTorch is not installed (it ships with Graphcore's Poplar SDK)"
    env = {"PYTHONPATH": str(STUB), "POPTORCH_STUB_LOG": str(tmp_path / "stub.json")}
    recipe = tmp_path / "small.yaml"
    recipe.write_text("global_batch_size: 16\nsynthetic: {train_size: 256, val_size: 32}\n")
    proc = run_archspec(
        "train",
        SPECS / "tiny.yaml",
        "--backend",
        "poptorch",
        "--stages",
        "2",
        "--max-steps",
        "2",
        "--recipe",
        recipe,
        "--out",
        tmp_path / "run",
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.code == 0, proc.err[-3000:]
    assert {"model.py", "plan.json", "ipu_train.py", "recipe.yaml"} <= {p.name for p in (tmp_path / "run").iterdir()}
    assert json.loads((tmp_path / "stub.json").read_text())["training_calls"] == 2
    # the run directory is claimed, and flags the IPU program does not take are refused
    again = run_archspec("train", SPECS / "tiny.yaml", "--backend", "poptorch", "--out", tmp_path / "run", env=env)
    assert again.code == 2 and "already holds a run" in again.err
    refused = run_archspec(
        "train",
        SPECS / "tiny.yaml",
        "--backend",
        "poptorch",
        "--batch-size",
        "64",
        "--out",
        tmp_path / "other",
        env=env,
    )
    assert refused.code == 2 and "--batch-size: not with --backend poptorch" in refused.err


@pytest.mark.parametrize(
    "args,expected",
    [
        (("--backend", "poptorch"), "--backend poptorch needs --out DIR and --ipus K"),
        (("--ipus", "2"), "--ipus goes with --backend poptorch"),
        (
            ("--backend", "ipu"),
            "Invalid value for '--backend': must be one of torch, torch-pipeline, poptorch, got 'ipu'",
        ),
    ],
)
def test_compile_backend_bad_input(cli, args, expected):
    result = cli("compile", SPECS / "tiny.yaml", *args)
    assert result.code == 2 and expected in result.err, result.err
