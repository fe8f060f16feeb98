"""The one training loop, shared by training (data-parallel or pipelined) and fine-tuning.

`fit` walks the steps of a run: set the learning rate, let the strategy run forward and backward
over one global batch, stop on a NaN/Inf loss before the update, update, average the weights,
report, and checkpoint. A strategy is how a process takes part in a step:

- `DataParallel`: every process holds the whole model and its own micro-batches of the global
  batch; gradients are accumulated and all-reduced once per global batch (DDP).
- `Pipelined` (pipeline.py): every process holds one stage of the model; the first and the last
  read the whole global batch, as micro-batches that flow through a GPipe or 1F1B schedule.

A step's result is the global batch's mean loss, the same on every process.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Optional, Protocol, cast

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from ..errors import Diverged, SpecError
from .data import GlobalBatches, Transformed, collate
from .distributed import Context, autocast, gather_to_main, mean_over_ranks, to_device
from .metrics import Reporter
from .optim import Loss, Mix, seed_mixing

Batch = tuple[torch.Tensor, torch.Tensor, int]  # images, labels, unreadable images skipped


class Strategy(Protocol):
    reads_data: bool  # whether this process loads images
    sharded: bool  # whether each process holds its own part of the model (and optimizer state)

    def step(self, micro_batches: list[Batch], step: int) -> float: ...

    def full_state(self, module: nn.Module) -> Optional[dict[str, torch.Tensor]]: ...


@dataclass
class StepData:
    """The micro-batches of each step: this process's share of every global batch, in a
    deterministic, resumable order."""

    dataset: Transformed
    sampler: GlobalBatches
    workers: int
    seed: int
    pin_memory: bool = False

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.steps_per_epoch

    def steps(self, epoch: int, first: int, load: bool = True) -> Iterator[list[Batch]]:
        self.sampler.set_epoch(epoch, first)
        self.dataset.epoch = epoch
        if not load:  # a middle pipeline stage: its input arrives from the previous stage
            for _ in range(first, self.steps_per_epoch):
                yield []
            return
        loader = DataLoader(
            self.dataset,
            batch_sampler=self.sampler,
            num_workers=self.workers,
            collate_fn=collate,
            pin_memory=self.pin_memory,
            generator=torch.Generator().manual_seed(self.seed),
        )
        batches = iter(loader)
        for _ in range(first, self.steps_per_epoch):
            yield [next(batches) for _ in range(self.sampler.accum)]


@dataclass
class DataParallel:
    """Forward and backward of this process's micro-batches; DDP all-reduces the last one's gradients."""

    ctx: Context
    model: nn.Module  # DDP-wrapped when distributed
    loss: Loss
    mix: Optional[Mix] = None
    seed: int = 0
    precision: Optional[torch.dtype] = None
    channels_last: bool = False
    reads_data: bool = True
    sharded: bool = False

    def step(self, micro_batches: list[Batch], step: int) -> float:
        losses = []
        for a, (x, y, _) in enumerate(micro_batches):
            x, y = to_device(x, self.ctx.device, self.channels_last), y.to(self.ctx.device, non_blocking=True)
            target: torch.Tensor = y
            if self.mix is not None:
                seed_mixing(self.seed, step, a, self.ctx.rank)
                x, target = self.mix(x, y)
            last = a == len(micro_batches) - 1
            sync = contextlib.nullcontext() if last or not self.ctx.distributed else cast(DDP, self.model).no_sync()
            with sync, autocast(self.ctx.device, self.precision):
                loss = self.loss(self.model(x), target)
                (loss / len(micro_batches)).backward()
            losses.append(loss.detach().float())
        return float(mean_over_ranks(torch.stack(losses).mean(), self.ctx).item())

    def full_state(self, module: nn.Module) -> Optional[dict[str, torch.Tensor]]:
        return module.state_dict() if self.ctx.main else None


def check_fast_paths(backend: str, device: str, compile: bool, channels_last: Optional[bool]) -> None:
    """--compile and --channels-last where they can run: one line (exit 2) before any work, never a
    silent fall-back to eager."""
    if compile and backend != "torch":
        raise SpecError(f"--compile goes with --backend torch, not {backend}", parameter="compile")
    if channels_last and backend == "poptorch":
        raise SpecError(
            "--channels-last goes with the torch backends; PopTorch lays out memory itself", parameter="channels_last"
        )
    from ..backends.torch.fast import FastPaths, check

    check(FastPaths(channels_last=bool(channels_last), compiled=compile), device, train=True)


def compiled(model: nn.Module, compile: bool) -> nn.Module:
    """The module a step calls: torch.compile'd with --compile. The uncompiled module keeps the
    weights and is what checkpoints and EMA read, so their parameter names do not change."""
    return torch.compile(model) if compile else model  # type: ignore[return-value]


def data_parallel(model: nn.Module, ctx: Context, sync_bn: bool = False) -> nn.Module:
    """The model as DDP runs it across processes (itself in one process); with `sync_bn`, its BN
    layers normalise with the whole global micro-batch's statistics."""
    if not ctx.distributed:
        return model
    if sync_bn:
        from ..backends.torch.norms import convert_sync_batchnorm

        model = convert_sync_batchnorm(model)
    return DDP(model, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None)


@dataclass
class Trainer:
    """One process's share of a run: what each optimizer step needs."""

    ctx: Context
    model: nn.Module  # the whole model, unwrapped (a pipeline stage trains a part of it)
    strategy: Strategy
    optimizer: torch.optim.Optimizer
    scheduler: Any  # a timm scheduler: `.step_update(step)` sets the learning rate of a step
    data: StepData
    total_steps: int
    reporter: Reporter
    ema: Any = None  # timm's ModelEmaV3, or None
    step: int = 0
    checkpoint: Optional[Callable[[Trainer], None]] = None  # every process calls it
    checkpoint_every: int = 500
    after_epoch: Optional[Callable[[Trainer, int], None]] = None  # every process calls it

    def optimizer_shards(self) -> list[Any]:
        """The optimizer state of every process that holds its own (one entry when all hold the same)."""
        state = self.optimizer.state_dict()
        return gather_to_main(state, self.ctx) if self.strategy.sharded else [state]


def fit(t: Trainer) -> None:
    if t.ctx.device.type == "cpu":
        from ..backends.torch.allocator import keep_freed_memory

        keep_freed_memory()
    steps_per_epoch = t.data.steps_per_epoch
    while t.step < t.total_steps:
        epoch, first = divmod(t.step, steps_per_epoch)
        for micro_batches in t.data.steps(epoch, first, t.strategy.reads_data):
            if t.step >= t.total_steps:
                break
            _train_step(t, micro_batches, epoch)
        if t.step % steps_per_epoch == 0 and t.after_epoch is not None:
            t.after_epoch(t, t.step // steps_per_epoch - 1)


def _train_step(t: Trainer, micro_batches: list[Batch], epoch: int) -> None:
    t.scheduler.step_update(t.step)
    loss = t.strategy.step(micro_batches, t.step)
    if not math.isfinite(loss):
        raise Diverged(f"loss became {loss} at step {t.step + 1} (epoch {epoch})")
    t.optimizer.step()
    t.optimizer.zero_grad(set_to_none=True)
    t.step += 1
    if t.ema is not None:
        t.ema.update(t.model, step=t.step)
    images = sum(len(y) for _, y, _ in micro_batches) * (t.ctx.world if not t.strategy.sharded else 1)
    skipped = sum(s for _, _, s in micro_batches)
    t.reporter.train_step(t.step, epoch, t.optimizer.param_groups[0]["lr"], loss, images, skipped)
    if t.checkpoint is not None and (t.step % t.checkpoint_every == 0 or t.step == t.total_steps):
        t.checkpoint(t)
