"""The metrics of one candidate network, cheapest first; the expensive ones import torch here, on
first use. A limit broken by a cheap metric stops the evaluation before anything is timed or
trained (the trial is pruned, with the reason and the metrics it had)."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import optuna

from ..atomic import Appender, write_text
from ..graph import build_graph
from ..spec import spec_yaml
from .judge import Judged, judge, quietly
from .metrics import METRICS, RESULT, cost_metrics, predicted_metrics
from .read import metrics_of, rung_of
from .rungs import PROMOTED_FROM
from .space import Candidate, Search, judged_resolutions, unreachable
from .store import WORKER, SearchDir


class Infeasible(optuna.TrialPruned):
    """A metric broke a limit of `constraints:`."""


@dataclass
class Evaluator:
    search: Search
    directory: SearchDir
    profile: Any = None  # archspec.predict.Profile, with --profile

    def metrics(self, trial: optuna.Trial, cand: Candidate) -> dict[str, float]:
        """Every metric the search needs, by kind, recorded on the trial as it is known; with
        accuracy, where it was judged (pixels) and whether after a fine-tune."""
        wanted = self.search.metrics
        out = self._known(trial)
        judged: dict[str, Any] = {}
        self._log(trial, cand, "start")
        started = time.perf_counter()
        for kind in ("cost", "zero_cost", "measured", "accuracy"):
            if kind == "cost":
                g = build_graph(cand.resolved)
                found = cost_metrics(g)  # all of them, wanted or not: the figure plots accuracy against them
                found.update(predicted_metrics(g, self.profile, self.search.file.measure.batch_size, wanted))
            elif not any(METRICS[m].kind == kind for m in wanted):
                continue
            elif kind in ("zero_cost", "measured"):
                of_kind = [m for m in wanted if METRICS[m].kind == kind and m not in out]
                found = (self._zero_cost if kind == "zero_cost" else self._measured)(cand, of_kind)
            else:
                j = self._accuracy(cand, rung_of(trial))
                found = {"accuracy": j.accuracy}
                judged = {"accuracy_resolution": j.resolution, "finetuned": j.finetuned, "accuracy_by_seed": j.by_seed}
            out.update(found)
            broken = self._broken(found)
            if broken is not None:
                self._record(trial, cand, {"metrics": out, **judged, "reason": broken}, started)
                raise Infeasible(broken)
        self._record(trial, cand, {"metrics": out, **judged}, started)
        return out

    def _known(self, trial: optuna.Trial) -> dict[str, float]:
        """What the trial it was promoted from measured (a promoted network is timed and scored
        once), but accuracy."""
        source = trial.user_attrs.get(PROMOTED_FROM)
        if source is None:
            return {}
        known = metrics_of(trial.study.get_trials(deepcopy=False)[source])
        return {m: v for m, v in known.items() if METRICS[m].kind in ("zero_cost", "measured")}

    def _broken(self, found: dict[str, float]) -> Optional[str]:
        """The first limit of `constraints:` that a metric breaks, said as a reason."""
        for name, value in found.items():
            bound = self.search.file.constraints.get(name)
            broken = bound.broken_by(value) if bound is not None else None
            if broken is not None:
                return f"{name} {METRICS[name].shown(value)} breaks {name} {broken}"
        return None

    def _record(self, trial: optuna.Trial, cand: Candidate, result: dict[str, Any], started: float) -> None:
        trial.set_user_attr(RESULT, {**result, "evaluated_s": round(time.perf_counter() - started, 3)})
        self._log(trial, cand, "done")

    def _log(self, trial: optuna.Trial, cand: Candidate, event: str) -> None:
        """evaluations.jsonl: one line when a network's evaluation starts and one when it ends."""
        line = {"event": event, "trial": trial.number, "network": cand.digest, "rung": rung_of(trial)}
        line.update(worker=WORKER, time=time.time())
        log = Appender(self.directory.evaluations, parameter="out")
        try:
            log.write(json.dumps(line) + "\n")
        finally:
            log.close()

    def _zero_cost(self, cand: Candidate, wanted: list[str]) -> dict[str, float]:
        """Scores of the untrained network (seeded by proxy.seed) on the proxy's first training
        images at its training resolution; on the CPU: one minibatch, and no device noise in a score."""
        from ..api import build_model
        from ..runner.recipe import load_recipe
        from ..runner.zero_cost import minibatch, zero_cost_scores

        if not wanted:
            return {}
        p = self.search.file.proxy
        synthetic = load_recipe(self.directory.recipe).synthetic
        batch = minibatch(self.search.dataset, synthetic, cand.resolved.resolution.train, p.batch_size, p.seed)
        return zero_cost_scores(build_model(cand.resolved, seed=p.seed), batch, wanted)

    def _measured(self, cand: Candidate, wanted: list[str]) -> dict[str, float]:
        from ..backends.torch.bench import bench
        from ..backends.torch.fast import FastPaths

        m = self.search.file.measure
        out: dict[str, float] = {}
        for name, train, batch in (
            ("measured_train_images_per_s", True, m.batch_size),
            ("measured_infer_images_per_s", False, m.batch_size),
            ("measured_latency_ms", False, 1),
        ):
            if name in wanted:
                paths = FastPaths(channels_last=m.device == "cuda")  # as the runner trains on a GPU
                timed = bench(cand.resolved, m.device, batch, None, train, paths, False, m.steps)["archspec"]
                out[name] = timed["seconds_per_batch"] * 1e3 if name.endswith("_ms") else timed["images_per_s"]
        return out

    def _accuracy(self, cand: Candidate, rung: int) -> Judged:
        """Top-1 where the network is deployed, the mean over proxy.repeats seeds, after a proxy run
        of the shared runner for each in trials/<network>/ (their log there too) and, trained
        elsewhere, a fine-tune there."""
        p = self.search.file.proxy
        at = judged_resolutions(p, cand.resolved)
        if not at:
            raise Infeasible(unreachable(p, cand.resolved))
        home = self.directory.trials / cand.digest
        steps = self.search.rung_steps[rung]
        top = rung == len(self.search.rung_steps) - 1
        runs = []
        for repeat in range(p.repeats):
            name = ("run" if top else f"run-{steps}-steps") + (f"-seed{p.seed + repeat}" if repeat else "")
            runs.append(self._proxy_run(cand, home / name, steps, p.seed + repeat))
        return judge(p, runs, cand.resolved.resolution.train, at, home / "train.log")

    def _proxy_run(self, cand: Candidate, path: Path, steps: int, seed: int) -> tuple[Path, dict[str, Any]]:
        """A finished proxy run in `path` and its summary: trained here unless a killed worker
        finished it before its trial was told."""
        from ..runner.options import TrainOptions
        from ..runner.rundir import RunDir
        from ..runner.train import train

        p = self.search.file.proxy
        home = path.parent
        finished = _summary(RunDir(path))
        if finished is None:
            shutil.rmtree(path, ignore_errors=True)  # a run cut short by a killed worker starts over
            home.mkdir(parents=True, exist_ok=True)
            write_text(home / "spec.yaml", spec_yaml(cand.spec))
            opts = TrainOptions(
                spec=str(home / "spec.yaml"),
                out=path,
                data=self.search.dataset,
                max_steps=steps,
                device=p.device,
                recipe=self.directory.recipe,
                seed=seed,
            )
            finished = quietly(home / "train.log", lambda: train(opts))
        return path, finished


def _summary(run: Any) -> Optional[dict[str, Any]]:
    """The summary of a proxy run that finished (its worker killed before the trial was told)."""
    if not run.info_file.is_file():
        return None
    try:
        info = run.raw_info()
    except Exception:
        return None
    return info.get("summary") if info.get("status") == "finished" else None
