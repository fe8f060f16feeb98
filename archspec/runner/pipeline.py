"""`archspec train --backend torch-pipeline`: an archspec plan executed with
torch.distributed.pipelining, one process per stage (gloo on CPU, NCCL on GPU).

Every process builds the whole model from the same seed, keeps the units of its own stage (the
plan's contiguous blocks), and runs a GPipe or 1F1B schedule over the micro-batches of each global
batch; `scale_grads` makes the accumulated gradient that of the global batch's mean loss, as in
single-process training. The first stage reads images, the last reads labels and computes the loss.
The loop, checkpoints and resumption are the shared ones (loop.py, train.py): `Pipelined` is this
backend's strategy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

import networkx as nx
import torch
import torch.distributed as dist
from torch import nn

from ..errors import SpecError
from ..graph import build_graph, unit_module_paths
from ..plan import Costing, Device, PipelinePlan, plan_pipeline
from ..resolve import resolve
from ..spec import ModelSpec
from .distributed import Context, gather_to_main
from .loop import Batch
from .optim import Mix, seed_mixing

SCHEDULES = ("gpipe", "1f1b")


def unit_modules(model: nn.Module, g: nx.DiGraph[str], unit: str) -> list[tuple[str, nn.Module]]:
    """The modules that run a unit, in order (see graph.unit_module_paths)."""
    return [(path, model.get_submodule(path)) for path in unit_module_paths(g, unit)]


def stage_module(
    model: nn.Module, g: nx.DiGraph[str], plan: PipelinePlan, index: int
) -> tuple[nn.Sequential, list[str]]:
    """Stage `index` as an nn.Sequential over the model's own modules, and their paths."""
    pairs = [p for unit in plan.stages[index].units for p in unit_modules(model, g, unit)]
    return nn.Sequential(*(m for _, m in pairs)), [name for name, _ in pairs]


def owned_state(model: nn.Module, paths: list[str]) -> dict[str, torch.Tensor]:
    """The entries of the model's state dict that belong to the given module paths."""
    return {k: v for k, v in model.state_dict().items() if any(k.startswith(p + ".") for p in paths)}


def pipeline_plan(
    spec: ModelSpec, resolution: int, stages: int, micro_batch: int
) -> tuple[nx.DiGraph[str], PipelinePlan]:
    """Balance by time alone: host memory is not the constraint an IPU's SRAM is."""
    g = build_graph(resolve(spec), resolution)
    return g, plan_pipeline(g, stages, Costing(micro_batch, Device(1 << 62, name="host")))


class PipelineRunner:
    """One process's share of the pipeline: its stage, and the schedule that drives it."""

    def __init__(
        self,
        model: nn.Module,
        g: nx.DiGraph[str],
        plan: PipelinePlan,
        ctx: Context,
        n_micro: int,
        micro_batch: int,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        schedule: str = "gpipe",
    ) -> None:
        from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

        if schedule not in SCHEDULES:
            raise SpecError(f"must be {' or '.join(SCHEDULES)}, got {schedule!r}", parameter="schedule")
        if ctx.world != len(plan.stages):
            raise SpecError(
                f"the plan has {len(plan.stages)} stages but {ctx.world} processes run it", parameter="stages"
            )
        if schedule == "1f1b" and n_micro < ctx.world:
            raise SpecError(
                f"1F1B needs at least as many micro-batches per global batch as stages ({ctx.world}), got {n_micro}",
                parameter="accum",
            )
        self.ctx = ctx
        self.module, self.paths = stage_module(model, g, plan, ctx.rank)
        self.first, self.last = ctx.rank == 0, ctx.rank == ctx.world - 1
        # the IR knows every stage's input and output shape: no shape inference over the wire
        nodes = [g.nodes[n] for n in plan.stages[ctx.rank].layers]
        # activations passed between stages carry gradients back: their examples say so
        example_input = torch.empty(micro_batch, *nodes[0]["in_shape"], device=ctx.device, requires_grad=not self.first)
        example_output = torch.empty(micro_batch, *nodes[-1]["out_shape"], device=ctx.device, requires_grad=True)
        stage = PipelineStage(
            self.module, ctx.rank, ctx.world, ctx.device, input_args=example_input, output_args=example_output
        )
        kind = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}[schedule]
        # every rank passes the loss: a schedule without one runs no backward pass
        self.schedule = kind(stage, n_microbatches=n_micro, loss_fn=loss, scale_grads=True)

    def parameters(self) -> list[nn.Parameter]:
        return list(self.module.parameters())

    def step(self, x: torch.Tensor | None, target: torch.Tensor | None) -> float | None:
        """Forward and backward over one global batch; the mean loss on the last stage."""
        if self.first:
            self.schedule.step(x)
            return None
        if self.last:
            losses: list[torch.Tensor] = []
            self.schedule.step(target=target, losses=losses)
            return torch.stack([loss.detach().float() for loss in losses]).mean().item()
        self.schedule.step()
        return None


@dataclass
class Pipelined:
    """The pipeline as a strategy of the shared loop."""

    runner: PipelineRunner
    mix: Optional[Mix]
    seed: int
    sharded: bool = True

    @property
    def reads_data(self) -> bool:
        return self.runner.first or self.runner.last

    def step(self, micro_batches: list[Batch], step: int) -> float:
        ctx = self.runner.ctx
        x = y = None
        if micro_batches:
            x = torch.cat([b[0] for b in micro_batches]).to(ctx.device)
            y = torch.cat([b[1] for b in micro_batches]).to(ctx.device)
            if self.mix is not None:
                seed_mixing(self.seed, step)  # the same draw on the first and the last stage
                x, y = self.mix(x, y)
        loss = self.runner.step(x if self.runner.first else None, y if self.runner.last else None)
        # the last stage's loss, seen by every stage (NCCL reduces only device tensors)
        shared = torch.tensor([0.0 if loss is None else loss], device=ctx.device)
        dist.all_reduce(shared)
        return float(shared.item())

    def full_state(self, module: nn.Module) -> Optional[dict[str, torch.Tensor]]:
        """The whole model's state dict on rank 0, assembled from every stage's own entries."""
        mine = {k: v.detach().cpu() for k, v in owned_state(module, self.runner.paths).items()}
        parts = gather_to_main(mine, self.runner.ctx)
        if not self.runner.ctx.main:
            return None
        full = dict(module.state_dict())
        for part in parts:
            full.update(part)
        return full


def stage_parameter_groups(groups: list[dict[str, Any]], runner: PipelineRunner) -> list[dict[str, Any]]:
    """The optimizer's parameter groups, keeping only this stage's parameters."""
    mine = set(map(id, runner.parameters()))
    kept = [{**group, "params": [p for p in group["params"] if id(p) in mine]} for group in groups]
    return [group for group in kept if group["params"]]
