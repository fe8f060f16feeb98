"""proxy.repeats: a candidate's accuracy is the mean over proxy runs with seeds seed, seed + 1, ...,
each kept in its own run directory, and the trust report says how well the seeds agree."""

from __future__ import annotations

import json
import statistics

import pytest
from optuna.trial import create_trial
from test_search import TINY, rows, write_search

from archspec.search import study
from archspec.search.metrics import RESULT
from archspec.search.trust import proxy_trust


def test_each_seed_trains_its_own_run_and_the_accuracy_is_their_mean(tmp_path, cli):
    extra = "proxy: {batch_size: 8, steps: 2, train_images: 16, val_images: 16, seed: 5, repeats: 3}\n"
    search = write_search(tmp_path / "r.yaml", {"group_size": [16]}, [("accuracy", "maximize")], extra, base=TINY)
    study.run_search(search, tmp_path / "out")
    (trial,) = rows(tmp_path / "out")
    assert trial["state"] == "complete", trial
    home = tmp_path / "out" / "trials" / trial["network"]
    runs = [json.loads((home / name / "run.json").read_text()) for name in ("run", "run-seed6", "run-seed7")]
    assert [r["options"]["seed"] for r in runs] == [5, 6, 7]
    by_seed = [r["summary"]["val_top1_raw"] for r in runs]  # proxy.weights: raw, judged where it trained
    assert [float(a) for a in trial["accuracy_by_seed"].split()] == pytest.approx(by_seed, abs=1e-6)
    assert float(trial["accuracy"]) == pytest.approx(statistics.fmean(by_seed))
    shown = cli("search", "show", tmp_path / "out")
    assert shown.code == 0 and "3 proxy seeds: Kendall tau n/a between seeds over 1" in shown.out, shown


def _trial(number, by_seed):
    attrs = {RESULT: {"metrics": {"accuracy": statistics.fmean(by_seed)}, "accuracy_by_seed": by_seed}}
    t = create_trial(values=[statistics.fmean(by_seed)], user_attrs=attrs)
    t.number = number
    return t


def test_the_trust_report_says_how_well_the_seeds_agree():
    """Four candidates, three seeds: seeds 0 and 1 rank them alike (tau 1), seed 2 in reverse (tau -1
    with each); the spreads over the seeds are 0.4, 0.2, 0.1 and 0.3, so the median is 0.25."""
    by_seed = [[0.5, 0.6, 0.9], [0.6, 0.7, 0.8], [0.7, 0.8, 0.7], [0.8, 0.9, 0.6]]
    trust = proxy_trust([_trial(i, s) for i, s in enumerate(by_seed)], [10], 10, 1000)
    seeds = trust["seeds"]
    assert seeds["repeats"] == 3 and seeds["candidates"] == 4
    assert seeds["kendall_tau_between_seeds"] == pytest.approx([1.0, -1.0, -1.0])
    assert seeds["mean_kendall_tau"] == pytest.approx(-1 / 3)
    assert seeds["median_spread"] == pytest.approx(0.25)
    assert [c["accuracy_by_seed"] for c in trust["candidates"]] == by_seed


def test_one_seed_reports_no_agreement():
    trust = proxy_trust([_trial(0, [0.5]), _trial(1, [0.7])], [10], 10, 1000)
    assert "seeds" not in trust and "accuracy_by_seed" not in trust["candidates"][0]
