"""Zero-cost proxies: scores of an untrained network from one minibatch, to rank candidates
before (or instead of) training them. As defined by Abdelfattah et al. ("Zero-Cost Proxies for
Lightweight NAS", ICLR 2021) and Mellor et al. ("Neural Architecture Search without Training",
ICML 2021):

    grad_norm  the sum over conv and linear weights of the L2 norm of their cross-entropy gradient
    synflow    ln of sum |theta * dR/dtheta| over conv and linear weights, where R is the sum of the
               outputs of the network with |theta| for weights (fp64, eval mode) on an all-ones
               input: data-free, a measure of how much signal the layers pass. The log keeps it in
               range (the raw value is a product over depth) and does not change the ranking.
    naswot     ln |det K| where K[i, j] counts the activation units on which images i and j of the
               minibatch agree in sign (the units' linear region): how differently the untrained
               network sees different images.

Each is computed on a fresh copy of the model, so no score sees another's changes. The network is
initialized from `seed`, so a score is a function of the architecture and the seed alone."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SpecError
from .data import Transformed, collate, open_splits, val_transform

ACTIVATIONS = (nn.SiLU, nn.ReLU, nn.GELU)


def _weights(model: nn.Module) -> Iterator[torch.Tensor]:
    """The conv and linear weights, the layers both papers score."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            yield m.weight


def grad_norm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model = copy.deepcopy(model).train()
    F.cross_entropy(model(images), labels).backward()
    return float(sum(w.grad.norm() for w in _weights(model) if w.grad is not None))


def synflow(model: nn.Module, images: torch.Tensor) -> float:
    model = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    model(torch.ones_like(images[:1], dtype=torch.float64)).sum().backward()
    total = sum(float((w.detach() * w.grad).sum()) for w in _weights(model) if w.grad is not None)
    return math.log(total) if total > 0 else -math.inf


@torch.no_grad()
def naswot(model: nn.Module, images: torch.Tensor) -> float:
    model = copy.deepcopy(model).train()
    n = len(images)
    agree = torch.zeros(n, n, dtype=torch.float64)

    def record(_: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        # before the (in-place) activation runs: its input's sign is the unit's linear region
        code = (inputs[0] > 0).reshape(n, -1).double()
        nonlocal agree
        agree += code @ code.T + (1 - code) @ (1 - code).T

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, ACTIVATIONS)]
    try:
        model(images)
    finally:
        for h in hooks:
            h.remove()
    return float(torch.linalg.slogdet(agree).logabsdet)


Batch = tuple[torch.Tensor, torch.Tensor]


def minibatch(dataset: Any, synthetic: Any, resolution: int, batch: int, seed: int) -> Batch:
    """The first `batch` training images of the proxy's dataset (a directory or the synthetic set),
    preprocessed as for validation (deterministic) at `resolution`."""
    train, _, _ = open_splits(dataset, synthetic, seed)
    data = Transformed(train, val_transform(resolution), seed)
    if len(data) < 2:
        raise SpecError("zero-cost metrics need at least two training images", parameter="data")
    images, labels, _ = collate(data.__getitems__(list(range(min(batch, len(data))))))
    return images, labels


SCORES: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], float]] = {
    "grad_norm": grad_norm,
    "synflow": lambda model, images, _: synflow(model, images),
    "naswot": lambda model, images, _: naswot(model, images),
}


def zero_cost_scores(model: nn.Module, batch: Batch, wanted: list[str]) -> dict[str, float]:
    """The zero-cost metrics `wanted` (search metrics of kind zero_cost, each a key of SCORES) of
    an untrained `model`."""
    images, labels = batch
    return {name: SCORES[name](model, images, labels) for name in wanted}
