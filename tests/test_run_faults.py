"""Runs that can always resume, one writer per run directory, and checkpoints that are verified:
faults a crashing machine or a second user cause, each ending in one line (exit 2) or a run that
--resume completes to an uninterrupted run's weights."""

from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch

from archspec.runner import checkpoint
from archspec.runner.rundir import RunDir
from conftest import SPECS, checkpoint_state, kill_when, run_archspec, start_archspec

TINY = SPECS / "tiny.yaml"
RECIPE = """\
global_batch_size: 16
optimizer: {lr: 0.008}
schedule: {warmup_epochs: 0.1}
checkpoint_every_steps: 4
log_every_steps: 100
synthetic: {train_size: 320, val_size: 32, canvas: 48}
"""


def _args(tmp: Path, out: Path, *extra: str) -> list[str]:
    recipe = tmp / "recipe.yaml"
    if not recipe.exists():
        recipe.write_text(RECIPE)
    return ["train", str(TINY), "--recipe", str(recipe), "--resolution", "32", "--seed", "3", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted 8-step run, for the resumed ones to end equal to."""
    tmp = tmp_path_factory.mktemp("reference")
    done = run_archspec(*_args(tmp, tmp / "run", "--max-steps", "8"), cwd=tmp, timeout=600)
    assert done.code == 0, done.err
    return tmp / "run"


def _same(a: dict, b: dict) -> list[str]:
    return [k for k in a if not (k == "step" and a[k] == b[k]) and not torch.equal(a[k], b[k])]


def _ema(run: Path) -> dict:
    return checkpoint.load(run / "ema.pt")


@pytest.mark.slow  # tens of seconds: in the slow run, which CI runs too
def test_a_run_killed_before_its_first_checkpoint_resumes(tmp_path, reference):
    run = tmp_path / "run"
    proc = start_archspec(*_args(tmp_path, run, "--max-steps", "8"), cwd=tmp_path)
    kill_when(proc, lambda: (run / "run.json").exists())
    assert not (run / "checkpoint.pt").exists(), "the run wrote a checkpoint before it could be killed"
    again = run_archspec(*_args(tmp_path, run, "--max-steps", "8"), cwd=tmp_path)
    assert again.code == 2 and "--resume" in again.err  # a plain re-run still refuses the directory
    resumed = run_archspec(*_args(tmp_path, run, "--resume"), cwd=tmp_path, timeout=600)
    assert resumed.code == 0, resumed.err
    assert "no checkpoint yet: the run starts over" in resumed.err
    assert not _same(checkpoint_state(reference), checkpoint_state(run))
    assert torch.equal(_ema(run)["model"]["classifier.weight"], _ema(reference)["model"]["classifier.weight"])


@pytest.mark.slow  # tens of seconds: in the slow run, which CI runs too
def test_ema_left_behind_by_a_kill_between_the_two_writes_is_repaired(tmp_path, reference):
    run = tmp_path / "run"
    assert run_archspec(*_args(tmp_path, run, "--max-steps", "4"), cwd=tmp_path, timeout=600).code == 0
    behind = tmp_path / "ema-step-4.pt"
    shutil.copy(run / "ema.pt", behind)
    assert run_archspec(*_args(tmp_path, run, "--resume", "--max-steps", "8"), cwd=tmp_path, timeout=600).code == 0
    shutil.copy(behind, run / "ema.pt")  # the directory a kill between checkpoint.pt and ema.pt leaves
    assert checkpoint.ema_weights(RunDir(run))["step"] == 8  # readers take the newer copy
    resumed = run_archspec(*_args(tmp_path, run, "--resume"), cwd=tmp_path, timeout=600)
    assert resumed.code == 0, resumed.err
    assert _ema(run)["step"] == 8 and not _same(_ema(reference)["model"], _ema(run)["model"])


@pytest.mark.slow  # tens of seconds: in the slow run, which CI runs too
def test_one_writer_per_run_directory(tmp_path):
    run = tmp_path / "run"
    first = start_archspec(*_args(tmp_path, run, "--max-steps", "40"), cwd=tmp_path)
    deadline = time.time() + 120
    while not (run / "run.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    second = run_archspec(*_args(tmp_path, run, "--max-steps", "40"), cwd=tmp_path)
    resumer = run_archspec(*_args(tmp_path, run, "--resume"), cwd=tmp_path)
    assert first.wait(timeout=600) == 0
    for other in (second, resumer):
        assert other.code == 2 and len(other.err.strip().splitlines()) == 1, other.err
        assert "being written by another archspec process" in other.err
    logged = [
        line.split(",")[1] for line in (run / "metrics.csv").read_text().splitlines()[1:] if line.startswith("train,")
    ]
    assert logged == [str(s) for s in range(1, 41)]  # one run's rows, in order


def _damage(run: Path, how: str) -> None:
    path = run / "checkpoint.pt"
    if how == "bit-flip":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x10
        path.write_bytes(bytes(data))
        return
    state = checkpoint.load(path)
    changed = {
        "no-model": {"model": None},
        "empty-optimizer": {"optimizer": []},
        "rng-of-another-type": {"rng": [{"torch": torch.zeros(3)}]},
        "step-abc": {"step": "abc"},
        "step-negative": {"step": -5},
    }[how]
    state = {k: v for k, v in {**state, **changed}.items() if v is not None}
    checkpoint.save(path, state)


@pytest.mark.parametrize(
    "how", ["bit-flip", "no-model", "empty-optimizer", "rng-of-another-type", "step-abc", "step-negative"]
)
def test_a_damaged_or_odd_checkpoint_is_one_line(tmp_path, reference, how):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    _damage(run, how)
    result = run_archspec(*_args(tmp_path, run, "--resume", "--max-steps", "12"), cwd=tmp_path)
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert "checkpoint.pt" in result.err and "Traceback" not in result.err


def test_resume_refuses_another_spec_and_another_architecture(tmp_path, reference):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    other = tmp_path / "other.yaml"
    other.write_text(f"base: {TINY}\ngroup_size: 8\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)  # a --recipe must be a file to read, even with --resume (which keeps the run's)
    spec = run_archspec(
        "train",
        other,
        "--recipe",
        recipe,
        "--out",
        run,
        "--resume",
        cwd=tmp_path,
        env={"ARCHSPEC_SPEC_ROOTS": str(SPECS)},
    )
    assert spec.code == 2 and "is not the network" in spec.err and len(spec.err.strip().splitlines()) == 1
    # a checkpoint of another architecture in the run directory
    (run / "spec.yaml").write_text((run / "spec.yaml").read_text().replace("group_size: 16", "group_size: 8"))
    arch = run_archspec("train", run / "spec.yaml", "--recipe", recipe, "--out", run, "--resume", cwd=tmp_path)
    assert arch.code == 2 and "weights of another network" in arch.err and len(arch.err.strip().splitlines()) == 1


def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_last_one(tmp_path, reference):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    before = (run / "checkpoint.pt").read_bytes()
    size = len(before)

    def small_files() -> None:  # writes past half a checkpoint fail as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))

    result = run_archspec(*_args(tmp_path, run, "--resume", "--max-steps", "12"), cwd=tmp_path, preexec_fn=small_files)
    assert result.code == 1 and len(result.err.strip().splitlines()) >= 1
    last = result.err.strip().splitlines()[-1]
    assert (
        last.startswith(f"file size limit: {run / 'checkpoint.pt'} (File too large); ")
        and "Traceback" not in result.err
    )
    assert f"the last good checkpoint ({run / 'checkpoint.pt'}, step 8) is intact" in last, result.err
    assert (run / "checkpoint.pt").read_bytes() == before


def test_a_disk_that_fills_during_a_run_is_one_line_status_1_and_keeps_the_last_checkpoint(
    tmp_path, reference, cli, monkeypatch
):
    """ENOSPC while the next checkpoint is written (simulated: fsync of its temp file fails as on a
    full disk): `disk full: <file>`, exit 1, and the previous checkpoint, ema.pt and metrics.csv are
    as they were."""
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    kept = {name: (run / name).read_bytes() for name in ("checkpoint.pt", "ema.pt", "metrics.csv")}
    real_fsync = os.fsync

    def full_for_checkpoints(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".checkpoint.pt.tmp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_for_checkpoints)
    result = cli(*_args(tmp_path, run, "--resume", "--max-steps", "12"))
    assert result.code == 1 and "Traceback" not in result.err, result.err
    assert result.err.strip().splitlines()[-1] == (
        f"disk full: {run / 'checkpoint.pt'} (No space left on device); "
        f"the last good checkpoint ({run / 'checkpoint.pt'}, step 8) is intact"
    )
    assert (run / "checkpoint.pt").read_bytes() == kept["checkpoint.pt"]
    assert (run / "ema.pt").read_bytes() == kept["ema.pt"]
    assert (run / "metrics.csv").read_bytes().startswith(kept["metrics.csv"])  # the rows before, as they were
    assert not list(run.glob(".*.tmp"))


@pytest.mark.parametrize("epochs", ["nan", "inf", "1e308", "0", "-1"])
def test_finetune_epochs_that_mean_no_run(tmp_path, reference, epochs):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    result = run_archspec("finetune", run, "--resolution", "64", "--blocks", "1", "--epochs", epochs, cwd=tmp_path)
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1 and "--epochs" in result.err, result.err
    assert not list(run.glob("finetuned*"))


def test_a_launched_process_error_is_the_launcher_s_one_line(tmp_path):
    result = run_archspec(
        *_args(tmp_path, tmp_path / "run", "--nproc", "2", "--data", str(tmp_path / "nowhere")),
        cwd=tmp_path,
        timeout=300,
    )
    assert result.code == 2, result.err
    assert result.err.strip().splitlines() == [f"--data: {tmp_path / 'nowhere'}: no such directory"], result.err


def test_big_seeds_are_bounded(tmp_path):
    big = run_archspec(*_args(tmp_path, tmp_path / "run", "--seed", str(2**63)), cwd=tmp_path)
    assert big.code == 2 and len(big.err.strip().splitlines()) == 1 and "--seed" in big.err
    from archspec.runner.options import TrainOptions
    from archspec.runner.train import run

    with pytest.raises(Exception, match="2\\^63"):
        run(TrainOptions(spec=str(TINY), out=tmp_path / "api", seed=2**64))


def test_an_old_protocol_pickle_is_one_line_without_torch_s_warning(tmp_path, reference):
    """torch warns in two lines about pickles of protocol 4 (which weights-only loading cannot read):
    the user sees one."""
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    torch.save({"step": 8, "model": {"w": torch.ones(1)}}, run / "ema.pt", pickle_protocol=4)
    (run / "checkpoint.pt").unlink()
    result = run_archspec("eval", run, "--resolutions", "32", cwd=tmp_path)
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert "ema.pt: not a readable" in result.err and "Warning" not in result.err
