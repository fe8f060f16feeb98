"""Appendix C as an experiment: in a deep random network of 1x1 convs, LN + proxy-normalized
activations keep every channel's pre-activations normalized; LN alone lets them drift."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from archspec.backends.torch.norms import norm_act

WIDTH, DEPTH, SAMPLES = 256, 24, 4096


def _curves(proxy: bool, activation: str, seed: int = 0) -> tuple[list[float], list[float]]:
    """Per depth: RMS over channels of the per-channel mean of Y, and of (per-channel std of Y - 1),
    where Y is the LN-normalized pre-activation (the paper's Y^l)."""
    gen = torch.Generator().manual_seed(seed)
    probe = norm_act(WIDTH, "ln").double()  # the project's LN with gamma = 1, beta = 0: Y itself
    z = torch.randn(SAMPLES, WIDTH, 1, 1, generator=gen, dtype=torch.float64)
    mean_rms, std_rms = [], []
    with torch.no_grad():
        for _ in range(DEPTH):
            conv = nn.Conv2d(WIDTH, WIDTH, 1, bias=False).double()
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen, dtype=torch.float64) / math.sqrt(WIDTH))
            layer = norm_act(WIDTH, "ln", activation=activation, proxy=proxy).double()
            layer.weight.copy_(1 + 0.5 * torch.randn(WIDTH, generator=gen, dtype=torch.float64))
            layer.bias.copy_(0.5 * torch.randn(WIDTH, generator=gen, dtype=torch.float64))
            x = conv(z)
            y = probe(x)[:, :, 0, 0]
            mean_rms.append(y.mean(0).pow(2).mean().sqrt().item())
            std_rms.append((y.std(0) - 1).pow(2).mean().sqrt().item())
            z = layer(x)
    return mean_rms, std_rms


@pytest.mark.parametrize("activation", ["silu", "relu"])
def test_ln_pn_keeps_channels_normalized_at_every_depth(activation):
    pn_mean, pn_std = _curves(proxy=True, activation=activation)
    ln_mean, ln_std = _curves(proxy=False, activation=activation)
    print(f"\nAppendix C, {activation}, width {WIDTH}, {SAMPLES} samples: RMS_c mean(Y_c) | RMS_c (std(Y_c) - 1)")
    print("depth   LN+PN mean  LN+PN std   LN mean   LN std")
    for d, row in enumerate(zip(pn_mean, pn_std, ln_mean, ln_std), 1):
        print(f"{d:5d}   " + "   ".join(f"{v:9.3f}" for v in row))
    assert max(pn_mean) <= 0.15 and max(pn_std) <= 0.15
    assert max(ln_mean) > 0.5 and max(ln_std) > 0.5
