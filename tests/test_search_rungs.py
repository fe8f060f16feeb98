"""Multi-fidelity rungs: promotion by non-dominated rank against a brute-force reference, and a
search that resumes after a kill at a rung boundary or mid-rung without redoing finished work. The
searches here are on cost metrics (milliseconds a trial): the rung bookkeeping is the same."""

from __future__ import annotations

import itertools
import json
import math
import random

import optuna
import pytest
from optuna.trial import TrialState, create_trial
from test_search import TINY, rows, write_search

from archspec.search import evaluate, study
from archspec.search.metrics import RESULT
from archspec.search.rungs import promote
from archspec.search.trust import kendall_tau, proxy_trust

DIMS = {"group_size": [1, 4, 16], "expansion_ratio": [2.0, 3.0, 4.0, 6.0]}  # 12 networks
GOALS = [("macs", "minimize"), ("params", "maximize")]
RUNGS = "fidelity: {rungs: [0.25, 0.5, 1], keep: 0.5}\nbudget: {trials: 12}\n"


def _dominates(a, b, signs):
    return all(s * x >= s * y for s, x, y in zip(signs, a, b)) and a != b


def _rank(i, values, signs):
    """The longest chain of points dominating one another that ends at i: its non-dominated rank."""
    above = [j for j in range(len(values)) if _dominates(values[j], values[i], signs)]
    return 1 + max((_rank(j, values, signs) for j in above), default=-1)


def _crowding(i, front, values):
    total = 0.0
    for m in range(len(values[i])):
        ordered = sorted(front, key=lambda j: (values[j][m], j))
        k = ordered.index(i)
        if k in (0, len(ordered) - 1):
            return math.inf
        span = values[ordered[-1]][m] - values[ordered[0]][m]
        total += (values[ordered[k + 1]][m] - values[ordered[k - 1]][m]) / span if span else 0.0
    return total


@pytest.mark.parametrize("seed", range(12))
def test_promotion_takes_the_best_ranks_then_the_least_crowded(seed):
    """Among all subsets of the promoted size, the one chosen has the smallest sum of ranks, and on
    the front that is cut, no point left out is less crowded than one taken."""
    rng = random.Random(seed)
    n, objectives = rng.randint(2, 9), rng.randint(2, 3)
    values = [[rng.randint(0, 4) for _ in range(objectives)] for _ in range(n)]
    signs = [rng.choice([1.0, -1.0]) for _ in range(objectives)]
    size = rng.randint(1, n)
    chosen = promote(values, signs, size)
    ranks = [_rank(i, values, signs) for i in range(n)]
    best = min(sum(ranks[i] for i in s) for s in itertools.combinations(range(n), size))
    assert len(chosen) == size and sum(ranks[i] for i in chosen) == best
    cut = max(ranks[i] for i in chosen)
    front = [i for i in range(n) if ranks[i] == cut]
    taken = [_crowding(i, front, values) for i in front if i in chosen]
    left = [_crowding(i, front, values) for i in front if i not in chosen]
    assert not left or min(taken) >= max(left)


def _events(out):
    return [json.loads(line) for line in (out / "evaluations.jsonl").read_text().splitlines()]


def _summary(out):
    """Per rung, the points that ran there (a killed trial's retry in its place); and the front."""
    trials = [t for t in rows(out) if t["state"] != "fail"]
    ran = {r: sorted(t["group_size"] + "/" + t["expansion_ratio"] for t in trials if t["rung"] == r) for r in "012"}
    front = json.loads((out / "front.json").read_text())["front"]
    return ran, sorted(json.dumps(f["point"], sort_keys=True) for f in front)


def test_rungs_promote_half_each_time_and_the_front_is_the_top_rung(tmp_path):
    search = write_search(tmp_path / "r.yaml", DIMS, GOALS, RUNGS, base=TINY)
    study.run_search(search, tmp_path / "out")
    ran, front = _summary(tmp_path / "out")
    assert [len(ran[r]) for r in "012"] == [12, 6, 3]
    assert set(ran["2"]) <= set(ran["1"]) <= set(ran["0"])
    assert len(front) >= 1 and all(t["state"] == "pruned" for t in rows(tmp_path / "out") if t["rung"] != "2")


class Killed(KeyboardInterrupt):
    """What a kill looks like to the worker: an exception that is not an Exception."""


def _kill_once(monkeypatch, cls, name, when):
    real, calls = getattr(cls, name), []

    def wrapped(self, *args, **kwargs):
        calls.append(args)
        if when(args, len(calls)):
            monkeypatch.setattr(cls, name, real)
            raise Killed
        return real(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, wrapped)


@pytest.mark.parametrize("where", ["rung boundary", "mid-rung"])
def test_a_search_killed_at_a_rung_resumes_without_redoing_work(tmp_path, monkeypatch, where):
    search = write_search(tmp_path / "r.yaml", DIMS, GOALS, RUNGS, base=TINY)
    study.run_search(search, tmp_path / "whole")
    if where == "rung boundary":  # after the first promotion is enqueued, before the rest
        _kill_once(monkeypatch, optuna.Study, "enqueue_trial", lambda args, n: n == 2)
    else:  # in the second evaluation of rung 1
        rung_1 = lambda args, n: args[0].user_attrs.get("rung") == 1 and n > 13  # noqa: E731
        _kill_once(monkeypatch, evaluate.Evaluator, "metrics", rung_1)
    with pytest.raises(KeyboardInterrupt):
        study.run_search(search, tmp_path / "killed")
    done_before = {(e["network"], e["rung"]) for e in _events(tmp_path / "killed") if e["event"] == "done"}
    study.run_search(search, tmp_path / "killed", resume=True)
    done = [(e["network"], e["rung"]) for e in _events(tmp_path / "killed") if e["event"] == "done"]
    assert len(done) == len(set(done))  # nothing evaluated twice
    assert done_before < set(done)
    assert _summary(tmp_path / "killed") == _summary(tmp_path / "whole")


@pytest.mark.parametrize("seed", range(6))
def test_kendall_tau_is_scipys_tau_b(seed):
    from scipy.stats import kendalltau

    rng = random.Random(seed)
    x = [rng.randint(0, 4) for _ in range(9)]
    y = [rng.randint(0, 4) for _ in range(9)]
    assert kendall_tau(x, y) == pytest.approx(kendalltau(x, y).statistic)


def _trial(number, accuracy, rung=0, promoted_from=None, state=TrialState.COMPLETE):
    attrs = {RESULT: {"metrics": {"accuracy": accuracy}}, "rung": rung}
    if promoted_from is not None:
        attrs["promoted_from"] = promoted_from
    t = create_trial(state=state, values=None if state == TrialState.PRUNED else [accuracy], user_attrs=attrs)
    t.number = number
    return t


def test_trust_ranks_each_rung_against_the_top_and_warns_at_chance():
    """Three candidates promoted through two rungs: rung 0 orders them as the top does (tau 1), rung 1
    in reverse (tau -1). With 1000 validation images on 10 classes a guesser stays below 10% + 3
    binomial sigma (~12.8%): 11% cannot be told from chance, 30% can."""
    top = [0.11, 0.30, 0.12]
    trials = [_trial(i, a, state=TrialState.PRUNED) for i, a in enumerate([0.2, 0.5, 0.3])]
    trials += [_trial(3 + i, a, 1, i, TrialState.PRUNED) for i, a in enumerate([0.4, 0.1, 0.3])]
    trials += [_trial(6 + i, a, 2, 3 + i) for i, a in enumerate(top)]
    trust = proxy_trust(trials, [10, 30, 90], 10, 1000)
    assert [r["kendall_tau"] for r in trust["rungs"]] == pytest.approx([1.0, -1.0])
    assert trust["chance_band"] == pytest.approx(0.1 + 3 * math.sqrt(0.09 / 1000))
    assert [c["times_chance"] for c in trust["candidates"]] == pytest.approx([1.1, 3.0, 1.2])
    assert trust["above_chance"] == 1 and "warning" not in trust
    at_chance = proxy_trust(trials[:6] + [_trial(6 + i, 0.11, 2, 3 + i) for i in range(3)], [10, 30, 90], 10, 1000)
    assert "cannot be told apart from chance" in at_chance["warning"]
