"""Multi-process training with torch.distributed, started by torch's own launcher.

`archspec train --nproc N` re-runs the same command under `python -m torch.distributed.run
--standalone --nproc-per-node N`; each process finds RANK / WORLD_SIZE in its environment and joins
the group (gloo on CPU, NCCL on GPU). On several machines, run torchrun yourself (README).
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist

from ..errors import SpecError


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
        raise SpecError(f"must be cpu or cuda, got {device!r}", field="--device")
    if device == "cuda" and not torch.cuda.is_available():
        raise SpecError("CUDA is not available on this machine; use --device cpu", field="--device")
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


def mean_over_ranks(value: torch.Tensor, ctx: Context) -> torch.Tensor:
    if ctx.distributed:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= ctx.world
    return value


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()


def launch(nproc: int, argv: list[str]) -> int:
    """Run `archspec <argv>` in `nproc` processes on this machine; returns the exit status."""
    if nproc < 1:
        raise SpecError(f"must be at least 1, got {nproc}", field="--nproc")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "archspec.cli", *_without_nproc(argv)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, cores() // nproc)))}
    return subprocess.run(command, env=env).returncode


def _without_nproc(argv: list[str]) -> list[str]:
    """The children learn their world from the launcher (and torchrun's parser would take --nproc
    for an abbreviation of its own --nproc-per-node)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
