"""`archspec train`: the paper's recipe on any compiled model, resumable, in one or many processes,
data-parallel or pipelined.

`run` is the command's one entry: it compiles and starts the IPU program (poptorch), launches the
processes a run needs, or trains in this process. Training itself is four steps: `_setup` (run
directory, spec, recipe, data), `_trainer` (model, optimizer, strategy), `_restore` (from the last
checkpoint on --resume) and `_finish` (evaluate, summary); the loop between them is loop.fit.
Checkpoints hold everything a resumed run needs to continue bit for bit: model, optimizer,
scheduler, EMA, RNG and the step (the data order is a function of the step).
"""

from __future__ import annotations

import contextlib
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from .. import backend, norms
from ..api import as_resolved, build_model, stats
from ..errors import DiskFull, Diverged, Interrupted, SpecError
from ..report import resolved_document
from ..resolution import congruence_warnings
from ..spec import ModelSpec, load_spec
from . import checkpoint
from .data import GlobalBatches, Transformed, default_workers, open_splits, train_transform
from .distributed import Context, barrier, gather_to_main, launch, session, under_launcher
from .evaluate import evaluate
from .loop import DataParallel, StepData, Trainer, check_fast_paths, compiled, data_parallel, fit
from .metrics import Reporter
from .optim import loss_and_mix, lr_schedule, make_optimizer, weight_average
from .options import TrainOptions
from .pipeline import Pipelined, PipelineRunner, pipeline_plan, stage_parameter_groups
from .recipe import Recipe, load_recipe
from .rundir import RunDir, RunInfo


def run(opts: TrainOptions, nproc: int = 1) -> Optional[dict[str, Any]]:
    """Train as the options say; the summary, or None where the IPU program ran on its own."""
    if opts.backend not in backend.names():
        raise SpecError(f"must be {', '.join(backend.names())}, got {opts.backend!r}", parameter="backend")
    if opts.backend != "torch" and nproc > 1:
        raise SpecError(
            f"goes with --backend torch; {opts.backend} runs one process per stage (--stages)", parameter="nproc"
        )
    check_fast_paths(opts.backend, opts.device, opts.compile, opts.channels_last)
    own = backend.kind(opts.backend).train
    if own is not None:  # a backend whose program trains on its own (poptorch's, a plug-in's)
        summary: Optional[dict[str, Any]] = backend.kind(opts.backend).entry("train")(opts)
        return summary
    check_length(opts.epochs, opts.max_steps)
    check_seed(opts.seed)
    processes = opts.stages if opts.backend == "torch-pipeline" else nproc
    if processes > 1 and not under_launcher():
        run_dir = RunDir(opts.out, "out")
        with run_dir.writing():  # the launcher holds the directory for its processes
            # checked here, once, rather than by every launched process
            if opts.resume:
                run_dir.require("out")
            else:
                run_dir.create()
            launch("train", opts.as_dict(), processes, run_dir.path)
        return run_dir.info("out").summary
    return train(opts)


MAX_EPOCHS, MAX_STEPS, MAX_SEED = 100_000, 10**9, 2**63 - 1


def check_length(epochs: Optional[float], max_steps: Optional[int]) -> None:
    """A run's length, refused before any work when it cannot mean a run."""
    if epochs is not None and not (math.isfinite(epochs) and 0 < epochs <= MAX_EPOCHS):
        raise SpecError(
            f"must be a number of epochs above 0 and at most {MAX_EPOCHS:,}, got {epochs}", parameter="epochs"
        )
    if max_steps is not None and not 1 <= max_steps <= MAX_STEPS:
        raise SpecError(f"must be from 1 to {MAX_STEPS:,}, got {max_steps}", parameter="max_steps")


def check_seed(seed: int) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise SpecError(f"must be from 0 to 2^63 - 1, got {seed}", parameter="seed")


def train(opts: TrainOptions) -> dict[str, Any]:
    """Train in this process (one of several under a launcher); the summary."""
    check_length(opts.epochs, opts.max_steps)
    check_seed(opts.seed)
    with session(opts.device) as ctx, RunDir(opts.out, "out").writing() if ctx.main else contextlib.nullcontext():
        setup = _setup(opts, ctx)
        t = _trainer(setup, ctx)
        if setup.resumed and setup.run.checkpoint.exists():
            _restore(t, setup)
        elif setup.resumed:
            setup.notes.append(f"{setup.run} had no checkpoint yet: the run starts over, in place")
        with t.reporter.start(t.step):
            for note in setup.notes:
                t.reporter.message(f"warning: {note}")
            if t.step:
                t.reporter.message(f"resuming {setup.run} at step {t.step}/{t.total_steps}")
            if ctx.main:
                setup.run.write_info(setup.info)
            try:
                fit(t)
            except Diverged as exc:
                raise _diverged(setup, exc) from None
            except DiskFull as exc:
                raise exc.keeping(_kept(setup)) from None
            except KeyboardInterrupt:
                raise Interrupted(
                    f"interrupted at step {t.step} of {t.total_steps}; {_kept(setup)}; continue with "
                    f"`archspec train {setup.opts.spec} --out {setup.run} --resume`"
                ) from None
            summary = _finish(t, setup)
        barrier(ctx)
        return summary


@dataclass
class Setup:
    """What a run is: its options (the stored ones on --resume), inputs, data and run.json."""

    opts: TrainOptions
    run: RunDir
    spec: ModelSpec
    recipe: Recipe
    resolution: int
    train_set: Any
    val_set: Any
    notes: list[str]
    sampler: GlobalBatches
    info: RunInfo
    resumed: bool


def _setup(opts: TrainOptions, ctx: Context) -> Setup:
    run = RunDir(opts.out, "out")
    if opts.resume:
        run.require("out")
    opts, spec, recipe = _inputs(opts, run)
    if ctx.main and not opts.resume:
        run.create(need=run_bytes(spec))
    barrier(ctx)
    resolution = as_resolved(spec).resolution.pick(opts.resolution)
    train_set, val_set, classes = open_splits(opts.data, recipe.synthetic, opts.seed)
    spec, notes = with_classes(spec, classes)
    res = as_resolved(spec)
    notes += congruence_warnings(resolution, res.resolution.test, res.downsampling_layers)
    sampler = _sampler(opts, recipe, len(train_set), ctx)
    total = run_length(opts.epochs, recipe.epochs, sampler.steps_per_epoch, opts.max_steps)
    info = RunInfo(
        options=opts.as_dict(),
        backend=opts.backend,
        resolution=resolution,
        classes=list(classes),
        world_size=ctx.world,
        global_batch_size=recipe.global_batch_size,
        micro_batch_size=sampler.micro,
        accum=sampler.accum,
        steps_per_epoch=sampler.steps_per_epoch,
        total_steps=total,
        command=sys.argv,
        torch=torch.__version__,
        schedule=opts.schedule if opts.backend == "torch-pipeline" else None,
    )
    if ctx.main and not opts.resume:
        run.write_inputs(spec, recipe, res)
    elif ctx.main:  # a longer --epochs is kept in the run's recipe
        run.write_recipe(recipe)
    return Setup(opts, run, spec, recipe, resolution, train_set, val_set, notes, sampler, info, opts.resume)


def _inputs(opts: TrainOptions, run: RunDir) -> tuple[TrainOptions, ModelSpec, Recipe]:
    """The options, spec and recipe of a new run, or on --resume the run's own, with a longer
    --epochs / --max-steps and this machine's --device."""
    if not opts.resume:
        if opts.micro_batches < 1:
            raise SpecError(f"must be at least 1, got {opts.accum}", parameter="accum")
        return opts, load_spec(opts.spec), recipe_for(opts)
    stored = run.raw_info("out")
    if stored.get("backend", "torch") not in ("torch", "torch-pipeline") or stored.get("backend") != opts.backend:
        raise SpecError(
            f"{run} was trained with --backend {stored.get('backend')}; resume it with the same backend",
            parameter="resume",
        )
    kept = TrainOptions.from_dict(stored["options"])
    _check_same_network(opts.spec, run)
    kept = replace(
        kept,
        out=Path(opts.out),
        recipe=None,
        resume=True,
        device=opts.device,
        epochs=opts.epochs if opts.epochs is not None else kept.epochs,
        max_steps=opts.max_steps if opts.max_steps is not None else kept.max_steps,
        channels_last=opts.channels_last,
        compile=opts.compile,
    )
    recipe = load_recipe(run.recipe, {"epochs": kept.epochs} if opts.epochs is not None else None)
    return kept, load_spec(run.spec), recipe


def _check_same_network(given: str, run: RunDir) -> None:
    """--resume continues the run's own spec: a SPEC of another network is refused, not ignored."""
    stored = load_spec(run.spec)
    mine = load_spec(given).model_copy(update={"num_classes": stored.num_classes})  # the data decided those

    def network(spec: ModelSpec) -> dict[str, Any]:
        document = resolved_document(as_resolved(spec))
        return {k: v for k, v in document.items() if k not in ("name", "description", "sources")}

    if network(mine) != network(stored):
        raise SpecError(
            f"{given} is not the network {run} trains ({run.spec}): resume with that spec, or "
            "train this one into another --out",
            parameter="spec",
        )


def _sampler(opts: TrainOptions, recipe: Recipe, length: int, ctx: Context) -> GlobalBatches:
    """Data-parallel processes each take their micro-batches of a global batch; the stages of a
    pipeline all walk the whole global batch, as micro-batches."""
    pipelined = opts.backend == "torch-pipeline"
    world, rank = (1, 0) if pipelined else (ctx.world, ctx.rank)
    sampler = GlobalBatches(length, recipe.global_batch_size, opts.micro_batches, world, rank, opts.seed)
    if sampler.steps_per_epoch == 0:
        raise SpecError(
            f"the training set has {length} images, fewer than one global batch of {recipe.global_batch_size}",
            parameter="batch_size",
        )
    return sampler


def _trainer(s: Setup, ctx: Context) -> Trainer:
    """The model, its optimizer and schedule, the strategy that runs a step, and the data."""
    from ..backends.torch.norms import parameter_groups

    recipe, opts = s.recipe, s.opts
    torch.manual_seed(opts.seed)  # dropout and drop-path draw from the global generator
    model = build_model(s.spec, seed=opts.seed).to(ctx.device)
    gpu = ctx.device.type == "cuda"
    strategy, model, groups = _strategy(s, ctx, model, parameter_groups(model, recipe.optimizer.weight_decay))
    optimizer = make_optimizer(groups, recipe)
    scheduler = lr_schedule(optimizer, recipe, s.sampler.steps_per_epoch, recipe.learning_rate(), s.info.total_steps)
    transform = train_transform(s.resolution, recipe.crop_scale(), recipe.augment.hflip)
    data = StepData(
        Transformed(s.train_set, transform, opts.seed),
        s.sampler,
        default_workers(recipe.num_workers),
        opts.seed,
        pin_memory=gpu,
    )
    reporter = Reporter(
        s.run.path, "train", s.info.total_steps, ctx.main, recipe.log_every_steps, recipe.log_every_seconds
    )
    return Trainer(
        ctx,
        model,
        strategy,
        optimizer,
        scheduler,
        data,
        s.info.total_steps,
        reporter,
        ema=weight_average(model, recipe, s.sampler.steps_per_epoch),
        checkpoint=lambda t: _save(t, s),
        checkpoint_every=recipe.checkpoint_every_steps,
        after_epoch=lambda t, epoch: _evaluate_epoch(t, s, epoch),
    )


def _strategy(s: Setup, ctx: Context, model: nn.Module, groups: list[dict[str, Any]]) -> tuple[Any, nn.Module, Any]:
    """How this process takes part in a step: a pipeline stage, or data-parallel (BN statistics
    synchronised across processes unless --no-sync-bn); the model, and the parameters it trains."""
    recipe, opts = s.recipe, s.opts
    loss, mix = loss_and_mix(recipe, len(s.info.classes), s.sampler.micro)
    if opts.backend == "torch-pipeline":
        g, plan = pipeline_plan(s.spec, s.resolution, ctx.world, s.sampler.micro)
        runner = PipelineRunner(model, g, plan, ctx, s.sampler.accum, s.sampler.micro, loss, opts.schedule)
        s.info.plan = plan.as_dict()
        return Pipelined(runner, mix, opts.seed), model, stage_parameter_groups(groups, runner)
    gpu = ctx.device.type == "cuda"
    channels_last = opts.channels_last if opts.channels_last is not None else gpu and recipe.channels_last_on_gpu
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    s.info.sync_bn = ctx.distributed and norms.split(s.spec.norm.type)[0].batch_dependent and opts.sync_bn is not False
    if s.info.sync_bn:
        s.notes.append(f"BN statistics are synchronised across the {ctx.world} processes (--no-sync-bn: per process)")
    wrapped = compiled(data_parallel(model, ctx, s.info.sync_bn), opts.compile)
    precision = torch.bfloat16 if gpu and recipe.bf16_on_gpu else None
    return DataParallel(ctx, wrapped, loss, mix, opts.seed, precision, channels_last), model, groups


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save(t: Trainer, s: Setup) -> None:
    """Checkpoint and EMA weights at the current step. Every process calls it: a pipeline's
    stages each hold part of the model and their own optimizer state."""
    for name, p in t.model.named_parameters():
        if not torch.isfinite(p).all():
            raise Diverged(f"parameter {name} is no longer finite after step {t.step}")
    model, ema = t.strategy.full_state(t.model), t.strategy.full_state(t.ema.module)
    optimizer = t.optimizer_shards()
    rng = gather_to_main(_rng_state(), t.ctx) if t.strategy.sharded else [_rng_state()]
    if t.ctx.main:
        checkpoint.save(
            s.run.checkpoint,
            {
                "step": t.step,
                "model": model,
                "optimizer": optimizer,
                "rng": rng,
                "scheduler": t.scheduler.state_dict(),
                "ema": ema,
            },
        )
        checkpoint.save(s.run.ema, {"step": t.step, "model": ema})


def _restore(t: Trainer, s: Setup) -> None:
    state = checkpoint.load(s.run.checkpoint)
    shard = t.ctx.rank if t.strategy.sharded else 0
    if len(state["optimizer"]) != (t.ctx.world if t.strategy.sharded else 1):
        raise SpecError(
            f"{s.run.checkpoint} holds {len(state['optimizer'])} optimizer states; this run has "
            f"{t.ctx.world} processes",
            parameter="resume",
        )
    checkpoint.load_weights(t.model, state["model"], s.run.checkpoint)
    checkpoint.load_weights(t.ema.module, state["ema"], s.run.checkpoint)
    t.optimizer.load_state_dict(state["optimizer"][shard])
    t.scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"][shard])
    t.step = int(state["step"])
    if t.ctx.main:  # a kill between the two writes of a save left ema.pt a save behind: repaired
        checkpoint.save(s.run.ema, {"step": t.step, "model": state["ema"]})


def _evaluation_model(t: Trainer, s: Setup, module: nn.Module) -> Optional[nn.Module]:
    """On the main process, a whole model holding `module`'s weights (a pipeline's are gathered)."""
    state = t.strategy.full_state(module)
    if not t.ctx.main:
        return None
    if not t.strategy.sharded:
        return module
    whole = build_model(s.spec).to(t.ctx.device)
    whole.load_state_dict(state or {})
    return whole


def _evaluate_epoch(t: Trainer, s: Setup, epoch: int) -> None:
    if (epoch + 1) % s.recipe.eval_every_epochs or t.step >= t.total_steps:
        return
    model = _evaluation_model(t, s, t.ema.module)
    if model is not None:
        top1, top5, _ = evaluate(
            model,
            s.val_set,
            s.resolution,
            max(s.sampler.micro, 64),
            t.ctx.device,
            getattr(t.strategy, "channels_last", False),
            getattr(t.strategy, "precision", None),
        )
        t.reporter.evaluation(t.step, epoch, "ema", s.resolution, top1, top5)
    barrier(t.ctx)


def _kept(s: Setup) -> str:
    """What a stopped run leaves to go on from."""
    try:
        last = int(checkpoint.load(s.run.checkpoint)["step"])
    except SpecError:
        return "no checkpoint had been written yet"
    return f"the last good checkpoint ({s.run.checkpoint}, step {last}) is intact"


def _diverged(s: Setup, exc: Diverged) -> Diverged:
    """The run's record of a divergence, and the error that says what was kept."""
    s.info.status, s.info.error = "diverged", str(exc)
    s.run.write_info(s.info)
    return Diverged(f"training stopped: {exc}; {_kept(s)}")


def _finish(t: Trainer, s: Setup) -> dict[str, Any]:
    """Evaluate the EMA and raw weights at the training resolution; write the summary."""
    summary: dict[str, Any] = {"run": str(s.run), "steps": t.step, "resolution": s.resolution}
    for weights, module in (("ema", t.ema.module), ("raw", t.model)):
        model = _evaluation_model(t, s, module)
        if model is None:
            continue
        top1, top5, n = evaluate(
            model,
            s.val_set,
            s.resolution,
            max(s.sampler.micro, 64),
            t.ctx.device,
            getattr(t.strategy, "channels_last", False),
            getattr(t.strategy, "precision", None),
        )
        t.reporter.evaluation(t.step, t.step // s.sampler.steps_per_epoch, weights, s.resolution, top1, top5)
        summary[f"val_top1_{weights}"], summary[f"val_top5_{weights}"] = top1, top5
        summary["val_images"] = n
    summary["skipped_images"] = t.reporter.skipped
    if t.reporter.skipped:
        t.reporter.message(f"warning: {t.reporter.skipped} unreadable images were skipped (replaced by the next)")
    if s.opts.backend == "torch-pipeline":
        summary["stages"] = t.ctx.world
    if t.ctx.main:
        s.info.status, s.info.summary = "finished", summary
        s.run.write_info(s.info)
    return summary


def run_bytes(spec: ModelSpec) -> int:
    """What a run's files take on disk, at the least: checkpoint.pt (weights, EMA, RMSProp's buffers
    and the rest of the run's state: about six fp32 copies of the weights, measured) and ema.pt."""
    return 7 * 4 * stats(spec).params


def run_length(epochs: Optional[float], default_epochs: float, steps_per_epoch: int, max_steps: Optional[int]) -> int:
    """Optimizer steps in a run: --max-steps alone sets them; --epochs (or the recipe's) make
    whole or fractional epochs, cut short by --max-steps."""
    if max_steps and epochs is None:
        return max_steps
    planned = math.ceil((default_epochs if epochs is None else epochs) * steps_per_epoch)
    return min(planned, max_steps) if max_steps else planned


def recipe_for(opts: TrainOptions) -> Recipe:
    """The recipe file (or the paper's), with --epochs and --batch-size on top."""
    overrides: dict[str, Any] = {}
    if opts.epochs is not None:
        overrides["epochs"] = opts.epochs
    if opts.batch_size is not None:
        overrides["global_batch_size"] = opts.batch_size
    return load_recipe(opts.recipe, overrides)


def with_classes(spec: ModelSpec, classes: list[str]) -> tuple[ModelSpec, list[str]]:
    """The spec with a classifier for the dataset's classes, and a note when that changed it."""
    if len(classes) == spec.num_classes:
        return spec, []
    note = (
        f"the dataset has {len(classes)} classes: the classifier is built for {len(classes)}, not the spec's "
        f"{spec.num_classes}"
    )
    return spec.model_copy(update={"num_classes": len(classes)}), [note]
