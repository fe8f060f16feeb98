"""The torch half of the `rms` norm: its layer class, registered with archspec's torch backend."""

import torch
from torch import nn

from archspec.backends.torch.norms import make_activation, register_module


@register_module
class RMSNormAct(nn.Module):
    """x / sqrt(mean_chw(x^2) + eps) per sample, times gamma plus beta, then an activation."""

    def __init__(self, num_channels: int, eps: float = 1e-3, activation: str | None = None) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.act = make_activation(activation, inplace=True) if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * torch.rsqrt(x.square().mean(dim=(1, 2, 3), keepdim=True) + self.eps)
        return self.act(x * self.weight[:, None, None] + self.bias[:, None, None])
