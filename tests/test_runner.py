"""The shared runner: train, fine-tune, evaluate; resumption, multi-process, bad input."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from archspec.runner.checkpoint import load
from conftest import ROOT, SPECS, run_archspec

TINY = SPECS / "tiny.yaml"


def _recipe(tmp: Path, text: str) -> Path:
    path = tmp / "recipe.yaml"
    path.write_text(text)
    return path


SMALL = """\
epochs: 1
global_batch_size: 16
optimizer: {lr: 0.008}
schedule: {warmup_epochs: 0.1}
augment: {crop_scale: [0.35, 1.0]}
checkpoint_every_steps: 4
log_every_steps: 100
synthetic: {train_size: 640, val_size: 64, canvas: 64}
"""


def _train_args(out: Path, recipe: Path, *extra: str) -> list[str]:
    return ["train", str(TINY), "--recipe", str(recipe), "--resolution", "48", "--out", str(out), *extra]


def test_demo_train_finetune_eval(tmp_path, cli):
    run = tmp_path / "demo"
    # the paper's recipe on a small synthetic set, fine-tuning at a global batch the set can fill
    recipe = _recipe(tmp_path, "finetune: {global_batch_size: 64}\nsynthetic: {train_size: 960, val_size: 100}\n")
    result = cli(
        "train",
        TINY,
        "--recipe",
        recipe,
        "--epochs",
        "1",
        "--max-steps",
        "30",
        "--batch-size",
        "16",
        "--resolution",
        "64",
        "--out",
        run,
    )
    assert result.code == 0, result.err
    for name in ("spec.yaml", "recipe.yaml", "resolved.yaml", "run.json", "metrics.csv", "checkpoint.pt", "ema.pt"):
        assert (run / name).is_file(), name
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    result = cli("finetune", run, "--resolution", "96", "--blocks", "2", "--max-steps", "10")
    assert result.code == 0, result.err
    again = cli("finetune", run, "--resolution", "96", "--blocks", "1", "--max-steps", "1")  # kept, unless forced
    assert again.code == 2 and "already holds a fine-tune at 96 px" in again.err and "--force" in again.err
    result = cli("eval", run, "--resolutions", "64,96", "--json")
    assert result.code == 0, result.err
    payload = json.loads(result.out)
    assert [r["resolution"] for r in payload["results"]] == [64, 96]
    # each resolution is tested with its own weights: the EMA at the training resolution, the fine-tune at 96 px
    assert [(r["weights"], r["weights_file"]) for r in payload["results"]] == [
        ("ema", "ema.pt"),
        ("finetuned", "finetuned-r96.pt"),
    ]
    text = cli("eval", run, "--resolutions", "64,96").out
    assert "ema.pt (EMA, trained at 64 px)" in text and "finetuned-r96.pt (fine-tuned at 96 px, last 2 blocks" in text
    assert all(0 <= r["top1"] <= r["top5"] <= 1 and r["congruent"] for r in payload["results"])

    # the frozen parameters are bit for bit the EMA weights fine-tuning started from
    ema, tuned = load(run / "ema.pt")["model"], load(run / "finetuned-r96.pt")["model"]
    summary = json.loads((run / "finetune-r96.json").read_text())
    assert summary["first_trainable_layer"] == "blocks.5.0.conv_dw"  # the last stride-2 layer
    # B0's table: stage 5 holds the last stride-2 layer. State dicts list layers in forward order:
    # everything from that layer on may train, everything before it must not move.
    keys = list(ema)
    boundary = keys.index("blocks.5.0.conv_dw.weight")
    frozen, trainable = keys[:boundary], keys[boundary:]
    assert "blocks.5.0.conv_pw.weight" in frozen and "classifier.weight" in trainable
    assert all(torch.equal(ema[k], tuned[k]) for k in frozen)
    assert sum(not torch.equal(ema[k], tuned[k]) for k in trainable) > len(trainable) // 2


@pytest.mark.slow
def test_it_learns_the_synthetic_set(tmp_path, cli):
    """Tiny G16 LN+PN at 64 px, synthetic set (10 classes): >= 80% val top-1 (a 5-minute budget on
    two CPU cores; the measured time is in benchmarks/results/runner_cpu.json)."""
    run = tmp_path / "learn"
    result = cli(
        "train", TINY, "--recipe", ROOT / "recipes" / "synthetic-quick.yaml", "--resolution", "64", "--out", run
    )
    assert result.code == 0, result.err
    summary = json.loads((run / "run.json").read_text())["summary"]
    assert summary["val_top1_ema"] >= 0.80, summary


def _state(run: Path) -> dict:
    state = load(run / "checkpoint.pt")
    return {
        "step": state["step"],
        **{f"model.{k}": v for k, v in state["model"].items()},
        **{f"ema.{k}": v for k, v in state["ema"].items()},
    }


@pytest.mark.slow  # tens of seconds: in the slow run, which CI runs too
def test_sigkill_then_resume_ends_with_the_same_weights(tmp_path):
    recipe = _recipe(tmp_path, SMALL)
    args = ["--max-steps", "24", "--seed", "3"]
    reference = tmp_path / "reference"
    done = run_archspec(*_train_args(reference, recipe, *args), cwd=tmp_path, timeout=600)
    assert done.code == 0, done.err

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "archspec.cli", *_train_args(killed, recipe, *args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    deadline = time.time() + 120
    while not (killed / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    at_kill = load(killed / "checkpoint.pt")["step"]
    assert at_kill < 24, "the run finished before it could be killed"

    resumed = run_archspec(*_train_args(killed, recipe, "--resume"), cwd=tmp_path, timeout=600)
    assert resumed.code == 0, resumed.err
    with open(killed / "metrics.csv") as f:  # the steps redone after the checkpoint are logged once
        logged = [int(r["step"]) for r in csv.DictReader(f) if r["phase"] == "train"]
    assert logged == list(range(1, 25))
    a, b = _state(reference), _state(killed)
    assert a["step"] == b["step"] == 24
    assert a.keys() == b.keys()
    different = [k for k in a if k != "step" and not torch.equal(a[k], b[k])]
    assert not different, different[:5]


def _losses(run: Path) -> list[float]:
    with open(run / "metrics.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f) if r["phase"] == "train"]


def test_two_processes_give_the_same_loss_curve(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHSPEC_SPEC_ROOTS", str(SPECS))  # the spec below bases on a shipped one
    # a batch-independent norm and no randomness that depends on how the batch is split
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"base: {TINY}\nhead: {{dropout: 0.0}}\ndrop_path: 0.0\n")
    # the paper's learning rate for B = 16 (B x 2^-14), no Mixup/CutMix
    recipe = _recipe(
        tmp_path,
        SMALL.replace(
            "augment: {crop_scale: [0.35, 1.0]}",
            "augment: {crop_scale: [0.35, 1.0], mixup_alpha: 0.0, cutmix_alpha: 0.0}",
        ).replace("optimizer: {lr: 0.008}\n", ""),
    )
    common = ["train", str(spec), "--recipe", str(recipe), "--resolution", "48", "--max-steps", "8"]
    one = run_archspec(*common, "--accum", "2", "--out", tmp_path / "one", cwd=tmp_path, timeout=600)
    assert one.code == 0, one.err
    two = run_archspec(*common, "--nproc", "2", "--out", tmp_path / "two", cwd=tmp_path, timeout=600)
    assert two.code == 0, two.err
    assert json.loads((tmp_path / "two" / "run.json").read_text())["world_size"] == 2
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(a) == len(b) == 8
    np.testing.assert_allclose(b, a, rtol=1e-4)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, cli, monkeypatch):
    import types

    import archspec.runner.optim as optim_module

    calls = {"n": 0}

    def poisoned_cross_entropy(logits, y, **kwargs):  # the 7th micro-batch's loss is NaN
        calls["n"] += 1
        loss = torch.nn.functional.cross_entropy(logits, y, **kwargs)
        return loss * float("nan") if calls["n"] == 7 else loss

    monkeypatch.setattr(optim_module, "F", types.SimpleNamespace(cross_entropy=poisoned_cross_entropy))
    recipe = _recipe(
        tmp_path,
        SMALL.replace("checkpoint_every_steps: 4", "checkpoint_every_steps: 1").replace(
            "augment: {crop_scale: [0.35, 1.0]}", "augment: {mixup_alpha: 0.0, cutmix_alpha: 0.0}"
        ),
    )
    run = tmp_path / "nan"
    result = cli(*_train_args(run, recipe, "--max-steps", "20"))
    assert result.code == 1, result
    line = result.err.strip().splitlines()[-1]
    assert line == (
        f"archspec: training stopped: loss became nan at step 7 (epoch 0); the last good checkpoint "
        f"({run / 'checkpoint.pt'}, step 6) is intact"
    ), line
    state = load(run / "checkpoint.pt")
    assert state["step"] == 6
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert json.loads((run / "run.json").read_text())["status"] == "diverged"


# --------------------------------------------------------------------------------------------
# real data and bad input


def _image_folder(root: Path, classes=("cat", "dog"), per_class: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = (rng.uniform(0, 1, (40, 40, 3)) * (80 + 100 * c)).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_trains_on_an_image_folder_and_skips_corrupt_images(tmp_path, cli):
    data = _image_folder(tmp_path / "data")
    (data / "train" / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    (data / "train" / "dog" / "empty.jpg").write_bytes(b"")
    recipe = _recipe(tmp_path, SMALL.replace("global_batch_size: 16", "global_batch_size: 8"))
    run = tmp_path / "run"
    result = cli("train", TINY, "--data", data, "--recipe", recipe, "--resolution", "32", "--epochs", "2", "--out", run)
    assert result.code == 0, result.err
    summary = json.loads((run / "run.json").read_text())
    assert summary["classes"] == ["cat", "dog"]
    assert "the dataset has 2 classes" in result.err
    assert summary["summary"]["skipped_images"] >= 2
    assert "unreadable images were skipped" in result.err


@pytest.mark.parametrize(
    "case",
    [
        "missing-data",
        "empty-class",
        "no-train-split",
        "unwritable-out",
        "existing-run",
        "odd-micro-batch",
        "bad-recipe",
        "unknown-dataset",
    ],
)
def test_train_bad_input_is_one_line(tmp_path, cli, case):
    data = _image_folder(tmp_path / "data")
    out = tmp_path / "run"
    args = ["train", TINY, "--max-steps", "1", "--out", out]
    expected = {
        "missing-data": "no such directory",
        "empty-class": "Found no valid file for the classes",
        "no-train-split": "no such directory",
        "unwritable-out": "cannot write",
        "existing-run": "--resume",
        "odd-micro-batch": "even micro-batch",
        "bad-recipe": "optimizer.momentum: must be < 1",
        "unknown-dataset": "--dataset",
    }[case]
    if case == "missing-data":
        args += ["--data", tmp_path / "nowhere"]
    elif case == "empty-class":
        (data / "train" / "empty").mkdir()
        (data / "val" / "empty").mkdir()
        args += ["--data", data]
    elif case == "no-train-split":
        (data / "train").rename(data / "training")
        args += ["--data", data]
    elif case == "unwritable-out":
        (tmp_path / "file").write_text("")
        args[-1] = tmp_path / "file" / "run"
    elif case == "existing-run":
        out.mkdir()
        (out / "run.json").write_text("{}")
    elif case == "odd-micro-batch":
        args += ["--batch-size", "15"]
    elif case == "bad-recipe":
        args += ["--recipe", _recipe(tmp_path, "optimizer:\n  momentum: 1.5\n")]
    elif case == "unknown-dataset":
        args += ["--dataset", "imagenet"]
    result = cli(*args)
    assert result.code == 2, result
    assert len(result.err.strip().splitlines()) == 1 and expected in result.err, result.err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from archspec.cli.app import main

    root = tmp_path_factory.mktemp("trained")
    recipe = _recipe(root, SMALL)
    try:
        main(_train_args(root / "run", recipe, "--max-steps", "4"))
    except SystemExit as exc:
        assert exc.code == 0
    return root / "run"


@pytest.mark.parametrize(
    "case",
    ["not-a-run", "missing-ema", "corrupt-ema", "pickle-bomb", "too-many-blocks", "zero-blocks", "resume-nothing"],
)
def test_checkpoint_and_finetune_bad_input_is_one_line(tmp_path, cli, trained_run, case):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    command = ["finetune", run, "--resolution", "64", "--blocks", "2", "--max-steps", "1"]
    expected = {
        "not-a-run": "not a run directory",
        "missing-ema": "no EMA weights",
        "corrupt-ema": "not a readable",
        "pickle-bomb": "not a readable",
        "too-many-blocks": "this model has 6 blocks to fine-tune",
        "zero-blocks": "got 0",
        "resume-nothing": "no run to resume",
    }[case]
    if case == "not-a-run":
        command[1] = tmp_path
    elif case == "missing-ema":  # ema.pt alone is rebuilt from the checkpoint's copy: both gone
        (run / "ema.pt").unlink()
        (run / "checkpoint.pt").unlink()
    elif case == "corrupt-ema":
        (run / "ema.pt").write_bytes(b"\x00garbage" * 10)
    elif case == "pickle-bomb":
        marker = tmp_path / "pwned"

        class Evil:
            def __reduce__(self):
                return os.system, (f"touch {marker}",)

        import pickle

        (run / "ema.pt").write_bytes(pickle.dumps({"format": 1, "model": Evil()}, protocol=2))
    elif case == "too-many-blocks":
        command[command.index("--blocks") + 1] = "99"
    elif case == "zero-blocks":
        command[command.index("--blocks") + 1] = "0"
    elif case == "resume-nothing":
        command = ["train", TINY, "--resume", "--out", tmp_path / "absent"]
    result = cli(*command)
    assert result.code == 2, result
    assert len(result.err.strip().splitlines()) == 1 and expected in result.err, result.err
    if case == "pickle-bomb":
        assert not (tmp_path / "pwned").exists()


def test_eval_bad_input(tmp_path, cli, trained_run):
    for args, expected in (
        ((trained_run, "--resolutions", "64,x"), "comma-separated integers"),
        ((trained_run, "--resolutions", "4"), "from 8 to 4096"),
        (
            (trained_run, "--resolutions", "64", "--weights", "best"),
            "Invalid value for '--weights': Value error, 'best' is not one of 'auto', 'finetuned'",
        ),
        ((tmp_path, "--resolutions", "64"), "not a run directory"),
    ):
        result = cli("eval", *args)
        assert result.code == 2 and len(result.err.strip().splitlines()) == 1 and expected in result.err, result.err


def test_eval_warns_about_incongruent_resolutions(cli, trained_run):
    result = cli("eval", trained_run, "--resolutions", "48,56", "--json")
    assert result.code == 0
    payload = json.loads(result.out)
    assert [r["congruent"] for r in payload["results"]] == [True, False]
    assert result.err.count("warning:") == 1 and "test resolution 56" in result.err


def test_recipe_file_equals_the_built_in_default():
    from archspec.runner.recipe import Recipe, load_recipe

    assert load_recipe(ROOT / "recipes" / "paper.yaml") == Recipe()
    paper = Recipe()
    assert paper.learning_rate() == 768 * 2**-14 and paper.rmsprop_decay() == 1 - 768 * 2**-14
    assert (paper.optimizer.momentum, paper.optimizer.eps, paper.optimizer.weight_decay) == (0.9, 1e-3, 1e-5)
    assert (paper.schedule.decay_rate, paper.schedule.decay_every_epochs) == (0.97, 2.4)
    assert (paper.label_smoothing, paper.ema_decay_per_epoch) == (0.1, 0.97)
    assert (paper.finetune.global_batch_size, paper.finetune.lr, paper.finetune.epochs) == (512, 0.25, 2)


def test_synthetic_set_is_deterministic_and_shows_shapes():
    from archspec.runner.data import SyntheticShapes

    a = SyntheticShapes(50, 10, 64, "train", seed=0)
    b = SyntheticShapes(50, 10, 64, "train", seed=0)
    assert all(np.array_equal(np.asarray(a.image(i)), np.asarray(b.image(i))) for i in range(10))
    val = SyntheticShapes(50, 10, 64, "val", seed=0)
    assert not np.array_equal(np.asarray(a.image(0)), np.asarray(val.image(0)))
    assert [a.label(i) for i in range(12)] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_resume_can_extend_the_epochs(tmp_path, cli):
    recipe = _recipe(tmp_path, SMALL)  # 640 images, batch 16: 40 steps an epoch
    run = tmp_path / "run"
    assert cli(*_train_args(run, recipe, "--epochs", "0.1")).code == 0
    assert json.loads((run / "run.json").read_text())["summary"]["steps"] == 4
    result = cli(*_train_args(run, recipe, "--resume", "--epochs", "0.2"))
    assert result.code == 0, result.err
    assert json.loads((run / "run.json").read_text())["summary"]["steps"] == 8
    assert "epochs: 0.2" in (run / "recipe.yaml").read_text()


def test_mixup_works_with_any_seed(tmp_path, cli):
    recipe = _recipe(tmp_path, SMALL)  # Mixup and CutMix on
    assert cli(*_train_args(tmp_path / "run", recipe, "--max-steps", "2", "--seed", "123456")).code == 0


def test_a_pipeline_run_is_not_resumed_as_a_ddp_run(tmp_path, cli):
    run = tmp_path / "pipe"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"backend": "torch-pipeline", "options": {}}))
    result = cli("train", TINY, "--resume", "--out", run)
    assert result.code == 2 and "--backend torch-pipeline" in result.err


def test_finetuning_keeps_stochastic_depth_in_the_blocks_it_trains():
    import archspec
    from archspec.runner.finetune import Frozen, trainable_layers

    spec = {"base": str(TINY), "drop_path": 0.5}
    model = archspec.build_model(spec)
    frozen = Frozen(model, trainable_layers(archspec.build_graph(archspec.resolve(archspec.load_spec(spec))), 2))
    frozen_ids = set(map(id, frozen.frozen_modules))
    assert id(model.get_submodule("blocks.5.1.drop_path")) not in frozen_ids  # after the last stride-2 layer
    assert id(model.get_submodule("blocks.3.1.drop_path")) in frozen_ids


def test_progress_without_a_terminal_is_a_line_every_few_seconds(tmp_path):
    """stderr to a file (CI, nohup, a cluster's log): a line at the start, then one every
    log_every_steps or log_every_seconds, whichever comes first, each with img/s and an ETA."""
    recipe = _recipe(tmp_path, SMALL.replace("log_every_steps: 100", "log_every_steps: 1000\nlog_every_seconds: 0.001"))
    result = run_archspec(*_train_args(tmp_path / "run", recipe, "--max-steps", "3"), cwd=tmp_path, timeout=300)
    assert result.code == 0, result.err
    lines = result.err.splitlines()
    assert lines[0].startswith("train: steps 1 to 3 of 3")
    progress = [line for line in lines if line.startswith("train step ")]
    assert [line.split()[2] for line in progress] == ["1/3", "2/3", "3/3"]
    assert all(re.search(r"\d+ img/s eta \d+:\d\d:\d\d$", line) for line in progress), progress


@pytest.mark.parametrize("shape", ["step", "cosine"])
def test_the_schedule_warms_up_then_decays_as_the_recipe_says(shape):
    from archspec.runner.optim import lr_schedule
    from archspec.runner.recipe import load_recipe

    recipe = load_recipe(None, {"schedule.shape": shape, "schedule.warmup_epochs": 1, "schedule.decay_every_epochs": 2})
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    total, per_epoch = 110, 10
    schedule = lr_schedule(optimizer, recipe, per_epoch, 0.1, total)

    def rate(step: int) -> float:
        schedule.step_update(step)
        return optimizer.param_groups[0]["lr"]

    assert rate(0) == pytest.approx(0.001)  # warm-up from 1% of the rate
    assert rate(5) == pytest.approx(0.001 + 5 * (0.1 - 0.001) / 10)
    assert rate(10) == pytest.approx(0.1)
    if shape == "step":  # x0.97 every two epochs, counted from the warm-up's end (as timm counts)
        assert rate(29) == pytest.approx(0.1) and rate(30) == pytest.approx(0.1 * 0.97)
        assert rate(total - 1) == pytest.approx(0.1 * 0.97**4)
    else:  # half-way down the cosine at half of the steps after the warm-up, about 0 at the last
        assert rate(60) == pytest.approx(0.05)
        assert all(rate(s) > rate(s + 1) for s in range(10, total - 1))
        assert rate(total - 1) < 1e-4
