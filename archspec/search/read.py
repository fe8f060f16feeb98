"""What a finished trial says, read off its user attributes (see metrics.CLAIM and metrics.RESULT)."""

from __future__ import annotations

from typing import Any, Union

import optuna
from optuna.trial import FrozenTrial

from .metrics import CLAIM, METRICS, RESULT
from .rungs import RUNG


def metrics_of(t: FrozenTrial) -> dict[str, float]:
    found = t.user_attrs.get(RESULT, {}).get("metrics", {})
    return {m: found[m] for m in METRICS if m in found}


def point_of(t: FrozenTrial) -> dict[str, Any]:
    point = dict(t.params)
    matched = t.user_attrs.get(CLAIM, {}).get("matched_expansion_ratio")
    if matched is not None:
        point["expansion_ratio"] = matched
    return point


def rung_of(t: Union[FrozenTrial, optuna.Trial]) -> int:
    return int(t.user_attrs.get(RUNG, 0))


def ranked(t: FrozenTrial, objectives: list[str]) -> bool:
    """A finished trial that can take part in promotion: every objective measured, nothing broken."""
    result = t.user_attrs.get(RESULT, {})
    found = result.get("metrics", {})
    return (
        t.state.is_finished()
        and "reason" not in result
        and "error" not in result
        and all(m in found for m in objectives)
    )
