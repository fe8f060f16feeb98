"""`archspec search` end to end, the long way (python -m pytest -m slow): a search of more than 500
points against the brute-force front, a search killed with SIGKILL mid-trial and resumed, three
workers on a real PostgreSQL server, and the shipped g16_cpu search (proxy training and measured
throughput) drawing its figure."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import uuid
import zlib
from pathlib import Path

import pytest
import yaml
from test_search import TINY, TRADE_OFF, brute_force_front, front_points, rows, write_search
from test_search_oracle import costs

from conftest import ROOT, SPECS, kill_when, run_archspec, start_archspec

pytestmark = pytest.mark.slow

LARGE = {
    "group_size": [1, 2, 4, 8, 16, 32],
    "expansion_ratio": [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0],
    "width_multiplier": [0.25, 0.5],
    "resolution": ["native", "half"],
    "stages[6].kernel": [3, 5],
}


def test_a_cost_search_of_528_points_finds_exactly_the_brute_force_front(tmp_path):
    search = write_search(tmp_path / "large.yaml", LARGE, TRADE_OFF)
    result = run_archspec("search", search, "--out", tmp_path / "out", timeout=900)
    assert result.code == 0, result.err
    assert len(rows(tmp_path / "out")) == 528
    assert front_points(tmp_path / "out") == brute_force_front(LARGE, TRADE_OFF)


PROXY = f"""\
name: resume
base: {SPECS / "tiny.yaml"}
fixed: {{resolution: {{train: half}}}}
space:
  group_size: [8, 16]
  norm: [gn, ln+pn]
objectives:
  - {{metric: accuracy, direction: maximize}}
  - {{metric: params, direction: minimize}}
proxy:
  recipe: {ROOT / "recipes" / "synthetic-quick.yaml"}
  steps: 12
  batch_size: 16
  val_images: 64
  train_images: 320
"""


def _events(out: Path) -> list[dict]:
    path = out / "evaluations.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _front(out: Path) -> list[tuple]:
    front = json.loads((out / "front.json").read_text())["front"]
    return sorted((json.dumps(f["point"], sort_keys=True), json.dumps(f["metrics"], sort_keys=True)) for f in front)


def test_a_search_killed_mid_trial_resumes_without_running_a_finished_trial_again(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the same threads in both runs, and no oversubscription
    (tmp_path / "resume.yaml").write_text(PROXY)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert run_archspec("search", tmp_path / "resume.yaml", "--out", whole, timeout=1200).code == 0

    def mid_trial() -> bool:  # one network done, the next one being trained
        events = _events(killed)
        done = [e for e in events if e["event"] == "done"]
        return len(done) >= 1 and len(events) - len(done) > len(done)

    proc = start_archspec("search", str(tmp_path / "resume.yaml"), "--out", str(killed))
    kill_when(proc, mid_trial, timeout=1200)
    before = (
        {r["trial"]: r for r in rows(killed) if r["state"] == "complete"} if (killed / "trials.csv").exists() else {}
    )
    finished = {e["network"] for e in _events(killed) if e["event"] == "done"}
    cut = {e["network"] for e in _events(killed) if e["event"] == "start"} - finished
    assert finished and len(cut) == 1

    result = run_archspec("search", tmp_path / "resume.yaml", "--out", killed, "--resume", timeout=1200)
    assert result.code == 0, result.err
    events = _events(killed)
    for net in finished:  # no finished network evaluated again
        assert sum(e["network"] == net for e in events) == 2  # its start and its done
    assert sum(e["network"] == next(iter(cut)) and e["event"] == "start" for e in events) == 2
    trials = rows(killed)
    assert sorted(r["state"] for r in trials) == ["complete"] * 4 + ["fail"]  # the killed trial, retried
    assert len({(r["group_size"], r["norm"]) for r in trials if r["state"] == "complete"}) == 4
    for number, row in before.items():
        assert next(r for r in trials if r["trial"] == number) == row
    assert _front(killed) == _front(whole)


def test_a_candidate_that_breaks_a_cost_limit_is_never_timed(tmp_path):
    dims = {"group_size": [1, 16], "expansion_ratio": [2.0, 6.0]}
    limit = costs(TINY, {"group_size": 16, "expansion_ratio": 2.0})["macs"]
    extra = f"constraints:\n  macs: {{max: {limit}}}\nmeasure: {{device: cpu, batch_size: 2, steps: 1}}\n"
    objectives = [("params", "minimize"), ("measured_infer_images_per_s", "maximize")]
    result = run_archspec(
        "search", write_search(tmp_path / "limit.yaml", dims, objectives, extra), "--out", tmp_path / "out"
    )
    assert result.code == 0, result.err
    trials = rows(tmp_path / "out")
    for r in trials:
        over = (
            costs(TINY, {"group_size": int(r["group_size"]), "expansion_ratio": float(r["expansion_ratio"])})["macs"]
            > limit
        )
        assert r["state"] == ("pruned" if over else "complete"), r
        assert (r["measured_infer_images_per_s"] == "") == over  # a pruned candidate was never timed
    assert {r["state"] for r in trials} == {"pruned", "complete"}


def _postgres_binaries() -> Path | None:
    found = shutil.which("initdb") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)), None
    )
    return Path(found).parent if found else None


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL URL: ARCHSPEC_POSTGRES_URL (CI's server, .ci/run), or a throwaway server of
    the distribution's package started here (as the postgres user when running as root)."""
    if os.environ.get("ARCHSPEC_POSTGRES_URL"):
        yield os.environ["ARCHSPEC_POSTGRES_URL"]
        return
    binaries = _postgres_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql) and ARCHSPEC_POSTGRES_URL is not set")
    home = Path(tempfile.mkdtemp(prefix="archspec-pg-"))
    as_user = []
    if os.geteuid() == 0:
        shutil.chown(home, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(
        [*as_user, binaries / "initdb", "-D", home / "data", "-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1"
    subprocess.run(
        [*as_user, binaries / "pg_ctl", "-D", home / "data", "-o", options, "-l", home / "log", "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, binaries / "pg_ctl", "-D", home / "data", "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(home, ignore_errors=True)


def test_three_workers_share_a_postgresql_study(tmp_path, postgres):
    dims = {"group_size": [1, 4, 16], "expansion_ratio": [2.0, 4.0, 6.0], "resolution": ["native", "half"]}
    search = write_search(tmp_path / f"pg{uuid.uuid4().hex[:8]}.yaml", dims, TRADE_OFF)  # a study of its own
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "archspec.cli",
                "search",
                str(search),
                "--out",
                str(tmp_path / f"m{i}"),
                "--storage",
                postgres,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    trials = rows(tmp_path / "m0")
    assert len(trials) == 18 and {r["state"] for r in trials} == {"complete"}
    assert len({(r["group_size"], r["expansion_ratio"], r["resolution"]) for r in trials}) == 18
    assert len({r["worker"] for r in trials}) >= 2
    shown = run_archspec("search", "show", tmp_path / "m2", "--storage", postgres, "--json")
    assert shown.code == 0, shown.err
    expected = brute_force_front(dims, TRADE_OFF)
    assert {json.dumps(f["point"], sort_keys=True) for f in json.loads(shown.out)["front"]} == expected


def _png_pixels(path: Path) -> tuple[int, int, bytes]:
    """Width, height and the decompressed image data of a PNG (enough to see it is not blank)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    chunks, pos = b"", 8
    while pos < len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        if data[pos + 4 : pos + 8] == b"IDAT":
            chunks += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return width, height, zlib.decompress(chunks)


def test_g16_cpu_trains_measures_and_draws_its_front(tmp_path):
    """The shipped g16_cpu search, shortened (3 trials of 20 steps), end to end."""
    data = yaml.safe_load((ROOT / "searches" / "g16_cpu.yaml").read_text())
    data["base"] = str(SPECS / "tiny.yaml")
    data["proxy"].update(recipe=str(ROOT / "recipes" / "synthetic-quick.yaml"), steps=20, val_images=100)
    data["budget"] = {"trials": 3}
    (tmp_path / "g16.yaml").write_text(yaml.safe_dump(data))
    result = run_archspec("search", tmp_path / "g16.yaml", "--out", tmp_path / "out", "--json", timeout=1800)
    assert result.code == 0, result.err
    trials = rows(tmp_path / "out")
    assert len(trials) == 3
    for r in trials:
        assert (
            r["state"] == "complete" and 0 <= float(r["accuracy"]) <= 1 and float(r["measured_train_images_per_s"]) > 0
        )
        assert (
            tmp_path / "out" / "trials" / r["network"] / "run" / "run.json"
        ).is_file()  # the shared runner trained it
    width, height, pixels = _png_pixels(tmp_path / "out" / "pareto.png")
    assert width >= 1500 and height >= 800  # 2 x 3 panels: every objective pair, accuracy vs params and MACs
    assert len(set(pixels[:: max(1, len(pixels) // 20000)])) > 10  # drawn on, not blank


def test_a_half_resolution_candidate_is_fine_tuned_and_judged_at_the_test_resolution(tmp_path):
    """tiny trains at 64 px (native) or 32 (half) and is tested at 64: the half candidate's accuracy
    is its fine-tune's at 64 px, the native one's its own; trials.csv and front.json say which."""
    text = PROXY.replace("fixed: {resolution: {train: half}}\n", "").replace(
        "  group_size: [8, 16]\n  norm: [gn, ln+pn]", "  resolution: [native, half]"
    )
    (tmp_path / "judge.yaml").write_text(text + "  finetune_steps: 2\n")
    result = run_archspec("search", tmp_path / "judge.yaml", "--out", tmp_path / "out", "--json", timeout=1200)
    assert result.code == 0, result.err
    trials = {r["resolution"]: r for r in rows(tmp_path / "out")}
    assert {k: (r["accuracy_resolution"], r["finetuned"]) for k, r in trials.items()} == {
        "native": ("64", "False"),
        "half": ("64", "True"),
    }
    run = tmp_path / "out" / "trials" / trials["half"]["network"] / "run"
    assert float(trials["half"]["accuracy"]) == json.loads((run / "finetune-r64.json").read_text())["val_top1"]
    assert not list((tmp_path / "out" / "trials" / trials["native"]["network"] / "run").glob("finetune-*"))
    for f in json.loads(result.out)["front"]:
        assert (f["accuracy_resolution"], f["finetuned"]) == (64, f["point"]["resolution"] == "half")


def test_a_promoted_candidate_trains_at_the_next_rung_and_is_not_timed_again(tmp_path):
    text = PROXY.replace("fixed: {resolution: {train: half}}\n", "").replace(
        "  group_size: [8, 16]\n  norm: [gn, ln+pn]", "  resolution: [native, half]"
    )
    text = text.replace(
        "  - {metric: params, direction: minimize}\n",
        "  - {metric: measured_infer_images_per_s, direction: maximize}\n"
        "measure: {device: cpu, batch_size: 2, steps: 1}\n",
    )
    (tmp_path / "rungs.yaml").write_text(text + "  finetune_steps: 2\nfidelity: {rungs: [0.5, 1], keep: 0.5}\n")
    result = run_archspec("search", tmp_path / "rungs.yaml", "--out", tmp_path / "out", "--json", timeout=1200)
    assert result.code == 0, result.err
    trials = rows(tmp_path / "out")
    assert [(r["state"], r["rung"]) for r in trials] == [("pruned", "0"), ("pruned", "0"), ("complete", "1")]
    top = trials[2]
    source = trials[int(top["promoted_from"])]
    assert top["network"] == source["network"]
    assert top["measured_infer_images_per_s"] == source["measured_infer_images_per_s"]  # timed once
    home = tmp_path / "out" / "trials" / top["network"]
    assert (home / "run-6-steps" / "run.json").is_file() and (home / "run" / "run.json").is_file()
    trust = json.loads(result.out)["proxy_trust"]
    assert [r["steps"] for r in trust["rungs"]] == [6] and [c["trial"] for c in trust["candidates"]] == [2]


def test_the_shipped_digits_search_learns_every_candidate_where_it_is_deployed(tmp_path):
    """searches/digits_cpu.yaml on the digits tree written beside a copy of it, at a quarter of its
    proxy budget (60 steps, a 12-step fine-tune, three proxy seeds: six minutes on two cores, not
    fourteen): all 12 candidates finish; each one's accuracy is above what a guesser reaches on 360
    images (chance plus three binomial sigmas), whatever its norm; every candidate is judged at the
    deployment resolution, 64 px, the half-resolution ones after their fine-tune there; and the
    trust report says how well the three seeds agree."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from digits_imagefolder import write_digits

    write_digits(tmp_path / "data" / "digits")
    for folder in ("searches", "specs", "recipes"):
        (tmp_path / folder).mkdir()
    shipped = yaml.safe_load((ROOT / "searches" / "digits_cpu.yaml").read_text())
    shipped["proxy"].update(
        steps=shipped["proxy"]["steps"] // 4, finetune_steps=shipped["proxy"]["finetune_steps"] // 4
    )
    (tmp_path / "searches" / "digits_cpu.yaml").write_text(yaml.safe_dump(shipped))
    shutil.copy(SPECS / "tiny.yaml", tmp_path / "specs")
    shutil.copy(ROOT / "searches" / shipped["proxy"]["recipe"], tmp_path / "recipes")
    result = run_archspec("search", "searches/digits_cpu.yaml", "--out", "out", "--json", cwd=tmp_path, timeout=1500)
    assert result.code == 0, result.err
    trust = json.loads(result.out)["proxy_trust"]
    assert len(trust["candidates"]) == 12 and trust["above_chance"] == 12, trust
    assert trust["seeds"]["repeats"] == 3 and trust["seeds"]["candidates"] == 12, trust
    assert all(len(c["accuracy_by_seed"]) == 3 for c in trust["candidates"])
    trials = rows(tmp_path / "out")
    assert {t["norm"] for t in trials} == {"gn", "ln+pn"}
    assert {(t["resolution"], t["accuracy_resolution"], t["finetuned"]) for t in trials} == {
        ("native", "64", "False"),
        ("half", "64", "True"),
    }
