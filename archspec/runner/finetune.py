"""`archspec finetune`: fine-tune the last blocks of a trained run at the test resolution
(paper section 3.4, after Touvron et al. 2019).

From the run's EMA weights: SGD with a cosine learning rate from 0.25, global batch 512 by
accumulation, validation preprocessing. Only the last `blocks` blocks train, a block boundary
being a downsampling (stride-2) layer read from the IR: block 1 is the head (conv, norm,
classifier); block 2 reaches back to, and includes, the last stride-2 layer; and so on. The rest
is frozen: no gradients, and its norm layers stay in eval mode, so frozen weights and running
statistics are left bit for bit as they were.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import torch
from torch import nn

from ..atomic import write_text
from ..errors import SpecError
from ..graph import build_graph, info, layers
from ..limits import check_resolution
from ..resolution import congruence_warnings
from ..resolve import resolve
from ..spec import load_spec
from . import checkpoint
from .data import GlobalBatches, Transformed, default_workers, open_splits, val_transform
from .distributed import Context, barrier, launch, session, under_launcher
from .evaluate import evaluate
from .loop import DataParallel, StepData, Trainer, check_fast_paths, compiled, data_parallel, fit
from .metrics import Reporter
from .optim import smoothed_cross_entropy
from .options import FinetuneOptions
from .recipe import Recipe, load_recipe
from .rundir import RunDir
from .train import check_length, run_length


def trainable_layers(g: nx.DiGraph[str], blocks: int) -> list[str]:
    """Module paths of the layers the last `blocks` blocks hold, in forward order."""
    available = 1 + info(g)["downsampling_layers"]
    if not 1 <= blocks <= available:
        raise SpecError(
            f"this model has {available} blocks to fine-tune (the head, then one more per stride-2 "
            f"layer); got {blocks}",
            parameter="blocks",
        )
    order = layers(g)
    if blocks == 1:
        start = next(i for i, (_, d) in enumerate(order) if d["unit"] == "head")
    else:
        downsampling = [i for i, (_, d) in enumerate(order) if d["op"] == "conv" and d["stride"] == 2]
        start = downsampling[-(blocks - 1)]
    return [d["module"] for _, d in order[start:] if d["module"] is not None]


@dataclass
class Frozen:
    """Freezes every parameter outside `trainable`, and keeps frozen modules in eval mode."""

    model: nn.Module
    trainable: list[str]

    def __post_init__(self) -> None:
        def inside(name: str) -> bool:  # the module is (part of) a trainable layer
            return any(name == p or name.startswith(p + ".") for p in self.trainable)

        def holds(name: str) -> bool:  # the module contains a trainable layer
            return name == "" or any(p.startswith(name + ".") for p in self.trainable)

        self.frozen_modules = [m for name, m in self.model.named_modules() if not inside(name) and not holds(name)]
        for name, p in self.model.named_parameters():
            p.requires_grad_(inside(name.rsplit(".", 1)[0]))

    def apply(self) -> None:
        for module in self.frozen_modules:
            module.eval()


def run(opts: FinetuneOptions, nproc: int = 1) -> dict[str, Any]:
    """Fine-tune as the options say, in `nproc` processes; the summary."""
    run_dir = RunDir(opts.run)
    check_target(run_dir, opts)
    check_fast_paths("torch", opts.device, opts.compile, opts.channels_last)
    if nproc > 1 and not under_launcher():
        with run_dir.writing():
            launch("finetune", opts.as_dict(), nproc, run_dir.path)
        return run_dir.read_finetune_info(opts.resolution)
    return finetune(opts)


def check_target(run: RunDir, opts: FinetuneOptions) -> None:
    """A run keeps one fine-tune per resolution; another at the same resolution must be asked for."""
    run.require()
    check_resolution(opts.resolution)
    check_length(opts.epochs, opts.max_steps)
    if run.finetuned(opts.resolution).exists() and not opts.force:
        raise SpecError(
            f"{run} already holds a fine-tune at {opts.resolution} px ({run.finetuned(opts.resolution).name}); "
            "pass --force to replace it",
            parameter="resolution",
        )


def finetune(opts: FinetuneOptions) -> dict[str, Any]:
    """Fine-tune in this process (one of several under a launcher); the summary."""
    run = RunDir(opts.run)
    with session(opts.device) as ctx, run.writing() if ctx.main else contextlib.nullcontext():
        check_target(run, opts)
        info_ = run.raw_info()
        spec, recipe = load_spec(run.spec), load_recipe(run.recipe)
        g = build_graph(resolve(spec), opts.resolution)
        trainable = trainable_layers(g, opts.blocks)
        model = checkpoint.model_with_weights(spec, run.ema, "EMA weights", ctx.device)
        frozen = Frozen(model, trainable)
        notes = congruence_warnings(int(info_["resolution"]), [opts.resolution], info(g)["downsampling_layers"])
        t, val_set = _trainer(opts, ctx, run, info_, recipe, model, notes)
        with t.reporter.start(0):
            for note in notes:
                t.reporter.message(f"warning: {note}")
            model.train()
            frozen.apply()
            fit(t)
            summary = _finish(t, opts, run, trainable, val_set)
        barrier(ctx)
        return summary


MIN_STEPS_PER_EPOCH = 10  # a global batch larger than a tenth of the data is cut down to it
MEANINGFUL_STEPS = 20


@dataclass(frozen=True)
class BatchSize:
    global_batch: int
    micro: int
    accum: int
    notes: list[str]


def batch_for(length: int, wanted: int, micro: int, world: int) -> BatchSize:
    """The fine-tuning batch: the one asked for, but never so large that an epoch has fewer than
    MIN_STEPS_PER_EPOCH steps (the paper's 512 against a small data set would make a handful); split
    into micro-batches of at most `micro` per process, accumulated."""
    if length < world:
        raise SpecError(f"the training set has {length} images, fewer than the {world} processes", parameter="run")
    cap = max(world, length // MIN_STEPS_PER_EPOCH)
    batch = min(wanted, cap)
    micro = max(1, min(micro, batch // world))
    accum = max(1, batch // (micro * world))
    used = micro * world * accum
    notes = (
        []
        if used == wanted
        else [
            f"fine-tuning at a global batch of {used}, not {wanted}: {length} training images make at least "
            f"{MIN_STEPS_PER_EPOCH} steps an epoch; the learning rate is scaled by {used}/{wanted}"
        ]
    )
    return BatchSize(used, micro, accum, notes)


def _trainer(
    opts: FinetuneOptions,
    ctx: Context,
    run: RunDir,
    info_: dict[str, Any],
    recipe: Recipe,
    model: nn.Module,
    notes: list[str],
) -> tuple[Trainer, Any]:
    """SGD on the trainable parameters with a cosine schedule, over the training set with
    validation preprocessing, at the recipe's fine-tuning batch (by accumulation)."""
    from timm.scheduler import CosineLRScheduler

    seed = int(info_["options"]["seed"])
    data = Path(info_["options"]["data"]) if info_["options"]["data"] else None
    train_set, val_set, _ = open_splits(data, recipe.synthetic, seed)
    ft = recipe.finetune
    size = batch_for(
        len(train_set),
        opts.batch_size or ft.global_batch_size,
        ft.micro_batch_size or int(info_["micro_batch_size"]),
        ctx.world,
    )
    sampler = GlobalBatches(len(train_set), size.global_batch, size.accum, ctx.world, ctx.rank, seed + 1)
    total = run_length(opts.epochs, ft.epochs, sampler.steps_per_epoch, opts.max_steps)
    # the recipe's learning rate is for its global batch; a smaller one scales it linearly (Goyal et al. 2017)
    lr = ft.lr * size.global_batch / ft.global_batch_size
    notes.extend(
        size.notes
        + (
            [f"only {total} optimizer steps: too few for fine-tuning to mean much (--max-steps, --epochs)"]
            if total < MEANINGFUL_STEPS
            else []
        )
    )
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=ft.momentum)
    # cosine from ft.lr to 0 over the run
    scheduler = CosineLRScheduler(optimizer, t_initial=total, lr_min=0.0, t_in_epochs=False)
    if opts.channels_last:
        model = model.to(memory_format=torch.channels_last)
    wrapped = compiled(data_parallel(model, ctx), opts.compile)
    loss = smoothed_cross_entropy(ft.label_smoothing)
    strategy = DataParallel(ctx, wrapped, loss, seed=seed, channels_last=opts.channels_last)
    step_data = StepData(
        Transformed(train_set, val_transform(opts.resolution), seed), sampler, default_workers(recipe.num_workers), seed
    )
    reporter = Reporter(
        run.path,
        f"finetune-r{opts.resolution}-b{opts.blocks}",
        total,
        ctx.main,
        recipe.log_every_steps,
        recipe.log_every_seconds,
    )
    return Trainer(ctx, model, strategy, optimizer, scheduler, step_data, total, reporter), val_set


def _finish(t: Trainer, opts: FinetuneOptions, run: RunDir, trainable: list[str], val_set: Any) -> dict[str, Any]:
    sampler = t.data.sampler
    summary: dict[str, Any] = {
        "run": str(run),
        "resolution": opts.resolution,
        "blocks": opts.blocks,
        "steps": t.step,
        "global_batch_size": sampler.global_batch,
        "micro_batch_size": sampler.micro,
        "accum": sampler.accum,
        "trainable_parameters": sum(p.numel() for p in t.model.parameters() if p.requires_grad),
        "frozen_parameters": sum(p.numel() for p in t.model.parameters() if not p.requires_grad),
        "first_trainable_layer": trainable[0],
    }
    if t.ctx.main:
        top1, top5, _ = evaluate(t.model, val_set, opts.resolution, max(sampler.micro, 64), t.ctx.device)
        t.reporter.evaluation(t.step, 0, "finetuned", opts.resolution, top1, top5)
        summary.update(val_top1=top1, val_top5=top5)
        checkpoint.save(
            run.finetuned(opts.resolution),
            {"model": t.model.state_dict(), "resolution": opts.resolution, "blocks": opts.blocks, "step": t.step},
        )
        write_text(run.finetune_info(opts.resolution), json.dumps(summary, indent=2))
    return summary
