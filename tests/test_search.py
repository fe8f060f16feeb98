"""`archspec search` on cost metrics (seconds each): the exact Pareto front against an independent
enumeration, the paper's Table 2 as a search, specs of the front that compile to its numbers,
one evaluation per distinct network, two worker processes on one journal, and a directory that
holds another search left as it was."""

from __future__ import annotations

import csv
import json
import struct
import textwrap
from pathlib import Path

import pytest
from test_search_oracle import costs, key, network, pareto, points

from conftest import ROOT, SPECS, TABLE_2, run_archspec

TINY = SPECS / "tiny.yaml"


def write_search(path: Path, dims: dict, objectives: list[tuple[str, str]], extra: str = "", base: Path = TINY) -> Path:
    space = "\n".join(
        f"  {name}: {json.dumps(values)}" for name, values in dims.items() if not name.startswith("stages[")
    )
    stages = [(n, v) for n, v in dims.items() if n.startswith("stages[")]
    if stages:
        space += "\n  stages:\n" + "\n".join(
            f"    - {{stage: {n[7:].split(']')[0]}, {n.split('.')[-1]}: {json.dumps(v)}}}" for n, v in stages
        )
    goals = "\n".join(f"  - {{metric: {m}, direction: {d}}}" for m, d in objectives)
    path.write_text(f"name: {path.stem}\nbase: {base}\nspace:\n{space}\nobjectives:\n{goals}\n{extra}")
    return path


def rows(out: Path) -> list[dict]:
    with open(out / "trials.csv") as f:
        return list(csv.DictReader(f))


def front_points(out: Path) -> set[str]:
    return {key(f["point"]) for f in json.loads((out / "front.json").read_text())["front"]}


def brute_force_front(dims: dict, objectives: list[tuple[str, str]]) -> set[str]:
    values = {key(p): costs(TINY, p) for p in points(dims)}
    return pareto(values, objectives)


SMALL = {
    "group_size": [1, 4, 16],
    "expansion_ratio": [2.0, 3.0, 4.5, 6.0],
    "width_multiplier": [0.25, 0.5],
    "resolution": ["native", "half"],
}
TRADE_OFF = [("macs", "minimize"), ("params", "maximize"), ("activation_bytes", "minimize")]


def test_a_cost_search_finds_exactly_the_brute_force_front(tmp_path, cli):
    search = write_search(tmp_path / "small.yaml", SMALL, TRADE_OFF)
    result = cli("search", search, "--out", tmp_path / "out", "--json")
    assert result.code == 0, result.err
    payload = json.loads(result.out)
    assert payload["sampler"] == "GridSampler" and payload["trials"]["complete"] == 48
    assert front_points(tmp_path / "out") == brute_force_front(SMALL, TRADE_OFF)
    assert {key(f["point"]) for f in payload["front"]} == front_points(tmp_path / "out")


@pytest.fixture(scope="module")
def table2(tmp_path_factory):
    from archspec.search.study import run_search

    out = tmp_path_factory.mktemp("table2") / "out"
    run_search(ROOT / "searches" / "table2.yaml", out)
    return out


def test_table2_reproduces_the_papers_parameter_counts(table2):
    params = {(int(r["group_size"]), float(r["expansion_ratio"])): int(r["params"]) for r in rows(table2)}
    assert len(params) == 25
    for (size, g, e), (p, _) in TABLE_2.items():
        if size == 0:
            assert round(params[(g, float(e))] / 1e6, 1) == p, (g, e)


def test_the_specs_of_the_front_compile_to_the_reported_numbers(table2, cli):
    front = json.loads((table2 / "front.json").read_text())["front"]
    assert front
    for f in front:
        result = cli("stats", table2 / f["spec"], "--json")
        assert result.code == 0, result.err
        got = json.loads(result.out)
        assert (got["params"], got["macs"]) == (f["metrics"]["params"], f["metrics"]["macs"])


def test_pareto_png_is_a_figure(table2):
    data = (table2 / "pareto.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 1000 and height > 300  # three panels side by side, readable


def test_show_rerenders_a_finished_search(table2, cli):
    (table2 / "pareto.png").unlink()
    before = (table2 / "front.json").read_text()
    result = cli("search", "show", table2, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["front"] == json.loads(before)["front"]
    assert (table2 / "pareto.png").is_file()
    text = cli("search", "show", table2)
    assert "Pareto front of" in text.out and "front/t" in text.out


def test_one_evaluation_per_distinct_network(tmp_path, cli):
    # expanded channels are rounded to 8 and group sizes to divisors: many points, few networks
    dims = {
        "group_size": [4, 6, 8, 12, 16],
        "expansion_ratio": [3.9, 4.0, 4.1, 6.0],
        "stages[1].se_ratio": [0.25, 0.26],
    }
    search = write_search(tmp_path / "dedup.yaml", dims, [("params", "minimize"), ("macs", "minimize")])
    result = cli("search", search, "--out", tmp_path / "out", "--json")
    assert result.code == 0, result.err
    networks = {network(TINY, p) for p in points(dims)}
    assert len(networks) <= len(points(dims)) / 2
    events = [json.loads(line) for line in (tmp_path / "out" / "evaluations.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "start" for e in events) == len(networks)
    assert json.loads(result.out)["evaluations"] == len(networks)
    reused = [r for r in rows(tmp_path / "out") if r["reused_from"]]
    assert len(reused) == len(points(dims)) - len(networks)


def test_a_limit_on_a_cost_prunes_the_points_that_break_it(tmp_path, cli):
    dims = {"group_size": [1, 16], "expansion_ratio": [2.0, 6.0]}
    limit = costs(TINY, {"group_size": 16, "expansion_ratio": 2.0})["macs"]
    search = write_search(
        tmp_path / "limit.yaml", dims, [("params", "minimize")], f"constraints:\n  macs: {{max: {limit}}}\n"
    )
    result = cli("search", search, "--out", tmp_path / "out")
    assert result.code == 0, result.err
    for r in rows(tmp_path / "out"):
        over = (
            costs(TINY, {"group_size": int(r["group_size"]), "expansion_ratio": float(r["expansion_ratio"])})["macs"]
            > limit
        )
        assert r["state"] == ("pruned" if over else "complete"), r
        assert (f"breaks macs <= {limit:g}" in r["reason"]) == over


def test_a_directory_holding_another_search_is_left_as_it_was(tmp_path, cli, table2):
    search = write_search(tmp_path / "other.yaml", {"group_size": [1, 4]}, [("params", "minimize")])
    before = {p: p.read_bytes() for p in table2.rglob("*") if p.is_file()}
    for args in (
        (search, "--out", table2),
        (search, "--out", table2, "--resume"),
        (ROOT / "searches" / "table2.yaml", "--out", table2),
    ):
        result = cli("search", *args)
        assert result.code == 2 and result.err.count("\n") == 1, result.err
    assert "holds another search ('table2'" in cli("search", search, "--out", table2).err
    assert "already holds this search: --resume continues it" in result.err
    assert {p: p.read_bytes() for p in table2.rglob("*") if p.is_file()} == before
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    result = cli("search", search, "--out", tmp_path / "full")
    assert result.code == 2 and "is not empty and holds no search" in result.err
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]


def test_two_worker_processes_share_the_default_storage(tmp_path):
    # SE ratios 0.25 and 0.26 round to the same squeeze channels here: every network twice
    dims = {**SMALL, "group_size": [1, 16], "stages[1].se_ratio": [0.25, 0.26]}
    search = write_search(tmp_path / "two.yaml", dims, TRADE_OFF)
    out = tmp_path / "out"
    result = run_archspec("search", search, "--out", out, "--workers", "2", "--json", timeout=600)
    assert result.code == 0, result.err
    trials = rows(out)
    assert len(trials) == len(points(dims)) == 64  # no trial twice, none left out
    assert {r["state"] for r in trials} == {"complete"}
    assert len({key(_point(r, dims)) for r in trials}) == 64
    assert len({r["worker"] for r in trials}) == 2  # both processes ran trials
    networks = {network(TINY, p) for p in points(dims)}
    assert json.loads(result.out)["evaluations"] == len(networks) == 32  # each network once, across processes
    logs = "".join(p.read_text() for p in (out / "logs").glob("worker-*.log"))
    assert "locked" not in logs and "Traceback" not in logs and "Error" not in logs
    assert front_points(out) == brute_force_front(dims, TRADE_OFF)


def _point(row: dict, dims: dict) -> dict:
    out = {}
    for name, values in dims.items():
        out[name] = next(v for v in values if str(v) == row[name])
    return out


def test_a_search_needs_its_out_directory_and_a_budget_when_it_cannot_enumerate(tmp_path, cli):
    big = {"group_size": list(range(1, 65)), "expansion_ratio": {"min": 1, "max": 8, "step": 0.1}}
    (tmp_path / "big.yaml").write_text(
        textwrap.dedent(
            f"""\
            base: {TINY}
            space: {json.dumps(big)}
            objectives: [{{metric: params, direction: minimize}}]
            """
        )
    )
    result = cli("search", tmp_path / "big.yaml", "--out", tmp_path / "out")
    assert result.code == 2 and "budget: the space has 4,544 points, too many to enumerate" in result.err, result.err


def test_a_cost_search_needs_neither_torch_nor_matplotlib(tmp_path):
    from test_lean_install import _without_extras

    result = _without_extras("search", str(ROOT / "searches" / "table2.yaml"), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "warning: no pareto.png: needs matplotlib (pip install 'archspec[plot]')" in result.stderr
    assert (tmp_path / "out" / "front.json").is_file() and not (tmp_path / "out" / "pareto.png").exists()


def test_nsga2_when_the_space_does_not_fit_the_budget_seeded(tmp_path, cli):
    dims = {**SMALL, "group_size": [1, 2, 4, 8, 16]}
    search = write_search(tmp_path / "nsga.yaml", dims, TRADE_OFF, "budget: {trials: 16}\nseed: 7\n")
    runs = []
    for out in (tmp_path / "a", tmp_path / "b"):
        result = cli("search", search, "--out", out, "--json")
        assert result.code == 0, result.err
        assert json.loads(result.out)["sampler"] == "NSGAIISampler"
        runs.append([key(_point(r, dims)) for r in rows(out)])
    assert len(runs[0]) == 16 and runs[0] == runs[1]  # the budget exactly; the same seed, the same trials
    evaluated = {k: costs(TINY, json.loads(k)) for k in runs[0]}
    assert front_points(tmp_path / "a") == pareto(evaluated, TRADE_OFF)
