"""How far a search's accuracy can be trusted (issue 23): train every candidate of a finished
search `--factor` times longer and rank them again.

    python search_fidelity.py          # searches/digits_cpu.yaml, 4x, on data/digits, seeds 0 1 2

1. runs the search once per `--search-seeds` seed (proxy.seed; the first is the search as
   shipped), timing it;
2. runs the same space with proxy.steps and finetune_steps multiplied by the factor, once per
   `--seeds` seed, scoring the zero-cost metrics (synflow, naswot, grad_norm) of each candidate on
   the way; the long run's accuracy is the mean over its seeds;
3. compares, over the same networks: Kendall tau and Spearman rho of the search's accuracy (its
   first seed, and the mean over its seeds), of each zero-cost metric and of params / MACs against
   the long run's accuracy; how well each run agrees with itself from one seed to another (tau
   between seeds: the search cannot agree with the long run better than the long run agrees with
   itself); and what a single-fidelity search at the long budget would reach in the search's wall
   time (it can train only k of the candidates: the expected long-run accuracy of the best of k
   drawn at random, against that of the search's own pick).

Every run resumes where a stopped one left off. Writes results/search_fidelity_cpu.json (with the
machine)."""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import yaml
from _machine import save_result
from scipy.stats import kendalltau, spearmanr

from archspec.search.metrics import METRICS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
ZERO_COST = [m.name for m in METRICS.values() if m.kind == "zero_cost"]
POINT = ("group_size", "norm", "resolution", "matched_expansion_ratio")


def variant(search_file: Path, seed: int, out: Path, factor: int = 1) -> Path:
    """The search file with its proxy seeded by `seed`, paths made absolute; with a `factor`, a
    `factor` times longer proxy with accuracy and the zero-cost metrics as objectives (no timing:
    the long run measures accuracy)."""
    doc = yaml.safe_load(search_file.read_text())
    here = search_file.parent
    doc["name"] = f"{doc['name']}_x{factor}_seed{seed}"
    doc["base"] = str((here / doc["base"]).resolve())
    proxy = doc["proxy"]
    proxy["seed"] = seed
    for key in ("dataset", "recipe"):
        if key in proxy and proxy[key] != "synthetic":
            proxy[key] = str((here / proxy[key]).resolve())
    if factor > 1:
        proxy["steps"] *= factor
        proxy["finetune_steps"] = proxy.get("finetune_steps", 24) * factor
        doc["objectives"] = [{"metric": "accuracy", "direction": "maximize"}] + [
            {"metric": m, "direction": "maximize"} for m in ZERO_COST
        ]
        doc.pop("measure", None)
        doc.pop("fidelity", None)
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def run(search_file: Path, out: Path) -> float:
    """Runs (or resumes) a search with the CLI, as a user would; its trials' seconds, summed (one
    worker: the search's wall time, also when it was run before and only resumed here)."""
    import subprocess

    args = [sys.executable, "-m", "archspec.cli", "search", str(search_file), "--out", str(out), "--json"]
    if (out / "search.json").is_file():
        args.append("--resume")
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)  # the spec roots are the cwd's
    with open(out / "trials.csv") as f:
        return sum(float(r["seconds"] or 0) for r in csv.DictReader(f))


def by_network(out: Path) -> dict[str, dict[str, str]]:
    """The top-rung trials of a search directory, by network digest."""
    with open(out / "trials.csv") as f:
        return {r["network"]: r for r in csv.DictReader(f) if r["state"] == "complete"}


def rank_agreement(x: list[float], y: list[float]) -> dict[str, float]:
    return {"kendall_tau": float(kendalltau(x, y).statistic), "spearman_rho": float(spearmanr(x, y).statistic)}


def repeatability(runs: list[dict[str, float]], nets: list[str]) -> dict[str, Any] | None:
    """Kendall tau between the accuracies of every two seeds of one run, and their mean."""
    if len(runs) < 2:
        return None
    taus = [
        rank_agreement([a[n] for n in nets], [b[n] for n in nets])["kendall_tau"]
        for a, b in itertools.combinations(runs, 2)
    ]
    return {"kendall_tau_between_seeds": taus, "mean": statistics.mean(taus)}


def run_seeds(
    search_file: Path, seeds: list[int], base_dir: Path, factor: int = 1
) -> tuple[list[dict[str, dict[str, str]]], list[float]]:
    """Each seed's run of the search (`factor` times longer), its top-rung trials by network and
    its seconds. The search as shipped runs under its own file, into `base_dir`."""
    shipped_seed = int(yaml.safe_load(search_file.read_text())["proxy"].get("seed", 0))
    trials, seconds = [], []
    for seed in seeds:
        if factor == 1 and seed == shipped_seed:
            out, file = base_dir, search_file
        else:
            out = base_dir.with_name(f"{base_dir.name}-x{factor}-seed{seed}")
            out.mkdir(parents=True, exist_ok=True)
            file = variant(search_file, seed, out.with_suffix(".yaml"), factor)
        seconds.append(run(file, out))
        trials.append(by_network(out))
    return trials, seconds


def same_wall_time(long_acc: dict[str, float], short_acc: dict[str, float], k: int) -> dict[str, Any]:
    """A single-fidelity search at the long budget trains only k candidates in the short search's
    time: the expected long-run accuracy of the best of k drawn at random (all subsets averaged),
    beside the short search's pick judged by the long run, and the best there is."""
    nets = sorted(long_acc)
    k = max(1, min(k, len(nets)))
    best_of_k = statistics.mean(max(long_acc[n] for n in s) for s in itertools.combinations(nets, k))
    pick = max(short_acc, key=lambda n: short_acc[n])
    return {
        "candidates_trained": k,
        "expected_best_accuracy": best_of_k,
        "search_pick_accuracy": long_acc[pick],
        "best_accuracy": max(long_acc.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--search", type=Path, default=ROOT / "searches" / "digits_cpu.yaml")
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="the long run's seeds")
    parser.add_argument("--search-seeds", type=int, nargs="+", default=[0, 1], help="the search's seeds")
    parser.add_argument("--base-dir", type=Path, default=ROOT / "runs" / "digits-search")
    parser.add_argument("--name", default="search_fidelity_cpu")
    args = parser.parse_args()

    if not (ROOT / "data" / "digits").is_dir():
        from digits_imagefolder import write_digits

        write_digits(ROOT / "data" / "digits")
    shorts, short_s = run_seeds(args.search, args.search_seeds, args.base_dir)
    longs, long_s = run_seeds(args.search, args.seeds, args.base_dir, args.factor)

    nets = sorted(set.intersection(*(set(t) for t in shorts + longs)))
    short_runs = [{n: float(t[n]["accuracy"]) for n in nets} for t in shorts]
    long_runs = [{n: float(t[n]["accuracy"]) for n in nets} for t in longs]
    short_acc, short_mean = short_runs[0], {n: statistics.mean(r[n] for r in short_runs) for n in nets}
    long_acc = {n: statistics.mean(r[n] for r in long_runs) for n in nets}
    truth = [long_acc[n] for n in nets]
    agreement = {"search_accuracy": rank_agreement([short_acc[n] for n in nets], truth)}
    if len(short_runs) > 1:
        agreement["search_accuracy_mean_of_seeds"] = rank_agreement([short_mean[n] for n in nets], truth)
    agreement["long_run_first_seed"] = rank_agreement([long_runs[0][n] for n in nets], truth)
    for m in [*ZERO_COST, "params", "macs"]:
        agreement[m] = rank_agreement([float(longs[0][n][m]) for n in nets], truth)
    x = f"x{args.factor}"
    per_candidate = [
        {
            "network": n,
            **{k: shorts[0][n][k] for k in POINT if k in shorts[0][n]},
            "accuracy": short_acc[n],
            "accuracy_by_seed": [r[n] for r in short_runs],
            f"accuracy_{x}": long_acc[n],
            f"accuracy_{x}_by_seed": [r[n] for r in long_runs],
            "accuracy_resolution": shorts[0][n].get("accuracy_resolution"),
            "finetuned": shorts[0][n].get("finetuned"),
            **{m: float(longs[0][n][m]) for m in ZERO_COST},
        }
        for n in nets
    ]
    per_candidate_s = statistics.mean(long_s) / max(1, len(nets))
    result = {
        "search": str(args.search.relative_to(ROOT)),
        "factor": args.factor,
        "candidates": len(nets),
        "search_seeds": args.search_seeds,
        f"{x}_seeds": args.seeds,
        "search_wall_s": [round(t, 1) for t in short_s],
        f"{x}_wall_s": [round(t, 1) for t in long_s],
        "rank_agreement_with_long_run": agreement,
        "repeatability": {"search": repeatability(short_runs, nets), x: repeatability(long_runs, nets)},
        "single_fidelity_same_wall_time": same_wall_time(long_acc, short_acc, int(short_s[0] // per_candidate_s)),
        "per_candidate": per_candidate,
    }
    print(json.dumps(save_result(args.name, result), indent=2))


if __name__ == "__main__":
    main()
