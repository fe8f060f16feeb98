"""Multi-fidelity: successive halving over proxy steps, promoting by non-dominated rank.

Optuna's pruners are single-objective (`trial.report` raises in a multi-objective study), so the
rungs are kept here, over ordinary trials: every sampled point is trained for the first rung's
steps; when a rung has finished, the best `keep` of it (by non-dominated rank, crowding distance
breaking ties on the last front, as NSGA-II and Archai's successive halving do) are enqueued as new
trials of the next rung, with user attrs `rung` and `promoted_from`. A trial below the top rung ends
pruned (its metrics in its result), so the front holds top-rung trials only. Everything is read
from the study, so a search killed at any point resumes where it was. Pure: no torch."""

from __future__ import annotations

import math
from collections.abc import Sequence

RUNG = "rung"  # user attr: which rung a trial trains at (absent: 0)
PROMOTED_FROM = "promoted_from"  # user attr: the trial of the rung below it was promoted from


def _better(a: Sequence[float], b: Sequence[float], signs: Sequence[float]) -> bool:
    """a dominates b: no worse in every objective, better in one (signs: +1 maximize, -1 minimize)."""
    pairs = [(s * x, s * y) for s, x, y in zip(signs, a, b)]
    return all(x >= y for x, y in pairs) and any(x > y for x, y in pairs)


def fronts(values: Sequence[Sequence[float]], signs: Sequence[float]) -> list[list[int]]:
    """Non-dominated sorting: indices of the first front, then of the next once it is removed, ..."""
    left, out = set(range(len(values))), []
    while left:
        front = sorted(i for i in left if not any(_better(values[j], values[i], signs) for j in left))
        out.append(front)
        left -= set(front)
    return out


def crowding(values: Sequence[Sequence[float]], front: list[int]) -> dict[int, float]:
    """NSGA-II's crowding distance within a front: boundary points infinite, others the sum over
    objectives of the normalized gap between their neighbours."""
    out = dict.fromkeys(front, 0.0)
    for m in range(len(values[front[0]]) if front else 0):
        order = sorted(front, key=lambda i: (values[i][m], i))
        span = values[order[-1]][m] - values[order[0]][m]
        out[order[0]] = out[order[-1]] = math.inf
        for k in range(1, len(order) - 1):
            if span > 0:
                out[order[k]] += (values[order[k + 1]][m] - values[order[k - 1]][m]) / span
    return out


def promote(values: Sequence[Sequence[float]], signs: Sequence[float], n: int) -> list[int]:
    """The indices of the `n` best by non-dominated rank, the last front cut by crowding distance
    (larger first; then by index, so that every worker promotes alike)."""
    chosen: list[int] = []
    for front in fronts(values, signs):
        if len(chosen) + len(front) <= n:
            chosen += front
            continue
        dist = crowding(values, front)
        chosen += sorted(front, key=lambda i: (-dist[i], i))[: n - len(chosen)]
        break
    return sorted(chosen)


def promoted_count(finished: int, keep: float) -> int:
    """How many of a rung's finished candidates go up: at least one when any finished."""
    return min(finished, max(1, math.ceil(finished * keep))) if finished else 0
