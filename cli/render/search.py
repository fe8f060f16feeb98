"""How `archspec search` looks: its progress (a rich bar on a terminal, a line now and then
otherwise, always on stderr) and the Pareto front it ends with."""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console

from . import console, table, warn

PLAIN_EVERY_S = 10.0  # without a terminal, a progress line at most this often


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    s = int(max(seconds, 0))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _best(snap: Any) -> str:
    from archspec.search.metrics import METRICS

    return "  ".join(f"{m} {METRICS[m].shown(v)}" for m, v in snap.best.items())


def _counts(snap: Any) -> str:
    total = "?" if snap.total is None else str(snap.total)
    extra = "".join(f", {n} {w}" for n, w in ((snap.pruned, "pruned"), (snap.failed, "failed")) if n)
    return f"{snap.done}/{total} trials{extra}, front {snap.front}"


class Progress:
    """Called with each snapshot of the search: trials done, best so far, ETA."""

    def __init__(self, name: str) -> None:
        self.name = name
        # its own console on the real stderr: a proxy run's output is redirected into its log meanwhile
        self.console = Console(file=sys.stderr, stderr=True, highlight=False)
        self.bar: Any = None
        self.last = 0.0
        self.shown = -1  # the trials done at the last line printed

    def __enter__(self) -> Progress:
        if sys.stderr.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn(f"search {self.name}"),
                BarColumn(),
                TextColumn("{task.fields[counts]}"),
                TimeElapsedColumn(),
                TextColumn("ETA {task.fields[eta]}  {task.fields[best]}"),
                console=self.console,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self.task = self.bar.add_task("", total=None, counts="", eta="", best="")
            self.bar.start()
        return self

    def __call__(self, snap: Any) -> None:
        if self.bar is not None:
            self.bar.update(
                self.task,
                total=snap.total,
                completed=snap.done,
                counts=_counts(snap),
                eta=_clock(snap.eta),
                best=_best(snap),
            )
            return
        now, finished = time.monotonic(), snap.total is not None and snap.done >= snap.total
        if (now - self.last >= PLAIN_EVERY_S and snap.done != self.shown) or (finished and snap.done != self.shown):
            self.last, self.shown = now, snap.done
            best = _best(snap) or "no trial complete yet"
            sys.stderr.write(f"search {self.name}: {_counts(snap)}; {best}; eta {_clock(snap.eta)}\n")

    def __exit__(self, *_: Any) -> None:
        if self.bar is not None:
            self.bar.stop()


SHORT = {
    "group_size": "G",
    "expansion_ratio": "E",
    "resolution": "res",
    "width_multiplier": "width",
    "depth_multiplier": "depth",
}


def _cell(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _judged(f: dict[str, Any]) -> str:
    """Where a front member's accuracy was measured: "64 px", or "64 px, fine-tuned"."""
    if "accuracy_resolution" not in f:
        return ""
    return f"{f['accuracy_resolution']} px" + (", fine-tuned" if f.get("finetuned") else "")


def front_table(p: dict[str, Any]) -> None:
    from archspec.search.metrics import METRICS

    dims = list(dict.fromkeys(k for f in p["front"] for k in f["point"]))
    metrics = list(dict.fromkeys([o["metric"] for o in p["objectives"]] + list(p["constraints"])))
    judged = ["judged at"] if any("accuracy_resolution" in f for f in p["front"]) else []
    rows = table(
        ["trial", *(SHORT.get(d, d) for d in dims), *(METRICS[m].short for m in metrics), *judged, "spec"],
        left=("spec",),
    )
    for f in p["front"]:
        shown = [METRICS[m].shown(f["metrics"][m]) if m in f["metrics"] else "" for m in metrics]
        shown += [_judged(f)] if judged else []
        rows.add_row(str(f["trial"]), *(_cell(f["point"].get(d, "")) for d in dims), *shown, f["spec"])
    t = p["trials"]
    out = console(40 + 14 * (len(dims) + len(metrics)))
    goals = ", ".join(f"{'max' if o['direction'] == 'maximize' else 'min'} {o['metric']}" for o in p["objectives"])
    size = f"{p['space_size']:,} points"
    out.print(f"search {p['search']} ({p['sampler']}, {size}): Pareto front of {len(p['front'])} ({goals})")
    out.print(rows)
    reused = t["complete"] + t["pruned"] - p["evaluations"]
    states = f"{t['complete']} complete, {t['pruned']} pruned, {t['fail']} failed, {t['running']} running"
    reuse = f", {reused} trials reused one" if reused > 0 else ""
    out.print(f"{t['total']} trials: {states}; {p['evaluations']} networks evaluated{reuse}")
    specs = f"front/ ({len(p['front'])} spec{'s' * (len(p['front']) != 1)})"
    written = ["trials.csv", "front.json", specs] + (["pareto.png"] if "figure" in p else [])
    out.print(f"wrote {p['directory']}/{{{', '.join(written)}}}")
    if "proxy_trust" in p:
        _trust(out, p["proxy_trust"])
    for message in p.get("warnings", []):
        warn(message)


def _trust(out: Any, trust: dict[str, Any]) -> None:
    """proxy_trust: rank agreement of each rung with the top one, and accuracy against chance."""
    for r in trust["rungs"]:
        tau = "n/a" if r["kendall_tau"] is None else f"{r['kendall_tau']:.2f}"
        out.print(f"rung {r['rung']} ({r['steps']} steps): Kendall tau {tau} with the top rung over {r['candidates']}")
    seeds = trust.get("seeds")
    if seeds is not None:
        tau = "n/a" if seeds["mean_kendall_tau"] is None else f"{seeds['mean_kendall_tau']:.2f}"
        out.print(
            f"{seeds['repeats']} proxy seeds: Kendall tau {tau} between seeds over {seeds['candidates']}, "
            f"a candidate's top-1 spread over them {100 * seeds['median_spread']:.1f} points (median)"
        )
    shown = ", ".join(f"t{c['trial']} {c['times_chance']:.1f}x" for c in trust["candidates"])
    out.print(
        f"accuracy against chance ({trust['chance']:.1%}): {trust['above_chance']} of {len(trust['candidates'])} "
        f"above {trust['chance_band']:.1%}; {shown}"
    )
