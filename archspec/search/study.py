"""The Optuna study behind `archspec search`: which sampler, how a worker claims and runs a trial,
and how a search starts, resumes and is joined by workers on other machines.

Sampler: Optuna's GridSampler when the whole space fits the trial budget (every point, in a
seeded order), NSGA-II otherwise, seeded per trial number, so that a resumed search, or one run by
several workers, proposes what a sequential run would from the same finished trials.

A worker loops: under the claim lock it fails the trials of dead workers (re-queued by Optuna's
RetryHeartbeatStaleTrialCallback), stops when the budget is claimed, asks for a trial, tags it
with the network's digest, and learns whether another trial already has that network (then it
reuses that trial's metrics, waiting for it if it is still being evaluated) or whether it
evaluates it itself; then it evaluates without the lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import optuna
from optuna.samplers import BaseSampler, GridSampler, NSGAIISampler
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from ..atomic import open_append
from ..errors import Interrupted, SpecError
from .evaluate import Evaluator, Infeasible
from .metrics import CLAIM, JUDGED, METRICS, RESULT
from .read import metrics_of, ranked, rung_of
from .results import Snapshot, snapshot, write_results, write_trials
from .rungs import PROMOTED_FROM, RUNG, promote, promoted_count
from .space import Candidate, Search, load_search
from .store import WORKER, ClaimLock, SearchDir, open_storage, public_url, retry_callback, worker_alive

GRID_LIMIT = 4096  # without a trial budget, a space this small is enumerated
POLL_S = 0.5  # a trial waiting for another that evaluates its network looks this often
REPORT_S = 1.0  # progress and trials.csv are refreshed at most this often
MAX_WORKERS = 256
STORAGE_VARIABLE = "ARCHSPEC_SEARCH_STORAGE"  # how a worker process gets the URL (not on its command line)


def fingerprint(search: Search) -> str:
    """What makes two search files the same search: everything but the budget, paths and prose."""
    f = search.file.model_dump(mode="json", exclude={"base", "fixed", "budget", "description"})
    f["proxy"].pop("recipe", None)
    f["proxy"]["dataset"] = str(search.dataset) if search.dataset else "synthetic"
    base = search.base.model_dump(mode="json", exclude={"base"})
    text = json.dumps({"file": f, "base": base, "recipe": search.recipe_text}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Plan:
    grid: bool
    target: Optional[int]  # trials in all; None: until the time budget
    deadline: Optional[float]  # time.time() after which no trial starts

    @property
    def sampler(self) -> str:
        return "GridSampler" if self.grid else "NSGAIISampler"


def plan_for(search: Search, started: float, sampler: Optional[str] = None) -> Plan:
    """The sampler, trial budget and deadline; `sampler` is the one a study already runs with."""
    budget, mode = search.file.budget, search.file.sampler
    deadline = started + budget.minutes * 60 if budget.minutes is not None else None
    if sampler is not None:
        mode = "grid" if sampler == "GridSampler" else "nsga2"
    if mode == "grid" or (mode == "auto" and search.size <= (budget.trials or GRID_LIMIT)):
        return Plan(True, min(search.size, budget.trials or search.size), deadline)
    if search.file.fidelity is not None and budget.trials is None:  # a rung ends when its trials are claimed
        raise search.source.error(("fidelity",), "rungs need a trial budget for the first rung: set budget.trials")
    if budget.trials is None and budget.minutes is None:
        raise search.source.error(
            ("budget",),
            f"the space has {search.size:,} points, too many to enumerate: set budget.trials or budget.minutes",
        )
    return Plan(False, budget.trials, deadline)


def make_sampler(search: Search, plan: Plan, number: int) -> BaseSampler:
    dims = search.dims
    if plan.grid:  # every worker must shuffle the grid alike: one seed
        return GridSampler({d.name: list(d.choices) for d in dims}, seed=search.file.seed)
    population = max(4, min(50, (plan.target or 200) // 4))
    return NSGAIISampler(population_size=population, seed=(search.file.seed * 1_000_003 + number) % 2**31)


def origin(t: FrozenTrial) -> int:
    """The trial a retried one stands for (its budget slot)."""
    return int(t.system_attrs.get("failed_trial", t.number))


def point_key(t: FrozenTrial) -> str:
    return json.dumps(t.params, sort_keys=True)


class Worker:
    """Claims and runs trials until the budget is claimed or the time is up."""

    def __init__(
        self, search: Search, directory: SearchDir, storage: BaseStorage, study: str, plan: Plan, profile: Any
    ) -> None:
        self.search, self.directory, self.storage, self.plan = search, directory, storage, plan
        self.study = optuna.load_study(study_name=study, storage=storage, sampler=make_sampler(search, plan, 0))
        self.study_id = storage.get_study_id_from_name(study)
        self.lock = ClaimLock(storage, directory.lock, fingerprint(search))
        self.evaluator = Evaluator(search, directory, profile)
        self.interrupted = False

    def run(self, after_trial: Optional[Callable[[], None]] = None) -> None:
        while self.plan.deadline is None or time.time() < self.plan.deadline:
            self.lock.acquire()
            try:
                step = self._next()
                if step == "stop":
                    return
                if step == "run":
                    self.study.optimize(self._objective, n_trials=1, catch=(Exception,))
            finally:
                self.lock.release()
            if step == "wait":  # another worker is finishing the rung below: promotion waits for it
                time.sleep(POLL_S)
                continue
            if self.interrupted:  # Ctrl-C inside a proxy run: the runner said so; Optuna caught it
                raise Interrupted(
                    f"search stopped; `archspec search ... --out {self.directory.path} --resume` continues it"
                )
            if after_trial is not None:
                after_trial()

    def _reap(self, skip: int = -1) -> None:
        """Fail the running trials of dead workers (re-queued for a retry). Under the claim lock a
        running trial with no claim yet is one whose claimer died before it could say who it was."""
        if isinstance(self.storage, RDBStorage):  # other machines: Optuna's heartbeat ("experimental" since 2.9)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker = t.user_attrs.get(CLAIM, {}).get("worker")
            if t.number != skip and (worker_alive(worker) if worker else False) is False:
                trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, t.number)
                self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
                retry_callback()(self.study, self.storage.get_trial(trial_id))

    def _next(self) -> str:
        """Under the lock: "run" a trial (the sampler set to propose it, or one waiting), "wait" for
        others to finish a rung, or "stop"."""
        self._reap()
        trials = self.study.get_trials(deepcopy=False)
        if any(t.state == TrialState.WAITING for t in trials):
            return "run"
        sampled = [t for t in trials if rung_of(t) == 0]
        if self.plan.target is not None and len({origin(t) for t in sampled}) >= self.plan.target:
            return self._promote(trials)
        if not self.plan.grid:
            if len({point_key(t) for t in sampled if t.state.is_finished()}) >= self.search.size:
                return self._promote(trials)  # NSGA-II on a time budget has seen every point
            self.study.sampler = make_sampler(self.search, self.plan, len(trials))
        return "run"

    def _promote(self, trials: list[FrozenTrial]) -> str:
        """Once a rung has finished, enqueue the promotions to the next that are not there yet (so a
        worker killed while enqueuing leaves nothing to redo): "run" them, "wait", or "stop"."""
        objectives, keep = self.search.file.objectives, self.search.file.fidelity
        signs = [1.0 if o.direction == "maximize" else -1.0 for o in objectives]
        for k in range(len(self.search.rung_steps) - 1):
            at = [t for t in trials if rung_of(t) == k]
            if any(not t.state.is_finished() for t in at):
                return "wait"
            pool = [t for t in at if ranked(t, [o.metric for o in objectives])]
            values = [[metrics_of(t)[o.metric] for o in objectives] for t in pool]
            chosen = promote(values, signs, promoted_count(len(pool), keep.keep if keep else 1.0))
            have = {t.user_attrs.get(PROMOTED_FROM) for t in trials if rung_of(t) == k + 1}
            missing = [pool[i] for i in chosen if pool[i].number not in have]
            for t in missing:
                self.study.enqueue_trial(t.params, user_attrs={RUNG: k + 1, PROMOTED_FROM: t.number})
            if missing:
                return "run"
        return "wait" if any(not t.state.is_finished() for t in trials) else "stop"

    def _objective(self, trial: optuna.Trial) -> list[float]:
        """Claim (under the lock, which this releases), then reuse or evaluate."""
        try:
            point = {d.name: trial.suggest_categorical(d.name, d.choices) for d in self.search.dims}
            cand = self._candidate(trial, point)
            donor = self._settle(trial, cand)
        finally:
            self.lock.release()
        try:
            while donor is not None and donor.state == TrialState.RUNNING:
                time.sleep(POLL_S)
                with self.lock:
                    donor = self._settle(trial, cand)
            if donor is not None:
                return self._reuse(trial, donor)
            metrics = self.evaluator.metrics(trial, cand)
            if rung_of(trial) < len(self.search.rung_steps) - 1:
                raise optuna.TrialPruned()  # a lower rung: its metrics, in its result, decide promotion
            return [metrics[o.metric] for o in self.search.file.objectives]
        except (KeyboardInterrupt, Interrupted):
            self.interrupted = True
            retry_callback()(self.study, self.study.get_trials(deepcopy=False)[trial.number])  # again on --resume
            raise
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            trial.set_user_attr(RESULT, {"error": f"{type(exc).__name__}: {(str(exc) or '-').splitlines()[0]}"})
            raise

    def _candidate(self, trial: optuna.Trial, point: dict[str, Any]) -> Candidate:
        try:
            return self.search.candidate(point, name=f"{self.search.name}-t{trial.number}"[:80])
        except SpecError as exc:
            trial.set_user_attr(CLAIM, {"worker": WORKER})
            trial.set_user_attr(RESULT, {"reason": f"not a valid network: {exc.message}"})
            raise optuna.TrialPruned() from None

    def _settle(self, trial: optuna.Trial, cand: Candidate) -> Optional[FrozenTrial]:
        """Under the lock: a finished trial of the same network to reuse, a live one evaluating it
        to wait for, or None: this trial evaluates it. Says so in the trial's claim."""
        self._reap(skip=trial.number)
        same = [
            t
            for t in self.study.get_trials(deepcopy=False)
            if t.number != trial.number
            and t.user_attrs.get(CLAIM, {}).get("network") == cand.digest
            and rung_of(t) == rung_of(trial)
        ]
        done = [t for t in same if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        running = [t for t in same if t.state == TrialState.RUNNING and t.user_attrs[CLAIM].get("evaluating")]
        donor = min(done, key=lambda t: t.number) if done else running[0] if running else None
        claim = {"worker": WORKER, "network": cand.digest, "evaluating": donor is None}
        if cand.matched_expansion is not None:
            claim["matched_expansion_ratio"] = cand.matched_expansion
        if trial.user_attrs.get(CLAIM) != claim:
            trial.set_user_attr(CLAIM, claim)
        return donor

    def _reuse(self, trial: optuna.Trial, donor: FrozenTrial) -> list[float]:
        result = {k: v for k, v in donor.user_attrs.get(RESULT, {}).items() if k in ("metrics", "reason", *JUDGED)}
        trial.set_user_attr(RESULT, {**result, "reused_from": donor.number})
        if donor.state == TrialState.PRUNED:
            raise Infeasible(result["reason"]) if "reason" in result else optuna.TrialPruned()
        return list(donor.values)


# --------------------------------------------------------------------------------------------
# a search: start or resume, run its workers, write its results


def _profile(search: Search, path: Optional[Path]) -> Any:
    wanted = [m for m in search.metrics if METRICS[m].kind == "predicted"]
    if path is None:
        if wanted:
            raise SpecError(f"{wanted[0]} is predicted from a speed profile: give --profile FILE", parameter="profile")
        return None
    from ..predict import load_profile

    profile = load_profile(path)
    if "predicted_train_images_per_s" in wanted and not profile.train:
        raise SpecError(
            f"{path} holds no training times, which predicted_train_images_per_s needs", parameter="profile"
        )
    return profile


def _check_devices(search: Search) -> None:
    kinds = {METRICS[m].kind for m in search.metrics}
    devices = ({search.file.measure.device} if "measured" in kinds else set()) | (
        {search.file.proxy.device} if "accuracy" in kinds else set()
    )
    if "cuda" in devices:
        import torch

        if not torch.cuda.is_available():
            field = ("measure", "device") if search.file.measure.device == "cuda" else ("proxy", "device")
            raise search.source.error(field, "CUDA is not available on this machine")


@dataclass
class Session:
    """One invocation of `archspec search`: the search, where it lives and how it runs."""

    search: Search
    directory: SearchDir
    storage: BaseStorage
    study: str
    plan: Plan
    profile: Any
    started: float

    def snapshot(self, study: optuna.Study) -> Snapshot:
        return snapshot(self.search, study, self.plan.target, self.plan.sampler, self.started, self.plan.deadline)


def start(
    file: Path, out: Path, *, storage: Optional[str] = None, resume: bool = False, profile: Optional[Path] = None
) -> Session:
    """Check everything that can be refused, then create (or reopen) the study and its directory."""
    started = time.time()
    search = load_search(file)
    plan = plan_for(search, started)
    prof = _profile(search, profile)
    _check_devices(search)
    directory = SearchDir(out)
    fp = fingerprint(search)
    meta = directory.check(search, fp, resume)
    if meta is not None and meta.get("storage") != (None if storage is None else public_url(storage)):
        was = meta.get("storage") or f"the journal in {directory.path}"
        raise SpecError(f"{directory.path} keeps its study in {was}: resume it with that storage", parameter="storage")
    name = meta["study"] if meta else f"{search.name}-{fp[:12]}"
    store = open_storage(storage, directory.journal) if storage is not None else None
    if meta is None:
        directory.create(search, fp, name, storage)
    store = store or open_storage(None, directory.journal)
    study = optuna.create_study(
        storage=store,
        study_name=name,
        directions=[o.direction for o in search.file.objectives],
        sampler=make_sampler(search, plan, 0),
        load_if_exists=True,
    )
    if "sampler" not in study.user_attrs:  # the first to start the study chooses; resumed and joining workers keep it
        study.set_user_attr("sampler", plan.sampler)
    plan = plan_for(search, started, study.user_attrs["sampler"])
    return Session(search, directory, store, name, plan, prof, started)


def _spawn(
    session: Session, workers: int, storage: Optional[str], profile: Optional[Path]
) -> list[subprocess.Popen[bytes]]:
    d = session.directory
    d.logs.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers))),
    }
    if storage is not None:
        env[STORAGE_VARIABLE] = storage
    args = [sys.executable, "-m", "archspec.search.worker", str(d.path), "--target", str(session.plan.target or 0)]
    args += ["--deadline", str(session.plan.deadline or 0)] + (["--profile", str(profile)] if profile else [])
    procs = []
    for i in range(workers):
        with os.fdopen(open_append(d.logs / f"worker-{i}.log", parameter="out"), "ab") as log:
            procs.append(subprocess.Popen([*args, "--index", str(i)], env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs


def run_search(
    file: Path,
    out: Path,
    *,
    workers: int = 1,
    storage: Optional[str] = None,
    resume: bool = False,
    profile: Optional[Path] = None,
    progress: Optional[Callable[[Snapshot], None]] = None,
) -> dict[str, Any]:
    """`archspec search`: run (or resume, or join) a search; its front, as front.json holds it."""
    if not 1 <= workers <= MAX_WORKERS:
        raise SpecError(f"must be from 1 to {MAX_WORKERS}, got {workers}", parameter="workers")
    s = start(file, out, storage=storage, resume=resume, profile=profile)
    study = optuna.load_study(study_name=s.study, storage=s.storage)
    last = [0.0, -1.0]  # when reported, trials done then

    def report(now: bool = False) -> None:
        if not now and time.monotonic() - last[0] < REPORT_S:
            return
        snap = s.snapshot(study)
        if snap.done != last[1]:
            write_trials(s.directory, s.search, study)  # results stream as trials finish
        last[:] = [time.monotonic(), snap.done]
        if progress is not None:
            progress(snap)

    report(now=True)
    problems: list[str] = []
    if workers == 1:
        Worker(s.search, s.directory, s.storage, s.study, s.plan, s.profile).run(report)
    else:
        procs = _spawn(s, workers, storage, profile)
        try:
            while any(p.poll() is None for p in procs):
                report()
                time.sleep(1.0)
        finally:  # interrupted: the workers stop too (their running trials are retried on --resume)
            for p in procs:
                if p.poll() is None:
                    p.terminate()
                    p.wait()
        problems = [
            f"worker {i} exited with status {p.returncode}: see {s.directory.logs / f'worker-{i}.log'}"
            for i, p in enumerate(procs)
            if p.returncode
        ]
    report(now=True)
    payload = write_results(s.directory, s.search, study, s.plan.sampler)
    payload["warnings"] = problems + payload.get("warnings", [])
    payload["seconds"] = round(time.time() - s.started, 1)
    return payload


def show_search(path: Path, storage: Optional[str] = None) -> dict[str, Any]:
    """`archspec search show DIR`: re-read a finished or running search; rewrite its results."""
    directory = SearchDir(path)
    meta = directory.read_meta("directory")
    search = load_search(directory.frozen)
    store = open_storage(storage or meta.get("storage"), directory.journal)
    try:
        study = optuna.load_study(study_name=meta["study"], storage=store)
    except KeyError:
        raise SpecError(f"the storage holds no study {meta['study']!r}", parameter="storage") from None
    return write_results(directory, search, study, study.user_attrs.get("sampler", "?"))


def worker_main(directory: Path, index: int, target: int, deadline: float, profile: Optional[Path]) -> None:
    """One worker process of `run_search` (archspec.search.worker)."""
    d = SearchDir(directory)
    meta = d.read_meta()
    search = load_search(d.frozen)
    store = open_storage(os.environ.get(STORAGE_VARIABLE), d.journal)
    kind = optuna.load_study(study_name=meta["study"], storage=store).user_attrs.get("sampler")
    plan = Plan(kind == "GridSampler", target or None, deadline or None)
    prof = _profile(search, profile)
    parent = os.getppid()

    def orphaned() -> None:  # the search that started this worker was killed: claim nothing more
        if os.getppid() != parent:
            sys.exit(0)

    Worker(search, d, store, meta["study"], plan, prof).run(orphaned)
