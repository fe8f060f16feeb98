"""An oracle for search tests, independent of archspec.search and of Optuna: every point of a
space enumerated with itertools, costed through archspec's public API, and the Pareto front
found by comparing every pair."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import archspec


def points(dims: dict[str, list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(dims, values)) for values in itertools.product(*dims.values())]


def spec_at(base: Path, point: dict[str, Any]) -> dict[str, Any]:
    """The base spec with a point applied, as a mapping (stage overrides: `stages[i].field`)."""
    data = archspec.load_spec(base).model_dump(mode="json", exclude_none=True)
    data.pop("base", None)
    for name, value in point.items():
        if name.startswith("stages["):
            index, field = name[len("stages[") :].split("].")
            data["stages"][int(index)][field] = value
        elif name == "resolution":
            data["resolution"]["train"] = value
        elif name == "norm":
            data["norm"]["type"] = value
        else:
            data[name] = value
    return data


def costs(base: Path, point: dict[str, Any]) -> dict[str, int]:
    cost = archspec.stats(spec_at(base, point))
    return {"params": cost.params, "macs": cost.macs, "activation_bytes": 4 * cost.activations}


def network(base: Path, point: dict[str, Any]) -> str:
    """What the built network is: every layer of its IR with its attributes (the resolved spec
    and the lowering, not archspec.search's digest)."""
    g = archspec.as_graph(spec_at(base, point))
    layers = [(n, {k: v for k, v in d.items() if k != "drop_path"}) for n, d in g.nodes(data=True)]
    return json.dumps(layers, sort_keys=True, default=str)


def pareto(values: dict[str, dict[str, float]], objectives: list[tuple[str, str]]) -> set[str]:
    """Keys of the non-dominated entries (objectives: (metric, minimize|maximize))."""
    signs = [1 if d == "minimize" else -1 for _, d in objectives]
    vec = {k: [s * v[m] for s, (m, _) in zip(signs, objectives)] for k, v in values.items()}

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    return {k for k, v in vec.items() if not any(dominates(w, v) for w in vec.values())}


def key(point: dict[str, Any]) -> str:
    return json.dumps(point, sort_keys=True)


def test_the_oracle_finds_the_front_of_a_small_example():
    values = {"a": {"x": 1, "y": 5}, "b": {"x": 2, "y": 2}, "c": {"x": 3, "y": 3}, "d": {"x": 1, "y": 5}}
    assert pareto(values, [("x", "minimize"), ("y", "minimize")]) == {"a", "b", "d"}
    assert pareto(values, [("x", "maximize"), ("y", "minimize")]) == {"b", "c"}
