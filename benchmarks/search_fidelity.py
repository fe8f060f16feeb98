"""How far a search's accuracy can be trusted (issue 23): train every candidate of a finished
search `--factor` times longer and rank them again.

    python search_fidelity.py                      # searches/digits_cpu.yaml, 4x, on data/digits

1. runs the search (or resumes it, `--base-dir`), timing it;
2. runs the same space with proxy.steps and finetune_steps multiplied by the factor, scoring the
   zero-cost metrics (synflow, naswot, grad_norm) of each candidate on the way;
3. compares, over the same networks: Kendall tau and Spearman rho of the search's accuracy, of each
   zero-cost metric and of params / MACs against the long run's accuracy; and what a single-fidelity
   search at the long budget would reach in the search's wall time (it can train only k of the
   candidates: the expected long-run accuracy of the best of k drawn at random, against that of
   the search's own pick).

Writes results/search_fidelity_cpu.json (with the machine)."""

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


def long_variant(search_file: Path, factor: int, out: Path) -> Path:
    """The search file with a `factor` times longer proxy, accuracy and the zero-cost metrics as
    objectives (no timing: the long run measures accuracy), paths made absolute."""
    doc = yaml.safe_load(search_file.read_text())
    here = search_file.parent
    doc["name"] = f"{doc['name']}_x{factor}"
    doc["base"] = str((here / doc["base"]).resolve())
    proxy = doc["proxy"]
    for key in ("dataset", "recipe"):
        if key in proxy and proxy[key] != "synthetic":
            proxy[key] = str((here / proxy[key]).resolve())
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
    parser.add_argument("--base-dir", type=Path, default=ROOT / "runs" / "digits-search")
    parser.add_argument("--long-dir", type=Path, default=None)
    parser.add_argument("--name", default="search_fidelity_cpu")
    args = parser.parse_args()
    long_dir = args.long_dir or args.base_dir.with_name(args.base_dir.name + f"-x{args.factor}")

    if not (ROOT / "data" / "digits").is_dir():
        from digits_imagefolder import write_digits

        write_digits(ROOT / "data" / "digits")
    short_s = run(args.search, args.base_dir)
    long_dir.mkdir(parents=True, exist_ok=True)
    variant = long_variant(args.search, args.factor, long_dir.with_suffix(".yaml"))
    long_s = run(variant, long_dir)

    short, long = by_network(args.base_dir), by_network(long_dir)
    nets = sorted(set(short) & set(long))
    long_acc = {n: float(long[n]["accuracy"]) for n in nets}
    short_acc = {n: float(short[n]["accuracy"]) for n in nets}
    truth = [long_acc[n] for n in nets]
    agreement = {"search_accuracy": rank_agreement([short_acc[n] for n in nets], truth)}
    for m in [*ZERO_COST, "params", "macs"]:
        agreement[m] = rank_agreement([float(long[n][m]) for n in nets], truth)
    per_candidate = [
        {
            "network": n,
            **{k: short[n][k] for k in POINT if k in short[n]},
            "accuracy": short_acc[n],
            f"accuracy_x{args.factor}": long_acc[n],
            "accuracy_resolution": short[n].get("accuracy_resolution"),
            "finetuned": short[n].get("finetuned"),
            **{m: float(long[n][m]) for m in ZERO_COST},
        }
        for n in nets
    ]
    per_candidate_s = long_s / max(1, len(nets))
    result = {
        "search": str(args.search.relative_to(ROOT)),
        "factor": args.factor,
        "candidates": len(nets),
        "search_wall_s": round(short_s, 1),
        f"x{args.factor}_wall_s": round(long_s, 1),
        "rank_agreement_with_long_run": agreement,
        "single_fidelity_same_wall_time": same_wall_time(long_acc, short_acc, int(short_s // per_candidate_s)),
        "per_candidate": per_candidate,
    }
    print(json.dumps(save_result(args.name, result), indent=2))


if __name__ == "__main__":
    main()
