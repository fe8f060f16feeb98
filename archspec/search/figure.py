"""pareto.png (matplotlib, imported only here): every pair of objectives, the Pareto front
highlighted, accuracy on the vertical axis against cost as in the paper's Figure 1 (theoretical
efficiency: parameters, MACs; practical efficiency: measured or predicted images/s)."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from .metrics import METRICS
from .read import metrics_of, point_of
from .space import Search

PRUNED = {"marker": "x", "s": 22, "color": "0.7", "label": "broke a limit", "zorder": 1}
OTHERS = {"s": 24, "color": "0.55", "alpha": 0.8, "label": "other trials", "zorder": 2}
SHORT = {"group_size": "G{}", "expansion_ratio": "E{:g}", "width_multiplier": "w{:g}", "depth_multiplier": "d{:g}"}


def panels(search: Search) -> list[tuple[str, str]]:
    """(x, y) metric pairs: every pair of objectives, accuracy (or a lone objective) always up, and
    accuracy against params and MACs even where they are not objectives."""
    names = [o.metric for o in search.file.objectives]
    pairs = [(b, a) if a == "accuracy" else (a, b) for a, b in combinations(names, 2)]
    up = "accuracy" if "accuracy" in names else names[0] if len(names) == 1 else None
    if up is not None:
        pairs += [(m, up) for m in ("params", "macs") if m not in names]
    return pairs


def label(t: FrozenTrial) -> str:
    parts = []
    for name, value in point_of(t).items():
        form = SHORT.get(name)
        parts.append(form.format(value) if form else str(value))
    return " ".join(parts) or f"t{t.number}"


def _title(x: str, y: str) -> str:
    if y == "accuracy":
        kind = "practical" if METRICS[x].kind in ("measured", "predicted") else "theoretical"
        return f"{kind} efficiency: accuracy vs {METRICS[x].label.split(' (')[0]}"
    return f"{METRICS[y].label.split(' (')[0]} vs {METRICS[x].label.split(' (')[0]}"


def _scale(metric: str, values: list[float]) -> tuple[float, str]:
    """Divisor and axis label: counts and bytes in k, M or G as their size asks (a tiny network's
    MACs are not a few ten-thousandths of a G)."""
    m = METRICS[metric]
    if m.kind != "cost":
        return m.scale, m.label
    top = max(values, default=0.0)
    divisor, prefix = next(((d, p) for d, p in ((1e9, "G"), (1e6, "M"), (1e3, "k")) if top >= d), (1.0, ""))
    unit = prefix + ("B" if metric == "activation_bytes" else "")
    name = m.label.split(" (")[0]
    return divisor, f"{name} ({unit})" if unit else name


def _axis_label(search: Search, metric: str, text: str) -> str:
    direction = {o.metric: o.direction for o in search.file.objectives}.get(metric)
    better = {"maximize": " (higher is better)", "minimize": " (lower is better)"}.get(direction or "", "")
    return text + better


def _panel(ax: Any, search: Search, trials: list[FrozenTrial], front: set[int], x: str, y: str) -> None:
    known = [metrics_of(t) for t in trials]
    (sx, x_label), (sy, y_label) = (_scale(m, [k[m] for k in known if m in k]) for m in (x, y))

    def coords(group: list[FrozenTrial]) -> tuple[list[float], list[float]]:
        have = [metrics_of(t) for t in group]
        pairs = [(m[x] / sx, m[y] / sy) for m in have if x in m and y in m]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.number not in front]
    best = sorted((t for t in trials if t.number in front), key=lambda t: metrics_of(t).get(x, 0.0))
    for group, style in ((pruned, PRUNED), (complete, OTHERS)):
        xs, ys = coords(group)
        if xs:  # an empty series would still take a place in the legend
            ax.scatter(xs, ys, **style)
    bx, by = coords(best)
    ax.scatter(bx, by, s=60, color="tab:red", edgecolor="black", linewidth=0.6, label="Pareto front", zorder=4)
    if len(search.file.objectives) == 2 and len(bx) > 1:
        ax.plot(bx, by, color="tab:red", lw=1.0, alpha=0.6, zorder=3)
    if len(best) <= 12:
        for t, px, py in zip([t for t in best if x in metrics_of(t) and y in metrics_of(t)], bx, by):
            ax.annotate(label(t), (px, py), textcoords="offset points", xytext=(5, 5), fontsize=7)
    ax.set_xlabel(_axis_label(search, x, x_label))
    ax.set_ylabel(_axis_label(search, y, y_label))
    ax.set_title(_title(x, y), fontsize=10)
    ax.grid(alpha=0.3)


def pareto_figure(search: Search, trials: list[FrozenTrial], front: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = panels(search)
    cols = min(3, len(pairs))
    rows = -(-len(pairs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.6 * cols, 4.6 * rows), dpi=110, squeeze=False)
    chosen = set(front)
    for ax, (x, y) in zip(axes.flat, pairs):
        _panel(ax, search, trials, chosen, x, y)
    for ax in list(axes.flat)[len(pairs) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8, loc="best")
    complete = sum(t.state == TrialState.COMPLETE for t in trials)
    goals = ", ".join(f"{'max' if o.direction == 'maximize' else 'min'} {o.metric}" for o in search.file.objectives)
    fig.suptitle(
        f"search {search.name}: {len(trials)} trials, {complete} complete, Pareto front of {len(front)} ({goals})"
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
