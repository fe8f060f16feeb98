"""How far a search's accuracy can be trusted (issue 23): train every candidate of a finished
search `--factor` times longer and rank them again.

    python search_fidelity.py          # searches/digits_cpu.yaml, 4x, on data/digits, seeds 0 1 2
    python search_fidelity.py --long-from results/search_fidelity_cpu.json   # the long run kept

1. runs the search once per `--search-seeds` seed (proxy.seed; the first is the search as
   shipped; with proxy.repeats each candidate's accuracy is already a mean over that many seeds),
   timing it;
2. runs the same space with proxy.steps and finetune_steps multiplied by the factor, once per
   `--seeds` seed (one proxy run each), scoring the zero-cost metrics (synflow, naswot, grad_norm)
   of each candidate on the way; the long run's accuracy is the mean over its seeds. With
   `--long-from`, the long run of an earlier result instead (an hour of training on two cores;
   its networks are matched by digest, so it stands only while the candidates and recipe do);
3. compares, over the same networks: Kendall tau and Spearman rho of the search's accuracy (and of
   its first proxy seed alone, what proxy.repeats: 1 would judge), of each zero-cost metric and of
   params / MACs against the long run's accuracy; how well each run agrees with itself from one
   seed to another (tau between seeds: the search cannot agree with the long run better than the
   long run agrees with itself); and what a single-fidelity search at the long budget would reach
   in the search's wall time (it can train only k of the candidates: the expected long-run
   accuracy of the best of k drawn at random, against that of the search's own pick).

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
        proxy["repeats"] = 1  # the long run's seeds are the benchmark's own (--seeds)
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


def same_wall_time(long_runs: list[dict[str, float]], short_acc: dict[str, float], k: int) -> dict[str, Any]:
    """A single-fidelity search at the long budget trains only k candidates in the short search's
    time. Over all k-subsets: the expected long-run accuracy (mean over its seeds) of the best of k
    if it knew that accuracy (an oracle's pick, its upper bound), and of the one it would pick by
    what it measures, one long run of each (every seed in turn, the pick judged by the other seeds'
    mean, so that its own noise does not flatter it); beside the short search's own pick judged
    by the long run, and the best there is."""
    nets = sorted(long_runs[0])
    long_acc = {n: statistics.mean(r[n] for r in long_runs) for n in nets}
    k = max(1, min(k, len(nets)))
    subsets = list(itertools.combinations(nets, k))
    out = {
        "candidates_trained": k,
        "expected_best_accuracy": statistics.mean(max(long_acc[n] for n in s) for s in subsets),
    }
    if len(long_runs) > 1:
        picks = []
        for i, measured in enumerate(long_runs):
            others = [r for j, r in enumerate(long_runs) if j != i]
            for s in subsets:
                pick = max(s, key=lambda n: measured[n])
                picks.append(statistics.mean(r[pick] for r in others))
        out["expected_pick_accuracy"] = statistics.mean(picks)
    pick = max(short_acc, key=lambda n: short_acc[n])
    return {**out, "search_pick_accuracy": long_acc[pick], "best_accuracy": max(long_acc.values())}


def long_from(result_file: Path, factor: int) -> tuple[list[dict[str, float]], dict[str, dict[str, float]], dict]:
    """The long run of an earlier result of this benchmark (same search, same factor): each seed's
    accuracy and the zero-cost scores, by network, and where they came from. Its networks are named by
    digest, so a candidate that no longer resolves to the same layers is not compared."""
    earlier = json.loads(result_file.read_text())
    x = f"x{factor}"
    if earlier.get("factor") != factor:
        raise SystemExit(f"{result_file}: a {earlier.get('factor')}x run, not {factor}x")
    per = {c["network"]: c for c in earlier["per_candidate"]}
    # trained there, or itself read from a result before it (whose commit is the one that trained it)
    source = earlier.get(f"{x}_run") or {"commit": earlier["machine"].get("commit"), "seeds": earlier[f"{x}_seeds"]}
    runs = [{n: c[f"accuracy_{x}_by_seed"][k] for n, c in per.items()} for k in range(len(source["seeds"]))]
    scores = {n: {m: c[m] for m in ZERO_COST} for n, c in per.items()}
    trained = {"file": source.get("file", str(result_file.relative_to(ROOT))), "commit": source["commit"]}
    return runs, scores, {**trained, "seeds": source["seeds"], "wall_s": earlier[f"{x}_wall_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--search", type=Path, default=ROOT / "searches" / "digits_cpu.yaml")
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="the long run's seeds")
    parser.add_argument(
        "--search-seeds",
        type=int,
        nargs="+",
        default=[0],
        help="whole searches, each with proxy.seed set (its repeats seeded from there)",
    )
    parser.add_argument(
        "--long-from",
        type=Path,
        help="take the long run from an earlier result of this script instead of training it again (its "
        "networks must be this search's: they are matched by digest)",
    )
    parser.add_argument("--base-dir", type=Path, default=ROOT / "runs" / "digits-search")
    parser.add_argument("--name", default="search_fidelity_cpu")
    args = parser.parse_args()

    if not (ROOT / "data" / "digits").is_dir():
        from digits_imagefolder import write_digits

        write_digits(ROOT / "data" / "digits")
    shorts, short_s = run_seeds(args.search, args.search_seeds, args.base_dir)
    x = f"x{args.factor}"
    if args.long_from is not None:
        long_runs, scores, long_source = long_from(args.long_from.resolve(), args.factor)
        long_s = long_source.pop("wall_s")
    else:
        longs, long_s = run_seeds(args.search, args.seeds, args.base_dir, args.factor)
        long_runs = [{n: float(row["accuracy"]) for n, row in t.items()} for t in longs]
        scores = {n: {m: float(longs[0][n][m]) for m in ZERO_COST} for n in longs[0]}
        long_source = {"seeds": args.seeds}

    nets = sorted(set.intersection(*(set(t) for t in shorts), *(set(r) for r in long_runs)))
    if len(nets) < len(shorts[0]):
        print(f"{len(shorts[0]) - len(nets)} of the search's networks have no long run", file=sys.stderr)
    short_runs = [{n: float(t[n]["accuracy"]) for n in nets} for t in shorts]
    by_seed = {n: _by_seed(shorts[0][n]) for n in nets}
    proxy_seeds = [{n: by_seed[n][k] for n in nets} for k in range(min(len(a) for a in by_seed.values()))]
    short_acc = short_runs[0]
    long_acc = {n: statistics.mean(r[n] for r in long_runs) for n in nets}
    truth = [long_acc[n] for n in nets]
    agreement = {"search_accuracy": rank_agreement([short_acc[n] for n in nets], truth)}
    if len(proxy_seeds) > 1:  # what one proxy seed (proxy.repeats: 1) would have ranked
        agreement["search_first_proxy_seed"] = rank_agreement([proxy_seeds[0][n] for n in nets], truth)
    if len(short_runs) > 1:
        short_mean = {n: statistics.mean(r[n] for r in short_runs) for n in nets}
        agreement["search_accuracy_mean_of_searches"] = rank_agreement([short_mean[n] for n in nets], truth)
    agreement["long_run_first_seed"] = rank_agreement([long_runs[0][n] for n in nets], truth)
    for m in ZERO_COST:
        agreement[m] = rank_agreement([scores[n][m] for n in nets], truth)
    for m in ("params", "macs"):
        agreement[m] = rank_agreement([float(shorts[0][n][m]) for n in nets], truth)
    per_candidate = [
        {
            "network": n,
            **{k: shorts[0][n][k] for k in POINT if k in shorts[0][n]},
            "accuracy": short_acc[n],
            "accuracy_by_proxy_seed": [r[n] for r in proxy_seeds],
            "accuracy_by_search": [r[n] for r in short_runs],
            f"accuracy_{x}": long_acc[n],
            f"accuracy_{x}_by_seed": [r[n] for r in long_runs],
            "accuracy_resolution": shorts[0][n].get("accuracy_resolution"),
            "finetuned": shorts[0][n].get("finetuned"),
            **scores[n],
        }
        for n in nets
    ]
    per_candidate_s = statistics.mean(long_s) / max(1, len(nets))
    result = {
        "search": str(args.search.relative_to(ROOT)),
        "factor": args.factor,
        "candidates": len(nets),
        "search_seeds": args.search_seeds,
        "proxy_repeats": len(proxy_seeds),
        f"{x}_run": long_source,
        "search_wall_s": [round(t, 1) for t in short_s],
        f"{x}_wall_s": [round(t, 1) for t in long_s],
        "rank_agreement_with_long_run": agreement,
        "repeatability": {
            "proxy_seeds": repeatability(proxy_seeds, nets),
            "searches": repeatability(short_runs, nets),
            x: repeatability(long_runs, nets),
        },
        "single_fidelity_same_wall_time": same_wall_time(
            [{n: r[n] for n in nets} for r in long_runs], short_acc, int(short_s[0] // per_candidate_s)
        ),
        "per_candidate": per_candidate,
    }
    print(json.dumps(save_result(args.name, result), indent=2))


def _by_seed(row: dict[str, str]) -> list[float]:
    """A candidate's accuracy by proxy seed (trials.csv's accuracy_by_seed; its accuracy without one)."""
    return [float(a) for a in (row.get("accuracy_by_seed") or row["accuracy"]).split()]


if __name__ == "__main__":
    main()
