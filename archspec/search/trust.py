"""How far a search's proxy can be trusted (`proxy_trust` in front.json, `search show`):

- rank agreement: Kendall's tau-b between each rung's accuracy and the top rung's, over the
  candidates promoted to the top (a rung that orders them as the top does has tau 1);
- each top-rung candidate's accuracy against chance (1 / classes), with the band a guesser would
  reach: chance + 3 binomial standard deviations over the validation images;
- with proxy.repeats, how well the proxy agrees with itself: Kendall's tau-b between the accuracies
  of every two seeds over the top-rung candidates (the search cannot rank them better than its
  own seeds agree), and the median spread of a candidate's accuracy over its seeds;
- a warning when no candidate is outside that band: the accuracy axis then carries no information,
  and the front is decided by the other objectives alone. Pure: reads the study's trials."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from typing import Any, Optional

from optuna.trial import FrozenTrial, TrialState

from .metrics import RESULT
from .read import metrics_of, rung_of
from .rungs import PROMOTED_FROM


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> Optional[float]:
    """Kendall's tau-b (ties in either ranking discount it); None under two points or a constant."""
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    pairs = concordant + discordant
    denominator = math.sqrt((pairs + ties_x) * (pairs + ties_y))
    return (concordant - discordant) / denominator if denominator else None


def _lineage(t: FrozenTrial, by_number: dict[int, FrozenTrial]) -> dict[int, FrozenTrial]:
    """A top-rung trial and the trials of the lower rungs it was promoted through, by rung."""
    out = {rung_of(t): t}
    while t.user_attrs.get(PROMOTED_FROM) is not None:
        t = by_number[int(t.user_attrs[PROMOTED_FROM])]
        out[rung_of(t)] = t
    return out


def proxy_trust(trials: list[FrozenTrial], rungs: list[int], classes: int, val_images: int) -> dict[str, Any]:
    """The trust report of a search whose objectives include accuracy; `rungs`: proxy steps per rung."""
    by_number = {t.number: t for t in trials}
    top = [t for t in trials if t.state == TrialState.COMPLETE and "accuracy" in metrics_of(t)]
    chance = 1.0 / classes
    band = chance + 3 * math.sqrt(chance * (1 - chance) / max(1, val_images))
    agreement = []
    lineages = [_lineage(t, by_number) for t in top]
    for k, steps in enumerate(rungs[:-1]):
        pairs = [(metrics_of(lin[k])["accuracy"], metrics_of(lin[len(rungs) - 1])["accuracy"]) for lin in lineages]
        tau = kendall_tau([a for a, _ in pairs], [b for _, b in pairs])
        agreement.append({"rung": k, "steps": steps, "candidates": len(pairs), "kendall_tau": tau})
    candidates: list[dict[str, Any]] = [
        {"trial": t.number, "accuracy": metrics_of(t)["accuracy"], "times_chance": metrics_of(t)["accuracy"] / chance}
        for t in top
    ]
    by_seed: list[list[float]] = [t.user_attrs.get(RESULT, {}).get("accuracy_by_seed", []) for t in top]
    for c, seeds in zip(candidates, by_seed):
        if len(seeds) > 1:
            c["accuracy_by_seed"] = seeds
    informative = [c for c in candidates if c["accuracy"] > band]
    out: dict[str, Any] = {
        "chance": chance,
        "chance_band": band,
        "validation_images": val_images,
        "rungs": agreement,
        "candidates": candidates,
        "above_chance": len(informative),
    }
    repeatability = _seed_agreement(by_seed)
    if repeatability is not None:
        out["seeds"] = repeatability
    if candidates and not informative:
        out["warning"] = (
            f"no candidate's accuracy is above chance ({chance:.1%}, band to {band:.1%} over {val_images} "
            "validation images): the accuracy axis cannot be told apart from chance, so the front is decided by "
            "the other objectives; train longer (proxy.steps) or on data the network can learn"
        )
    return out


def _seed_agreement(by_seed: list[list[float]]) -> Optional[dict[str, Any]]:
    """Kendall's tau-b between every two seeds' accuracies over the candidates, up to the fewest seeds
    any candidate was judged on (None under two candidates), their mean, and the median spread
    (max - min) of a candidate over its seeds."""
    seeds = min((len(s) for s in by_seed), default=0)
    if seeds < 2:  # one seed has nothing to agree with
        return None
    pairs = itertools.combinations(range(seeds), 2)
    taus = [kendall_tau([s[i] for s in by_seed], [s[j] for s in by_seed]) for i, j in pairs]
    known = [t for t in taus if t is not None]
    return {
        "repeats": seeds,
        "candidates": len(by_seed),
        "kendall_tau_between_seeds": taus,
        "mean_kendall_tau": statistics.fmean(known) if known else None,
        "median_spread": statistics.median(max(s) - min(s) for s in by_seed),
    }
