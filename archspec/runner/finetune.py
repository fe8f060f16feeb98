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

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import networkx as nx
import torch
import torch.nn.functional as F
from torch import nn

from ..atomic import write_text
from ..errors import SpecError
from ..graph import build_graph, layers
from ..resolution import checked_pixels, congruence_warnings
from ..resolve import resolve
from ..spec import load_spec
from . import checkpoint
from .data import GlobalBatches, Transformed, default_workers, open_splits, val_transform
from .distributed import Context, barrier, session
from .metrics import Reporter
from .recipe import load_recipe
from .train import EMA_WEIGHTS, Fit, evaluate, fit, model_with_weights, read_run, run_length

FINETUNED = "finetuned.pt"


def finetunable_blocks(g: nx.DiGraph) -> int:
    return 1 + sum(1 for _, d in layers(g, "conv") if d["stride"] == 2)


def trainable_layers(g: nx.DiGraph, blocks: int) -> list[str]:
    """Module paths of the layers the last `blocks` blocks hold, in forward order."""
    available = finetunable_blocks(g)
    if not 1 <= blocks <= available:
        raise SpecError(f"this model has {available} blocks to fine-tune (the head, then one more per stride-2 "
                        f"layer); got {blocks}", field="--blocks")
    order = [n for n, _ in layers(g)]
    if blocks == 1:
        start = next(i for i, n in enumerate(order) if g.nodes[n]["unit"] == "head")
    else:
        downsampling = [i for i, n in enumerate(order) if g.nodes[n].get("stride") == 2]
        start = downsampling[-(blocks - 1)]
    return [g.nodes[n]["module"] for n in order[start:] if g.nodes[n]["module"] is not None]


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


@dataclass
class FinetuneOptions:
    run: Path
    resolution: int
    blocks: int
    epochs: Optional[float] = None
    max_steps: Optional[int] = None
    device: str = "cpu"


def finetune(opts: FinetuneOptions) -> dict[str, Any]:
    with session(opts.device) as ctx:
        return _finetune(opts, ctx)


def _finetune(opts: FinetuneOptions, ctx: Context) -> dict[str, Any]:
    run = Path(opts.run)
    info = read_run(run)
    spec = load_spec(run / "spec.yaml")
    recipe = load_recipe(run / "recipe.yaml")
    checked_pixels(opts.resolution)
    if opts.max_steps is not None and opts.max_steps < 1:
        raise SpecError(f"must be at least 1, got {opts.max_steps}", field="--max-steps")
    g = build_graph(resolve(spec), opts.resolution)
    trainable = trainable_layers(g, opts.blocks)
    model = model_with_weights(spec, run / EMA_WEIGHTS, "EMA weights", ctx.device)
    frozen = Frozen(model, trainable)

    seed = int(info["options"]["seed"])
    data = Path(info["options"]["data"]) if info["options"]["data"] else None
    train_set, val_set, _ = open_splits(data, recipe.synthetic, seed)
    ft = recipe.finetune
    micro = ft.micro_batch_size or int(info["micro_batch_size"])
    global_batch = ft.global_batch_size
    if global_batch % (micro * ctx.world):
        micro = math.gcd(global_batch // ctx.world, micro)
    accum = global_batch // (micro * ctx.world)
    sampler = GlobalBatches(len(train_set), global_batch, accum, ctx.world, ctx.rank, seed + 1)
    if sampler.steps_per_epoch == 0:
        raise SpecError(f"the training set has {len(train_set)} images, fewer than one fine-tuning batch of "
                        f"{global_batch}", field="RUN")
    epochs = opts.epochs if opts.epochs is not None else ft.epochs
    total_steps = run_length(epochs, sampler.steps_per_epoch, opts.max_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=ft.lr, momentum=ft.momentum)

    def lr_at(step: int) -> None:  # cosine from ft.lr to 0 over the run
        for group in optimizer.param_groups:
            group["lr"] = ft.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))

    wrapped: nn.Module = model
    if ctx.distributed:
        wrapped = nn.parallel.DistributedDataParallel(model, device_ids=[ctx.local_rank] if ctx.device.type == "cuda"
                                                      else None)
    phase = f"finetune-r{opts.resolution}-b{opts.blocks}"
    with Reporter(run, phase, total_steps, 0, ctx.main, recipe.log_every_steps) as reporter:
        for note in congruence_warnings(int(info["resolution"]), [opts.resolution], g.graph["downsampling_layers"]):
            reporter.message(f"warning: {note}")
        model.train()
        frozen.apply()
        smoothing = ft.label_smoothing
        f = Fit(ctx=ctx, model=wrapped, raw=model, optimizer=optimizer, lr_at=lr_at,
                loss=lambda logits, y: F.cross_entropy(logits.float(), y, label_smoothing=smoothing),
                dataset=Transformed(train_set, val_transform(opts.resolution), seed), sampler=sampler,
                total_steps=total_steps, seed=seed, workers=default_workers(recipe.num_workers),
                reporter=reporter)
        fit(f)
        summary: dict[str, Any] = {
            "run": str(run), "resolution": opts.resolution, "blocks": opts.blocks, "steps": f.step,
            "global_batch_size": global_batch, "micro_batch_size": micro, "accum": accum,
            "trainable_parameters": sum(p.numel() for p in params),
            "frozen_parameters": sum(p.numel() for p in model.parameters() if not p.requires_grad),
            "first_trainable_layer": trainable[0]}
        if ctx.main:
            top1, top5, _ = evaluate(model, val_set, opts.resolution, max(micro, 64), ctx)
            reporter.evaluation(f.step, 0, "finetuned", opts.resolution, top1, top5)
            summary.update(val_top1=top1, val_top5=top5)
            checkpoint.save(run / FINETUNED, {"model": model.state_dict(), "resolution": opts.resolution,
                                              "blocks": opts.blocks, "step": f.step})
            write_text(run / "finetune.json", json.dumps(summary, indent=2))
    barrier(ctx)
    return summary
