"""Processes and devices: this process's place in a run, and starting a run in several processes
with torch's own launcher.

A run of N processes on this machine starts `python -m torch.distributed.run --standalone
--nproc-per-node N -m archspec.runner.worker`, passing the job (command and options) in the
environment; each process finds RANK / WORLD_SIZE in its environment and joins the group (gloo on
CPU, NCCL on GPU). On several machines, run torchrun yourself (README).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist

from ..errors import DiskFull, Diverged, Interrupted, Location, ProcessFailed, SpecError
from ..reader import RECORD, read_json
from .rundir import LOCK_HELD

JOB_VARIABLE = "ARCHSPEC_JOB"


@dataclass(frozen=True)
class Context:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def under_launcher() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def setup(device: str) -> Context:
    if device not in ("cpu", "cuda"):
        raise SpecError(f"must be cpu or cuda, got {device!r}", parameter="device")
    if device == "cuda" and not torch.cuda.is_available():
        raise SpecError("CUDA is not available on this machine; use --device cpu", parameter="device")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        where = torch.device("cuda", local_rank)
    else:
        where = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return Context(rank, world, local_rank, where)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def session(device: str) -> Iterator[Context]:
    """This process's place in the run (joining the process group under a launcher), left cleanly."""
    ctx = setup(device)
    try:
        yield ctx
    finally:
        teardown()


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def autocast(device: torch.device, dtype: Optional[torch.dtype]) -> torch.autocast:
    """Mixed precision in `dtype`, or none when it is None."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def mean_over_ranks(value: torch.Tensor, ctx: Context) -> torch.Tensor:
    if ctx.distributed:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= ctx.world
    return value


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()


def gather_to_main(value: Any, ctx: Context) -> list[Any]:
    """Every rank's `value`, in rank order, on every rank (a list of one without a process group)."""
    if not ctx.distributed:
        return [value]
    parts: list[Any] = [None] * ctx.world
    dist.all_gather_object(parts, value)
    return parts


def launch(command: str, options: dict[str, Any], nproc: int, run_dir: Optional[Path] = None) -> None:
    """Run `command` (train or finetune) with `options` in `nproc` processes on this machine, with
    torch's elastic launcher run here (as torchrun --standalone would), so that a process's failure
    is not printed as torchrun's report: a process's bad input, divergence or interruption is raised
    here, as if this process had met it; `run_dir` is held by this process for them."""
    import logging
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise SpecError(f"must be at least 1, got {nproc}", parameter="nproc")
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # their failure is ours to tell
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
    )
    with tempfile.TemporaryDirectory(prefix="archspec-launch-") as errors:
        environment = {
            JOB_VARIABLE: json.dumps({"command": command, "options": options, "errors": errors}),
            LOCK_HELD: str(run_dir.resolve()) if run_dir else "",
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, cores() // nproc))),
        }
        failed = None
        with _environment(environment):
            try:
                elastic_launch(config, sys.executable)("-m", "archspec.runner.worker")
            except ChildFailedError as exc:
                failed = exc
        reports = sorted(Path(errors).glob("rank-*.json"), key=lambda p: int(p.stem.split("-")[1]))
        if reports:
            raise error_from_report(read_json(reports[0], RECORD))
    if failed is not None:
        code = next((f.exitcode for f in failed.failures.values()), 1)
        raise ProcessFailed("a launched process", code or 1)


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """os.environ with `values` set, for the processes started meanwhile."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def error_report(exc: Exception) -> dict[str, Any]:
    """What a launched process tells its launcher about the error that stopped it."""
    if isinstance(exc, Interrupted):
        return {"kind": "interrupted", "message": str(exc)}
    if isinstance(exc, DiskFull):
        error = [exc.error.errno, exc.error.strerror]
        return {"kind": "disk_full", "message": str(exc), "path": str(exc.path), "error": error, "kept": exc.kept}
    if isinstance(exc, SpecError):
        return {
            "kind": "input",
            "message": exc.message,
            "field": exc.field,
            "parameter": exc.parameter,
            "file": exc.file,
            "location": None if exc.location is None else [exc.location.file, exc.location.line, exc.location.column],
        }
    return {"kind": "diverged", "message": str(exc)}


def error_from_report(report: dict[str, Any]) -> Exception:
    if report["kind"] == "diverged":
        return Diverged(report["message"])
    if report["kind"] == "interrupted":
        return Interrupted(report["message"])
    if report["kind"] == "disk_full":
        return DiskFull(report["path"], OSError(*report["error"]), report["kept"])
    location = Location(*report["location"]) if report["location"] else None
    if report["parameter"] is not None:
        return SpecError(report["message"], parameter=report["parameter"], location=location, file=report["file"])
    return SpecError(report["message"], field=report["field"], location=location, file=report["file"])


def cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
