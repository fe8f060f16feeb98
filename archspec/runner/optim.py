"""The recipe made into torch objects: the optimizer, the learning-rate schedule, the weight
average, and the loss with Mixup/CutMix. Optimizer, schedule, Mixup/CutMix and the weight average
are timm's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SpecError
from .recipe import Recipe

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Mix = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def lr_schedule(optimizer: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int, lr: float, total: int) -> Any:
    """The recipe's schedule, per step of a run of `total` steps: a linear warm-up from 1% of lr,
    then the paper's x decay_rate every decay_every_epochs (timm's StepLRScheduler) or a cosine to
    0 at the last step (timm's CosineLRScheduler). `.step_update(step)` sets the rate."""
    from timm.scheduler import CosineLRScheduler, StepLRScheduler

    warmup = round(recipe.schedule.warmup_epochs * steps_per_epoch)
    start = lr * 0.01 if warmup else 0.0
    if recipe.schedule.shape == "cosine":
        warmup = min(warmup, total - 1)
        return CosineLRScheduler(
            optimizer,
            t_initial=max(1, total - warmup),
            lr_min=0.0,
            warmup_t=warmup,
            warmup_lr_init=start,
            warmup_prefix=True,
            t_in_epochs=False,
        )
    decay = max(1, round(recipe.schedule.decay_every_epochs * steps_per_epoch))
    return StepLRScheduler(
        optimizer,
        decay_t=decay,
        decay_rate=recipe.schedule.decay_rate,
        warmup_t=warmup,
        warmup_lr_init=start,
        t_in_epochs=False,
    )


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


def loss_and_mix(recipe: Recipe, classes: int, micro_batch: int) -> tuple[Loss, Optional[Mix]]:
    """The training loss and the Mixup/CutMix transform (timm), or plain label-smoothed cross-entropy."""
    a = recipe.augment
    if a.mixup_alpha == 0 and a.cutmix_alpha == 0:
        return smoothed_cross_entropy(recipe.label_smoothing), None
    if micro_batch % 2:
        raise SpecError(
            f"Mixup/CutMix pair the images of a micro-batch, which has {micro_batch}: use an even "
            "micro-batch, or set augment.mixup_alpha and augment.cutmix_alpha to 0 in the recipe",
            parameter="batch_size",
        )
    from timm.data import Mixup
    from timm.loss import SoftTargetCrossEntropy

    soft = SoftTargetCrossEntropy()
    mix = Mixup(
        mixup_alpha=a.mixup_alpha,
        cutmix_alpha=a.cutmix_alpha,
        prob=a.mix_prob,
        label_smoothing=recipe.label_smoothing,
        num_classes=classes,
    )
    return (lambda logits, y: soft(logits.float(), y)), mix


def smoothed_cross_entropy(smoothing: float) -> Loss:
    return lambda logits, y: F.cross_entropy(logits.float(), y, label_smoothing=smoothing)


def seed_mixing(seed: int, step: int, micro: int = 0, rank: int = 0) -> None:
    """Mixup/CutMix draw from numpy's global generator: seed it from where we are in the run, so
    that a resumed run (and the pipeline's first and last stage) draw the same."""
    np.random.seed(np.random.SeedSequence([seed, step, micro, rank]).generate_state(1)[0])
