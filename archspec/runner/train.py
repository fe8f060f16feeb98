"""`archspec train`: the paper's recipe on any compiled model, resumable, in one or many processes.

The loop (`fit`) is shared with fine-tuning: global batch by micro-batch accumulation (DDP
all-reduces once per global batch), a NaN/Inf check before every update, checkpoints written
atomically, and exact resumption (model, optimizer, scheduler, EMA, RNG and data position).
Optimizer, schedule, Mixup/CutMix and the weight average come from timm; transforms and
ImageFolder from torchvision.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..api import as_resolved
from ..atomic import write_text
from ..errors import SpecError
from ..report import resolved_yaml
from ..resolution import congruence_warnings, parse_resolution
from ..spec import ModelSpec, load_spec
from . import checkpoint
from .data import GlobalBatches, Transformed, collate, default_workers, eval_batches, open_splits, train_transform, \
    val_transform
from .distributed import Context, barrier, mean_over_ranks, session
from .metrics import Reporter
from .recipe import Recipe, load_recipe, recipe_yaml

CHECKPOINT, EMA_WEIGHTS, RUN_JSON = "checkpoint.pt", "ema.pt", "run.json"


class Diverged(Exception):
    """The loss became NaN/Inf: the run stops, its last good checkpoint stays as it was."""


@dataclass
class TrainOptions:
    spec: str
    out: Path
    data: Optional[Path] = None
    resolution: Optional[str] = None
    epochs: Optional[float] = None
    max_steps: Optional[int] = None
    batch_size: Optional[int] = None
    accum: int = 1
    device: str = "cpu"
    recipe: Optional[Path] = None
    resume: bool = False
    seed: int = 0


# --------------------------------------------------------------------------------------------
# run directory


def spec_document(spec: ModelSpec) -> str:
    import yaml

    return yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True, exclude={"base"}), sort_keys=False)


def prepare_run_dir(out: Path, resume: bool) -> None:
    if resume:
        if not (out / RUN_JSON).is_file():
            raise SpecError(f"{out}: no run to resume (no {RUN_JSON})", field="--out")
        return
    if (out / RUN_JSON).exists():
        raise SpecError(f"{out} already holds a run: pass --resume to continue it, or choose another --out",
                        field="--out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise SpecError(f"{out}: cannot write ({exc.strerror or exc})", field="--out") from None


def read_run(run: Path) -> dict[str, Any]:
    path = run / RUN_JSON
    if not path.is_file():
        raise SpecError(f"{run}: not a run directory (no {RUN_JSON})", field="RUN")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SpecError(f"{path}: unreadable ({exc})", field="RUN") from None


def train_resolution(flag: Optional[str], spec: ModelSpec) -> int:
    """--resolution for training: native, half, a pixel count, or by default the spec's own."""
    resolved = as_resolved(spec)
    return parse_resolution(flag, resolved) or resolved.resolution.train


# --------------------------------------------------------------------------------------------
# the shared loop


@dataclass
class Fit:
    """Everything `fit` needs; train and finetune fill it differently."""

    ctx: Context
    model: nn.Module  # the module to call (DDP-wrapped when distributed)
    raw: nn.Module  # the underlying model
    optimizer: torch.optim.Optimizer
    lr_at: Callable[[int], None]  # set the learning rate for a global step
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    dataset: Transformed
    sampler: GlobalBatches
    total_steps: int
    seed: int
    workers: int
    reporter: Reporter
    mix: Optional[Callable] = None  # (x, y) -> (x, soft targets)
    ema: Any = None
    autocast: Optional[torch.dtype] = None
    channels_last: bool = False
    step: int = 0
    save: Optional[Callable[[int], None]] = None  # checkpoint at a global step (every rank calls it)
    checkpoint_every: int = 500
    after_epoch: Optional[Callable[[int, int], None]] = None  # (epoch, step)


def _to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _autocast(device: torch.device, dtype: Optional[torch.dtype]) -> torch.autocast:
    """Mixed precision in `dtype`, or none when it is None."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def fit(f: Fit) -> None:
    steps_per_epoch = f.sampler.steps_per_epoch
    accum = f.sampler.accum
    while f.step < f.total_steps:
        epoch, first = divmod(f.step, steps_per_epoch)
        f.sampler.set_epoch(epoch, first)
        f.dataset.epoch = epoch
        loader = DataLoader(f.dataset, batch_sampler=f.sampler, num_workers=f.workers, collate_fn=collate,
                            pin_memory=f.ctx.device.type == "cuda",
                            generator=torch.Generator().manual_seed(f.seed))
        batches = iter(loader)
        for _ in range(first, steps_per_epoch):
            if f.step >= f.total_steps:
                break
            f.lr_at(f.step)
            losses, images, skipped = [], 0, 0
            for a in range(accum):
                x, y, bad = next(batches)
                images, skipped = images + len(y), skipped + bad
                x, y = _to_device(x, f.ctx.device, f.channels_last), y.to(f.ctx.device, non_blocking=True)
                if f.mix is not None:
                    seed_mixing(f.seed, f.step, a, f.ctx.rank)
                    x, target = f.mix(x, y)
                else:
                    target = y
                sync = contextlib.nullcontext() if a == accum - 1 or not f.ctx.distributed else f.model.no_sync()
                with sync, _autocast(f.ctx.device, f.autocast):
                    loss = f.loss(f.model(x), target)
                    (loss / accum).backward()
                losses.append(loss.detach().float())
            step_loss = mean_over_ranks(torch.stack(losses).mean(), f.ctx).item()
            if not math.isfinite(step_loss):
                raise Diverged(f"loss became {step_loss} at step {f.step + 1} (epoch {epoch})")
            f.optimizer.step()
            f.optimizer.zero_grad(set_to_none=True)
            f.step += 1
            if f.ema is not None:
                f.ema.update(f.raw, step=f.step)
            lr = f.optimizer.param_groups[0]["lr"]
            f.reporter.train_step(f.step, epoch, lr, step_loss, images * f.ctx.world, skipped)
            if f.save is not None and (f.step % f.checkpoint_every == 0 or f.step == f.total_steps):
                f.save(f.step)
        if f.step % steps_per_epoch == 0 and f.after_epoch is not None:
            f.after_epoch(f.step // steps_per_epoch - 1, f.step)


# --------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def evaluate(model: nn.Module, source: Any, resolution: int, batch: int, ctx: Context,
             channels_last: bool = False, autocast: Optional[torch.dtype] = None) -> tuple[float, float, int]:
    """Top-1 and top-5 over the whole split, with validation preprocessing at `resolution`."""
    data = Transformed(source, val_transform(resolution), seed=0)
    was_training = model.training
    model.eval()
    correct1 = correct5 = total = 0
    loader = DataLoader(data, batch_sampler=eval_batches(len(data), batch), collate_fn=collate,
                        num_workers=0)
    for x, y, _ in loader:
        x, y = _to_device(x, ctx.device, channels_last), y.to(ctx.device)
        with _autocast(ctx.device, autocast):
            logits = model(x).float()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += (top[:, 0] == y).sum().item()
        correct5 += (top == y[:, None]).any(dim=1).sum().item()
        total += len(y)
    model.train(was_training)
    return correct1 / total, correct5 / total, total


# --------------------------------------------------------------------------------------------
# train


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _check_finite(model: nn.Module, step: int) -> None:
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise Diverged(f"parameter {name} is no longer finite after step {step}")


def _options_from_run(stored: dict[str, Any], opts: TrainOptions) -> TrainOptions:
    """On --resume the run's own options hold, except a longer --epochs / --max-steps."""
    kept = TrainOptions(**{**stored["options"], "out": Path(stored["options"]["out"])})
    kept.data = Path(kept.data) if kept.data else None
    kept.recipe = None
    kept.resume = True
    kept.device = opts.device
    if opts.epochs is not None:
        kept.epochs = opts.epochs
    if opts.max_steps is not None:
        kept.max_steps = opts.max_steps
    return kept


def run_length(epochs: float, steps_per_epoch: int, max_steps: Optional[int]) -> int:
    """Optimizer steps in a run: whole or fractional epochs, cut short by --max-steps."""
    planned = math.ceil(epochs * steps_per_epoch)
    return min(planned, max_steps) if max_steps else planned


def step_schedule(optimizer: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int, lr: float) -> Any:
    """The paper's schedule, per step: linear warm-up from 1% of lr, then x decay_rate every
    decay_every_epochs (timm's StepLRScheduler; `.step_update(step)` sets the rate)."""
    from timm.scheduler import StepLRScheduler

    warmup = round(recipe.schedule.warmup_epochs * steps_per_epoch)
    return StepLRScheduler(optimizer, decay_t=max(1, round(recipe.schedule.decay_every_epochs * steps_per_epoch)),
                           decay_rate=recipe.schedule.decay_rate, warmup_t=warmup,
                           warmup_lr_init=lr * 0.01 if warmup else 0.0, t_in_epochs=False)


def make_optimizer(groups: list[dict[str, Any]], recipe: Recipe) -> torch.optim.Optimizer:
    """The recipe's optimizer over parameter groups: RMSProp with TF semantics (timm), or SGD."""
    lr = recipe.learning_rate()
    o = recipe.optimizer
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=o.momentum)
    from timm.optim import RMSpropTF

    return RMSpropTF(groups, lr=lr, alpha=recipe.rmsprop_decay(), eps=o.eps, momentum=o.momentum)


def weight_average(model: nn.Module, recipe: Recipe, steps_per_epoch: int) -> Any:
    """timm's EMA of the weights. The paper averages once per epoch with decay 0.97; per step that
    is 0.97^(1/steps_per_epoch), with timm's warm-up so that short runs average what they learnt."""
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=recipe.ema_decay_per_epoch ** (1 / steps_per_epoch), use_warmup=True)


def loss_and_mix(recipe: Recipe, classes: int, micro_batch: int) -> tuple[Callable, Optional[Callable]]:
    """The training loss and the Mixup/CutMix transform (timm), or plain label-smoothed cross-entropy."""
    a = recipe.augment
    if a.mixup_alpha == 0 and a.cutmix_alpha == 0:
        smoothing = recipe.label_smoothing
        return (lambda logits, y: F.cross_entropy(logits.float(), y, label_smoothing=smoothing)), None
    if micro_batch % 2:
        raise SpecError(f"Mixup/CutMix pair the images of a micro-batch, which has {micro_batch}: use an even "
                        "micro-batch, or set augment.mixup_alpha and augment.cutmix_alpha to 0 in the recipe",
                        field="--batch-size")
    from timm.data import Mixup
    from timm.loss import SoftTargetCrossEntropy

    soft = SoftTargetCrossEntropy()
    mix = Mixup(mixup_alpha=a.mixup_alpha, cutmix_alpha=a.cutmix_alpha, prob=a.mix_prob,
                label_smoothing=recipe.label_smoothing, num_classes=classes)
    return (lambda logits, y: soft(logits.float(), y)), mix


def seed_mixing(seed: int, step: int, micro: int = 0, rank: int = 0) -> None:
    """Mixup/CutMix draw from numpy's global generator: seed it from where we are in the run, so
    that a resumed run (and the pipeline's first and last stage) draw the same."""
    np.random.seed(np.random.SeedSequence([seed, step, micro, rank]).generate_state(1)[0])


def with_classes(spec: ModelSpec, classes: list[str]) -> tuple[ModelSpec, list[str]]:
    """The spec with a classifier for the dataset's classes, and a note when that changed it."""
    if len(classes) == spec.num_classes:
        return spec, []
    note = (f"the dataset has {len(classes)} classes: the classifier is built for {len(classes)}, not the spec's "
            f"{spec.num_classes}")
    return spec.model_copy(update={"num_classes": len(classes)}), [note]


def train(opts: TrainOptions) -> dict[str, Any]:
    with session(opts.device) as ctx:
        return _train(opts, ctx)


def recipe_for(opts: TrainOptions) -> Recipe:
    """The recipe file (or the paper's), with --epochs and --batch-size on top."""
    overrides: dict[str, Any] = {}
    if opts.epochs is not None:
        overrides["epochs"] = opts.epochs
    if opts.batch_size is not None:
        overrides["global_batch_size"] = opts.batch_size
    return load_recipe(opts.recipe, overrides)


def model_with_weights(spec: ModelSpec, path: Path, what: str, device: torch.device) -> nn.Module:
    """The spec's model holding a run's saved weights (a located error if they do not fit)."""
    from ..backends.torch.model import build_model

    state = checkpoint.load(path, what)
    model = build_model(spec).to(device)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise SpecError(f"{path}: weights do not fit the run's spec ({str(exc).splitlines()[0]})",
                        field="RUN") from None
    return model


def _train(opts: TrainOptions, ctx: Context) -> dict[str, Any]:
    from ..backends.torch.model import build_model
    from ..backends.torch.norms import parameter_groups

    out = Path(opts.out)
    if ctx.main:
        prepare_run_dir(out, opts.resume)
    barrier(ctx)
    stored = read_run(out) if opts.resume else None
    if stored is not None:
        if stored.get("backend", "torch") != "torch":
            raise SpecError(f"{out} was trained with --backend {stored['backend']}, whose runs cannot be resumed",
                            field="--resume")
        opts = _options_from_run(stored, opts)
        spec = load_spec(out / "spec.yaml")
        recipe = load_recipe(out / "recipe.yaml", {"epochs": opts.epochs} if opts.epochs is not None else None)
    else:
        spec = load_spec(opts.spec)
        recipe = recipe_for(opts)
    if opts.max_steps is not None and opts.max_steps < 1:
        raise SpecError(f"must be at least 1, got {opts.max_steps}", field="--max-steps")
    if opts.accum < 1:
        raise SpecError(f"must be at least 1, got {opts.accum}", field="--accum")
    resolution = train_resolution(opts.resolution, spec)
    train_set, val_set, classes = open_splits(opts.data, recipe.synthetic, opts.seed)
    spec, notes = with_classes(spec, classes)
    res = as_resolved(spec)
    notes += congruence_warnings(resolution, res.resolution.test, res.downsampling_layers)

    sampler = GlobalBatches(len(train_set), recipe.global_batch_size, opts.accum, ctx.world, ctx.rank, opts.seed)
    if sampler.steps_per_epoch == 0:
        raise SpecError(f"the training set has {len(train_set)} images, fewer than one global batch of "
                        f"{recipe.global_batch_size}", field="--batch-size")
    steps_per_epoch = sampler.steps_per_epoch
    total_steps = run_length(recipe.epochs, steps_per_epoch, opts.max_steps)
    loss_fn, mix = loss_and_mix(recipe, len(classes), sampler.micro)

    gpu = ctx.device.type == "cuda"
    torch.manual_seed(opts.seed)  # dropout and drop-path draw from the global generator
    model = build_model(spec, seed=opts.seed).to(ctx.device)
    channels_last = gpu and recipe.channels_last_on_gpu
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    autocast = torch.bfloat16 if gpu and recipe.bf16_on_gpu else None
    optimizer = make_optimizer(parameter_groups(model, recipe.optimizer.weight_decay), recipe)
    scheduler = step_schedule(optimizer, recipe, steps_per_epoch, recipe.learning_rate())
    ema = weight_average(model, recipe, steps_per_epoch)
    wrapped: nn.Module = model
    if ctx.distributed:
        wrapped = nn.parallel.DistributedDataParallel(model, device_ids=[ctx.local_rank] if gpu else None)

    step = 0
    if stored is not None:
        state = checkpoint.load(out / CHECKPOINT)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        ema.module.load_state_dict(state["ema"])
        _set_rng_state(state["rng"])
        step = int(state["step"])
    if ctx.main:
        if stored is None:
            write_text(out / "spec.yaml", spec_document(spec))
            write_text(out / "resolved.yaml", resolved_yaml(res))
        write_text(out / "recipe.yaml", recipe_yaml(recipe))  # on resume: with a new --epochs
    run_info = {
        "options": {**asdict(opts), "out": str(out), "data": str(opts.data) if opts.data else None,
                    "recipe": None, "resume": False},
        "resolution": resolution, "classes": list(classes), "world_size": ctx.world,
        "global_batch_size": recipe.global_batch_size, "micro_batch_size": sampler.micro, "accum": opts.accum,
        "steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "status": "running",
        "backend": "torch", "command": sys.argv, "torch": torch.__version__,
    }
    if ctx.main:
        write_text(out / RUN_JSON, json.dumps(run_info, indent=2))

    reporter = Reporter(out, "train", total_steps, step, ctx.main, recipe.log_every_steps)
    for note in notes:
        reporter.message(f"warning: {note}")
    if ctx.main and step:
        reporter.message(f"resuming {out} at step {step}/{total_steps}")

    def save(at: int) -> None:
        _check_finite(model, at)
        if ctx.main:
            checkpoint.save(out / CHECKPOINT, {
                "step": at, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "ema": ema.module.state_dict(), "rng": _rng_state(),
            })
            checkpoint.save(out / EMA_WEIGHTS, {"step": at, "model": ema.module.state_dict()})

    eval_batch = max(sampler.micro, 64)

    def after_epoch(epoch: int, at: int) -> None:
        if ctx.main and (epoch + 1) % recipe.eval_every_epochs == 0 and at < total_steps:
            top1, top5, _ = evaluate(ema.module, val_set, resolution, eval_batch, ctx, channels_last, autocast)
            reporter.evaluation(at, epoch, "ema", resolution, top1, top5)
        barrier(ctx)

    f = Fit(ctx=ctx, model=wrapped, raw=model, optimizer=optimizer, lr_at=scheduler.step_update, loss=loss_fn,
            dataset=Transformed(train_set, train_transform(resolution, tuple(recipe.augment.crop_scale),
                                                             recipe.augment.hflip), opts.seed),
            sampler=sampler, total_steps=total_steps, seed=opts.seed, workers=default_workers(recipe.num_workers),
            reporter=reporter, mix=mix, ema=ema, autocast=autocast, channels_last=channels_last,
            step=step, save=save, checkpoint_every=recipe.checkpoint_every_steps, after_epoch=after_epoch)
    with reporter:
        try:
            fit(f)
        except Diverged as exc:
            last = checkpoint_step(out)
            kept = f"the last good checkpoint ({out / CHECKPOINT}, step {last}) is intact" if last is not None \
                else "no checkpoint had been written yet"
            if ctx.main:
                write_text(out / RUN_JSON, json.dumps({**run_info, "status": "diverged", "error": str(exc)}, indent=2))
            raise Diverged(f"training stopped: {exc}; {kept}") from None
        summary = {"run": str(out), "steps": f.step, "resolution": resolution}
        if ctx.main:
            for weights, module in (("ema", ema.module), ("raw", model)):
                top1, top5, n = evaluate(module, val_set, resolution, eval_batch, ctx, channels_last, autocast)
                reporter.evaluation(f.step, f.step // steps_per_epoch, weights, resolution, top1, top5)
                summary[f"val_top1_{weights}"], summary[f"val_top5_{weights}"] = top1, top5
            summary["val_images"] = n
            summary["skipped_images"] = reporter.skipped
            if reporter.skipped:
                reporter.message(f"warning: {reporter.skipped} unreadable images were skipped (replaced by the next)")
            write_text(out / RUN_JSON, json.dumps({**run_info, "status": "finished", "summary": summary}, indent=2))
    barrier(ctx)
    return summary


def checkpoint_step(run: Path) -> Optional[int]:
    try:
        return int(checkpoint.load(run / CHECKPOINT)["step"])
    except SpecError:
        return None
