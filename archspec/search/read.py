"""What a finished trial says, read off its user attributes (see metrics.CLAIM and metrics.RESULT)."""

from __future__ import annotations

from typing import Any

from optuna.trial import FrozenTrial

from .metrics import CLAIM, METRICS, RESULT


def metrics_of(t: FrozenTrial) -> dict[str, float]:
    found = t.user_attrs.get(RESULT, {}).get("metrics", {})
    return {m: found[m] for m in METRICS if m in found}


def point_of(t: FrozenTrial) -> dict[str, Any]:
    point = dict(t.params)
    matched = t.user_attrs.get(CLAIM, {}).get("matched_expansion_ratio")
    if matched is not None:
        point["expansion_ratio"] = matched
    return point
