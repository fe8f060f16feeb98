"""Normalization + activation layers: BN, GN, LN, and proxy-normalized activations (GN+PN, LN+PN).

One layer, `NormAct`, serves every normalization an IR `norm` node can ask for (the model
builder's `leaf_spec` reads its arguments off the node), so blocks never know which they use.
As in timm's BatchNormAct2d, the activation lives inside the norm layer (child `act`), which lets
proxy normalization reach the affine gamma, beta it needs.

Proxy normalization (paper eq. 4; Labatie et al., 2021): after y = gamma * x_hat + beta and
z = phi(y), PN returns (z - E[phi(gamma Y~ + beta)]) / sqrt(Var[phi(gamma Y~ + beta)] + eps~)
with the proxy Y~ ~ N(beta~, (1 + gamma~)^2) per channel. The proxy moments are per-channel
numbers computed exactly and differentiably (closed form for ReLU, split Gauss-Legendre
quadrature otherwise), so the per-element work is the single multiply-add `phi(y) * scale + shift`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# Proxy moments of smooth activations (SiLU, GELU) use Gauss-Legendre quadrature over the
# standardized proxy z in [-Z_MAX, Z_MAX] (tail mass beyond 9 sigma: 2e-19), split into two panels
# at the point where U = gamma * Y~ + beta crosses 0, which is where these activations bend. The
# rule's nodes cluster at panel ends, so the bend is resolved however wide the proxy is; plain
# Gauss-Hermite loses accuracy once the proxy's std passes ~2. 32 nodes a panel hold the moments
# to 1e-7 relative against adaptive quadrature over the test grid (tests/test_norms.py).
PANEL_NODES = 32
Z_MAX = 9.0


def make_activation(name: str) -> nn.Module:
    return {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU}[name]()


def _normal_pdf(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x / math.sqrt(2))


def relu_gaussian_moments(mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """E and Var of relu(U), U ~ N(mean, std^2), in closed form (std > 0)."""
    a = mean / std
    cdf, pdf = _normal_cdf(a), _normal_pdf(a)
    first = mean * cdf + std * pdf
    second = (mean * mean + std * std) * cdf + mean * std * pdf
    return first, (second - first * first).clamp_min(0)


def gauss_legendre(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights of the n-point Gauss-Legendre rule on [-1, 1], in float64 (Golub-Welsch:
    the nodes are the eigenvalues of the Jacobi matrix of the Legendre recurrence)."""
    k = torch.arange(1, n, dtype=torch.float64)
    off_diagonal = k / torch.sqrt(4 * k * k - 1)
    nodes, vectors = torch.linalg.eigh(torch.diag(off_diagonal, 1) + torch.diag(off_diagonal, -1))
    return nodes, 2 * vectors[0] ** 2


class ProxyMoments(nn.Module):
    """E and Var of phi(gamma * Y~ + beta), Y~ ~ N(beta~, (1 + gamma~)^2), per channel."""

    unit_nodes: torch.Tensor
    unit_weights: torch.Tensor

    def __init__(self, activation: str, panel_nodes: int = PANEL_NODES) -> None:
        super().__init__()
        self.activation = activation
        self.phi = make_activation(activation)
        t, w = gauss_legendre(panel_nodes)
        # the rule mapped to [0, 1]: a panel [a, b] has nodes a + (b - a) u and weights (b - a) v
        dtype = torch.get_default_dtype()
        self.register_buffer("unit_nodes", ((t + 1) / 2).to(dtype), persistent=False)
        self.register_buffer("unit_weights", (w / 2).to(dtype), persistent=False)

    def forward(
        self, gamma: torch.Tensor, beta: torch.Tensor, proxy_beta: torch.Tensor, proxy_gamma: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mean = gamma * proxy_beta + beta  # of U = gamma * Y~ + beta
        std = (gamma * (1 + proxy_gamma)).abs().clamp_min(1e-12)
        if self.activation == "relu":
            return relu_gaussian_moments(mean, std)
        bend = (-mean / std).clamp(-Z_MAX, Z_MAX)[:, None]
        start = torch.cat([torch.full_like(bend, -Z_MAX), bend], 1)[:, :, None]  # (C, 2 panels, 1)
        width = torch.cat([bend + Z_MAX, Z_MAX - bend], 1)[:, :, None]
        u, v = self.unit_nodes.to(mean.dtype), self.unit_weights.to(mean.dtype)
        z = (start + width * u).flatten(1)  # (C, 2 x nodes)
        w = (width * v).flatten(1) * _normal_pdf(z)
        values = self.phi(mean[:, None] + std[:, None] * z)
        first = (values * w).sum(1)
        centred = values - first[:, None]
        return first, (centred * centred * w).sum(1)  # two-pass variance: no cancellation


class NormAct(nn.Module):
    """Normalization with per-channel affine, then optionally an activation and proxy normalization.

    kind: "bn" (batch statistics, running averages), "gn" (num_groups groups per sample) or
    "ln" (one group: per sample over C, H, W, paper eq. 3).
    """

    running_mean: torch.Tensor
    running_var: torch.Tensor
    num_batches_tracked: torch.Tensor
    act: nn.Module | None

    def __init__(
        self,
        channels: int,
        kind: str,
        *,
        num_groups: int = 1,
        eps: float = 1e-3,
        momentum: float = 0.01,
        activation: str | None = None,
        proxy: bool = False,
        pn_eps: float = 3e-2,
    ) -> None:
        super().__init__()
        if proxy and activation is None:
            raise ValueError("proxy normalization needs an activation")
        if kind not in ("bn", "gn", "ln"):
            raise ValueError(f"unknown normalization {kind!r}")
        self.kind = kind
        self.channels = channels
        self.num_groups = 1 if kind == "ln" else num_groups
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        if kind == "bn":
            self.register_buffer("running_mean", torch.zeros(channels))
            self.register_buffer("running_var", torch.ones(channels))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        self.act = make_activation(activation) if activation else None
        self.proxy = proxy
        self.pn_eps = pn_eps
        if proxy and activation:
            self.pn_beta = nn.Parameter(torch.zeros(channels))
            self.pn_gamma = nn.Parameter(torch.zeros(channels))
            self.moments = ProxyMoments(activation)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "bn":
            if self.training:
                self.num_batches_tracked.add_(1)
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, self.training, self.momentum, self.eps
            )
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def proxy_scale_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel (scale, shift) with PN(z) = z * scale + shift."""
        params = (self.weight, self.bias, self.pn_beta, self.pn_gamma)
        # at least float32: under fp16/bf16 the per-channel moments are computed in full precision
        dtype = torch.promote_types(self.weight.dtype, torch.float32)
        mean, var = self.moments(*(p.to(dtype) for p in params))
        scale = torch.rsqrt(var + self.pn_eps)
        return scale, -mean * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        if self.act is None:
            return x
        x = self.act(x)
        if self.proxy:
            scale, shift = self.proxy_scale_shift()
            x = x * scale.to(x.dtype)[:, None, None] + shift.to(x.dtype)[:, None, None]
        return x

    def extra_repr(self) -> str:
        groups = f", groups={self.num_groups}" if self.kind == "gn" else ""
        return f"{self.channels}, {self.kind}{'+pn' if self.proxy else ''}{groups}, eps={self.eps}"


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Optimizer groups: decay on conv/linear weights and PN's beta~, gamma~; none on norm
    gamma, beta and biases (paper section 3.2: the PN parameters carry the prior that Y is
    close to normalized)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            is_weight = isinstance(module, (nn.Conv2d, nn.Linear)) and name == "weight"
            is_proxy = isinstance(module, NormAct) and name in ("pn_beta", "pn_gamma")
            (decay if is_weight or is_proxy else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
