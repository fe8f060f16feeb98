"""The paper's train-low / fine-tune-high workflow on real images: scikit-learn's bundled
handwritten digits (docs/real-data.md). A tiny G16 LN+PN network trained at 64 px, fine-tuned at
96 px, tested at 64, 96 and 128 px."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import ROOT, SPECS, run_archspec

sys.path.insert(0, str(ROOT / "scripts"))
from digits_imagefolder import write_digits


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    assert write_digits(root / "data") == (1437, 360)
    run = root / "run"
    args = ["--data", root / "data", "--recipe", ROOT / "recipes" / "synthetic-quick.yaml", "--out", run]
    done = run_archspec("train", SPECS / "tiny.yaml", *args, timeout=900, cwd=root)
    assert done.code == 0, done.err
    tuned = run_archspec("finetune", run, "--resolution", "96", "--blocks", "2", timeout=900, cwd=root)
    assert tuned.code == 0, tuned.err
    return run, tuned.err


def _eval(run, weights: str) -> dict[int, dict]:
    result = run_archspec("eval", run, "--resolutions", "64,96,128", "--weights", weights, "--json", timeout=600)
    assert result.code == 0, result.err
    return {r["resolution"]: r for r in json.loads(result.out)["results"]}


@pytest.mark.slow
def test_fine_tuning_at_the_test_resolution_beats_the_weights_trained_below_it(trained):
    run, log = trained
    ema, auto = _eval(run, "ema"), _eval(run, "auto")
    finetuned = run_archspec("eval", run, "--resolutions", "96", "--weights", "finetuned", "--json", timeout=600)
    tuned_96 = json.loads(finetuned.out)["results"][0]
    assert tuned_96["top1"] > ema[96]["top1"], (tuned_96, ema[96])
    # eval picks, per resolution, the weights that belong to it, and names them
    assert {r: auto[r]["weights_file"] for r in auto} == {64: "ema.pt", 96: "finetuned-r96.pt", 128: "ema.pt"}
    assert auto[96]["top1"] == tuned_96["top1"] and auto[64]["top1"] == ema[64]["top1"]
    # the fine-tune is sized by the data: 1,437 images make a global batch of 143, not the paper's 512
    summary = json.loads((run / "finetune-r96.json").read_text())
    assert summary["global_batch_size"] <= 1437 // 10 and summary["steps"] >= 20
    assert "fine-tuning at a global batch of" in log
