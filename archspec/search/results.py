"""What a search leaves in its directory, read from the study: trials.csv (every trial), front.json
(the Pareto-optimal trials), front/ (each of them as a standalone spec) and pareto.png; and the
snapshot a progress bar shows."""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..atomic import write_files, write_text
from ..errors import SpecError
from ..spec import spec_yaml
from .metrics import CLAIM, JUDGED, METRICS, RESULT
from .read import metrics_of, point_of, rung_of
from .rungs import PROMOTED_FROM, RUNG
from .space import Search
from .store import SearchDir
from .trust import proxy_trust


def front_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto-optimal complete trials (Optuna's best_trials), by number."""
    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return []
    return sorted(study.best_trials, key=lambda t: t.number)


@dataclass
class Snapshot:
    """Where a search stands: what a progress bar shows."""

    done: int  # budget slots finished (a retried trial counts once)
    total: Optional[int]
    running: int
    complete: int
    pruned: int
    failed: int
    front: int
    best: dict[str, float] = field(default_factory=dict)  # per objective, over the complete trials
    elapsed: float = 0.0
    eta: Optional[float] = None  # seconds
    sampler: str = ""


def snapshot(
    search: Search, study: optuna.Study, total: Optional[int], sampler: str, started: float, deadline: Optional[float]
) -> Snapshot:
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.is_finished()]
    slots = {  # of the first rung: the budget counts sampled points, not their promotions
        int(t.system_attrs.get("failed_trial", t.number))
        for t in finished
        if (t.state != TrialState.FAIL or "error" in t.user_attrs.get(RESULT, {})) and rung_of(t) == 0
    }
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best: dict[str, float] = {}
    for i, o in enumerate(search.file.objectives):
        values = [t.values[i] for t in complete]
        if values:
            best[o.metric] = max(values) if o.direction == "maximize" else min(values)
    now = time.time()
    elapsed = now - started
    ours = [t for t in finished if t.datetime_complete is not None and t.datetime_complete.timestamp() >= started]
    eta = None
    if total is not None and ours:
        eta = max(total - len(slots), 0) * elapsed / len(ours)
    if deadline is not None:
        eta = min(eta if eta is not None else deadline - now, max(deadline - now, 0.0))
    return Snapshot(
        done=len(slots),
        total=total,
        running=sum(t.state == TrialState.RUNNING for t in trials),
        complete=len(complete),
        pruned=sum(t.state == TrialState.PRUNED for t in trials),
        failed=sum(t.state == TrialState.FAIL for t in trials),
        front=len(front_trials(study)) if complete else 0,
        best=best,
        elapsed=elapsed,
        eta=eta,
        sampler=sampler,
    )


def _seconds(t: FrozenTrial) -> Optional[float]:
    if t.datetime_start is None or t.datetime_complete is None:
        return None
    return round((t.datetime_complete - t.datetime_start).total_seconds(), 3)


def trial_rows(search: Search, trials: list[FrozenTrial]) -> tuple[list[str], list[dict[str, Any]]]:
    """trials.csv: every trial, its point, network, metrics, state and seconds."""
    dims = [d.name for d in search.dims]
    matched = search.file.space.expansion_ratio == "match"
    recorded = {m for t in trials for m in metrics_of(t)}
    metric_cols = [m for m in METRICS if m in recorded or m in search.metrics]
    columns = ["trial", "state", *dims, *(["matched_expansion_ratio"] if matched else []), "network"]
    judged = list(JUDGED) if "accuracy" in search.metrics else []
    judged += [RUNG, PROMOTED_FROM] if search.file.fidelity else []
    columns += [*metric_cols, *judged, "reused_from", "reason", "error", "evaluated_s", "seconds", "worker"]
    rows = []
    for t in trials:
        claim, result = t.user_attrs.get(CLAIM, {}), t.user_attrs.get(RESULT, {})
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name.lower(), **t.params, **metrics_of(t)}
        row.update({k: claim.get(k, "") for k in ("network", "matched_expansion_ratio", "worker")})
        row.update({k: result.get(k, "") for k in ("reused_from", "reason", "error", "evaluated_s", *JUDGED)})
        row["accuracy_by_seed"] = " ".join(f"{a:g}" for a in result.get("accuracy_by_seed", ()))
        row.update({RUNG: rung_of(t), PROMOTED_FROM: t.user_attrs.get(PROMOTED_FROM, "")})
        row["seconds"] = _seconds(t) if _seconds(t) is not None else ""
        rows.append(row)
    return columns, rows


def write_trials(directory: SearchDir, search: Search, study: optuna.Study) -> None:
    columns, rows = trial_rows(search, study.get_trials(deepcopy=False))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(directory.trials_csv, text.getvalue())


def _front_specs(directory: SearchDir, search: Search, front: list[FrozenTrial]) -> dict[int, str]:
    """front/t<N>.yaml: each Pareto-optimal network as a standalone spec (validates, compiles to its metrics)."""
    files: dict[str, str] = {}
    names: dict[int, str] = {}
    for t in front:
        name = f"t{t.number:04d}.yaml"
        cand = search.candidate(t.params, name=f"{search.name}-t{t.number}"[:80])
        shown = ", ".join(f"{m} {METRICS[m].shown(v)}" for m, v in metrics_of(t).items())
        point = ", ".join(f"{k} {v}" for k, v in point_of(t).items())
        header = f"# Pareto-optimal trial {t.number} of search {search.name!r} ({point})\n# {shown}\n"
        files[name] = spec_yaml(cand.spec, header)
        names[t.number] = f"{directory.front.name}/{name}"
    write_files(directory.front, files, parameter="out")
    for stale in directory.front.glob("t*.yaml"):  # this directory's own files, of an earlier front
        if stale.name not in files:
            stale.unlink()
    return names


def front_payload(directory: SearchDir, search: Search, study: optuna.Study, sampler: str) -> dict[str, Any]:
    trials = study.get_trials(deepcopy=False)
    front = front_trials(study)
    specs = _front_specs(directory, search, front)
    count = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    return {
        "search": search.name,
        "directory": str(directory.path),
        "sampler": sampler,
        "space_size": search.size,
        "objectives": [{"metric": o.metric, "direction": o.direction} for o in search.file.objectives],
        "constraints": {k: v.model_dump(exclude_none=True) for k, v in search.file.constraints.items()},
        "trials": {"total": len(trials), **count},
        "evaluations": sum(
            1 for t in trials if "evaluated_s" in t.user_attrs.get(RESULT, {}) and t.state.is_finished()
        ),
        "front": [
            {
                "trial": t.number,
                "point": point_of(t),
                "network": t.user_attrs.get(CLAIM, {}).get("network"),
                "metrics": metrics_of(t),
                **{k: t.user_attrs[RESULT][k] for k in JUDGED if k in t.user_attrs.get(RESULT, {})},
                "spec": specs[t.number],
            }
            for t in front
        ],
    }


def write_results(directory: SearchDir, search: Search, study: optuna.Study, sampler: str) -> dict[str, Any]:
    """trials.csv, front.json, front/ and pareto.png; the front as front.json holds it."""
    write_trials(directory, search, study)
    payload = front_payload(directory, search, study, sampler)
    warnings: list[str] = []
    if "accuracy" in search.metrics:
        trust = proxy_trust(
            study.get_trials(deepcopy=False), search.rung_steps, search.base.num_classes, search.val_images
        )
        payload["proxy_trust"] = trust
        warnings += [trust["warning"]] if "warning" in trust else []
    write_text(directory.front_json, json.dumps(payload, indent=2) + "\n")
    try:
        from .figure import pareto_figure

        pareto_figure(
            search, study.get_trials(deepcopy=False), [f["trial"] for f in payload["front"]], directory.figure
        )
        payload["figure"] = str(directory.figure)
    except ModuleNotFoundError as exc:  # matplotlib is the `plot` extra: the numbers are written without it
        warnings.append(f"no {directory.figure.name}: needs {exc.name} (pip install 'archspec[plot]')")
    except OSError as exc:
        raise SpecError(f"{directory.figure}: cannot write ({exc.strerror or exc})", parameter="out") from None
    payload["warnings"] = warnings
    return payload
