"""`archspec train --backend torch-pipeline`: an archspec plan executed with
torch.distributed.pipelining, one process per stage (gloo on CPU, NCCL on GPU).

Every process builds the whole model from the same seed, keeps the units of its own stage (the
plan's contiguous blocks), and runs a GPipe or 1F1B schedule over the micro-batches of each global
batch; `scale_grads` makes the accumulated gradient that of the global batch's mean loss, as in
single-process training. The first stage reads images, the last reads labels and computes the loss.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import networkx as nx
import torch
import torch.distributed as dist
from torch import nn

from ..atomic import write_text
from ..errors import SpecError
from ..graph import build_graph, unit_module_paths
from ..plan import Costing, Device, Plan, plan_pipeline
from ..resolve import resolve
from ..spec import ModelSpec, load_spec
from . import checkpoint
from .data import GlobalBatches, Transformed, collate, open_splits, train_transform
from .distributed import Context, barrier, session
from .metrics import Reporter
from .recipe import recipe_yaml
from .train import (CHECKPOINT, EMA_WEIGHTS, RUN_JSON, Diverged, TrainOptions, evaluate, loss_and_mix,
                    make_optimizer, prepare_run_dir, recipe_for, run_length, seed_mixing, spec_document,
                    step_schedule, train_resolution, weight_average, with_classes)

SCHEDULES = ("gpipe", "1f1b")


def unit_modules(model: nn.Module, g: nx.DiGraph, unit: str) -> list[tuple[str, nn.Module]]:
    """The modules that run a unit, in order (see graph.unit_module_paths)."""
    return [(path, model.get_submodule(path)) for path in unit_module_paths(g, unit)]


def stage_module(model: nn.Module, g: nx.DiGraph, plan: Plan, index: int) -> tuple[nn.Sequential, list[str]]:
    """Stage `index` as an nn.Sequential over the model's own modules, and their paths."""
    pairs = [p for unit in plan.stages[index].units for p in unit_modules(model, g, unit)]
    return nn.Sequential(*(m for _, m in pairs)), [name for name, _ in pairs]


def owned_state(model: nn.Module, paths: list[str]) -> dict[str, torch.Tensor]:
    """The entries of the model's state dict that belong to the given module paths."""
    return {k: v for k, v in model.state_dict().items() if any(k.startswith(p + ".") for p in paths)}


def pipeline_plan(spec: ModelSpec, resolution: int, stages: int, micro_batch: int) -> tuple[nx.DiGraph, Plan]:
    """Balance by time alone: host memory is not the constraint an IPU's SRAM is."""
    g = build_graph(resolve(spec), resolution)
    return g, plan_pipeline(g, stages, Costing(micro_batch, Device(1 << 62, name="host")))


class PipelineRunner:
    """One process's share of the pipeline: its stage, and the schedule that drives it."""

    def __init__(self, model: nn.Module, g: nx.DiGraph, plan: Plan, ctx: Context, n_micro: int, micro_batch: int,
                 loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], schedule: str = "gpipe") -> None:
        from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

        if ctx.world != len(plan.stages):
            raise SpecError(f"the plan has {len(plan.stages)} stages but {ctx.world} processes run it",
                            field="--stages")
        self.ctx = ctx
        self.module, self.paths = stage_module(model, g, plan, ctx.rank)
        self.first, self.last = ctx.rank == 0, ctx.rank == ctx.world - 1
        # the IR knows every stage's input and output shape: no shape inference over the wire
        nodes = [g.nodes[n] for n in plan.stages[ctx.rank].layers]
        # activations passed between stages carry gradients back: their examples say so
        example_input = torch.empty(micro_batch, *nodes[0]["in_shape"], device=ctx.device, requires_grad=not self.first)
        example_output = torch.empty(micro_batch, *nodes[-1]["out_shape"], device=ctx.device, requires_grad=True)
        stage = PipelineStage(self.module, ctx.rank, ctx.world, ctx.device, input_args=example_input,
                              output_args=example_output)
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


def gather_state(model: nn.Module, paths: list[str], ctx: Context) -> dict[str, torch.Tensor] | None:
    """The whole model's state dict on rank 0, assembled from every stage's own entries."""
    mine = {k: v.detach().cpu() for k, v in owned_state(model, paths).items()}
    parts: list[Any] = [None] * ctx.world
    dist.all_gather_object(parts, mine)
    if not ctx.main:
        return None
    full = dict(model.state_dict())
    for part in parts:
        full.update(part)
    return full


def train_pipeline(opts: TrainOptions, stages: int, schedule: str = "gpipe") -> dict[str, Any]:
    with session(opts.device) as ctx:
        return _train_pipeline(opts, stages, schedule, ctx)


def _train_pipeline(opts: TrainOptions, stages: int, schedule: str, ctx: Context) -> dict[str, Any]:
    from ..backends.torch.model import build_model
    from ..backends.torch.norms import parameter_groups

    if schedule not in SCHEDULES:
        raise SpecError(f"must be {' or '.join(SCHEDULES)}, got {schedule!r}", field="--schedule")
    if stages < 2 or ctx.world != stages:
        raise SpecError(f"a pipeline needs at least 2 stages, one process each (got {stages} stages, "
                        f"{ctx.world} processes)", field="--stages")
    if opts.resume:
        raise SpecError("--resume is not supported with --backend torch-pipeline yet", field="--resume")
    out = Path(opts.out)
    if ctx.main:
        prepare_run_dir(out, False)
    barrier(ctx)
    recipe = recipe_for(opts)
    spec = load_spec(opts.spec)
    resolution = train_resolution(opts.resolution, spec)
    train_set, val_set, classes = open_splits(opts.data, recipe.synthetic, opts.seed)
    spec, notes = with_classes(spec, classes)
    # every stage process walks the whole global batch as micro-batches (accum of them)
    sampler = GlobalBatches(len(train_set), recipe.global_batch_size, max(opts.accum, 1), 1, 0, opts.seed)
    steps_per_epoch = sampler.steps_per_epoch
    if steps_per_epoch == 0:
        raise SpecError(f"the training set has {len(train_set)} images, fewer than one global batch",
                        field="--batch-size")
    n_micro = sampler.accum
    loss_fn, mix = loss_and_mix(recipe, len(classes), sampler.micro * n_micro)
    g, plan = pipeline_plan(spec, resolution, stages, sampler.micro)
    torch.manual_seed(opts.seed)
    model = build_model(spec, seed=opts.seed).to(ctx.device).train()
    runner = PipelineRunner(model, g, plan, ctx, n_micro, sampler.micro, loss_fn, schedule)
    mine = set(map(id, runner.parameters()))
    groups = [{**group, "params": [p for p in group["params"] if id(p) in mine]}
              for group in parameter_groups(model, recipe.optimizer.weight_decay)]
    optimizer = make_optimizer([group for group in groups if group["params"]], recipe)
    scheduler = step_schedule(optimizer, recipe, steps_per_epoch, recipe.learning_rate())
    ema = weight_average(model, recipe, steps_per_epoch)
    total = run_length(recipe.epochs, steps_per_epoch, opts.max_steps)
    if ctx.main:
        write_text(out / "spec.yaml", spec_document(spec))
        write_text(out / "recipe.yaml", recipe_yaml(recipe))
    run_info = {"options": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()},
                            "recipe": None}, "backend": "torch-pipeline", "schedule": schedule,
                "plan": plan.as_dict(), "resolution": resolution, "classes": list(classes), "world_size": ctx.world,
                "global_batch_size": recipe.global_batch_size, "micro_batch_size": sampler.micro,
                "accum": n_micro, "steps_per_epoch": steps_per_epoch, "total_steps": total, "status": "running"}
    if ctx.main:
        write_text(out / RUN_JSON, json.dumps(run_info, indent=2))
    data = Transformed(train_set, train_transform(resolution, tuple(recipe.augment.crop_scale), recipe.augment.hflip),
                       opts.seed)
    step = 0
    with Reporter(out, "train", total, 0, runner.last, recipe.log_every_steps) as reporter:
        for note in notes:
            reporter.message(f"warning: {note}")
        while step < total:
            epoch = step // steps_per_epoch
            sampler.set_epoch(epoch, step % steps_per_epoch)
            data.epoch = epoch
            batches = iter(sampler)
            for _ in range(step % steps_per_epoch, steps_per_epoch):
                if step >= total:
                    break
                scheduler.step_update(step)
                indices = [i for _ in range(n_micro) for i in next(batches)]
                x = y = None
                if runner.first or runner.last:
                    x, y, _ = collate(data.__getitems__(indices))
                    x, y = x.to(ctx.device), y.to(ctx.device)
                    if mix is not None:
                        seed_mixing(opts.seed, step)  # the same draw on the first and the last stage
                        x, y = mix(x, y)
                loss = runner.step(x if runner.first else None, y if runner.last else None)
                # the last stage's loss, seen by every stage (NCCL reduces only device tensors)
                shared = torch.tensor([0.0 if loss is None else loss], device=ctx.device)
                dist.all_reduce(shared)
                step_loss = shared.item()
                if not math.isfinite(step_loss):
                    raise Diverged(f"loss became {step_loss} at step {step + 1} (epoch {epoch})")
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                ema.update(model, step=step)
                reporter.train_step(step, epoch, optimizer.param_groups[0]["lr"], step_loss, len(indices), 0)
    full = gather_state(model, runner.paths, ctx)
    full_ema = gather_state(ema.module, runner.paths, ctx)
    summary: dict[str, Any] = {"run": str(out), "steps": step, "resolution": resolution, "stages": stages}
    if ctx.main:
        model.load_state_dict(full)
        ema.module.load_state_dict(full_ema)
        checkpoint.save(out / CHECKPOINT, {"step": step, "model": full, "ema": full_ema})
        checkpoint.save(out / EMA_WEIGHTS, {"step": step, "model": full_ema})
        for weights, module in (("ema", ema.module), ("raw", model)):
            top1, top5, _ = evaluate(module, val_set, resolution, max(sampler.micro, 64), ctx)
            summary[f"val_top1_{weights}"], summary[f"val_top5_{weights}"] = top1, top5
        write_text(out / RUN_JSON, json.dumps({**run_info, "status": "finished", "summary": summary}, indent=2))
    barrier(ctx)
    return summary
