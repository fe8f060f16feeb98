"""Normalization + activation layers: BN, GN, LN, FRN + TLU, and proxy-normalized activations
(GN+PN, LN+PN): the torch half of the norm registry (archspec.norms).

BatchNormAct2d (a BatchNorm2d), GroupNormAct (a GroupNorm: GN, or LN with one group),
FilterResponseNormTlu2d and ProxyNormAct serve every normalization an IR `norm` node can ask for
(each kind names its class; `MODULES` maps the name to the class, and a plug-in adds its own with
`register_module`), so blocks never know which they use. As in timm's BatchNormAct2d,
the activation lives inside the norm layer (child `act`), which lets proxy normalization reach the
affine gamma, beta it needs. They subclass torch's own norms so that tools which look for those
find them; convert_sync_batchnorm and fast.fold_batchnorm know about the activation inside.

Proxy normalization (paper eq. 4; Labatie et al., 2021): after y = gamma * x_hat + beta and
z = phi(y), PN returns (z - E[phi(gamma Y~ + beta)]) / sqrt(Var[phi(gamma Y~ + beta)] + eps~)
with the proxy Y~ ~ N(beta~, (1 + gamma~)^2) per channel. The proxy moments are per-channel
numbers computed exactly and differentiably (closed form for ReLU, split Gauss-Legendre
quadrature otherwise), so the per-element work is the single multiply-add `phi(y) * scale + shift`.
"""

# No `from __future__ import annotations` here: torch.jit.script reads the class-level annotations
# of buffers (ProxyMoments') as types, and cannot resolve the string 'torch.Tensor'.
import math
from importlib import import_module
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from archspec import norms

from .leaves import norm_leaf

# Proxy moments of smooth activations (SiLU, GELU) use Gauss-Legendre quadrature over the
# standardized proxy z in [-Z_MAX, Z_MAX] (tail mass beyond 9 sigma: 2e-19), split into two panels
# at the point where U = gamma * Y~ + beta crosses 0, which is where these activations bend. The
# rule's nodes cluster at panel ends, so the bend is resolved however wide the proxy is; plain
# Gauss-Hermite loses accuracy once the proxy's std passes ~2. 32 nodes a panel hold the moments
# to 1e-7 relative against adaptive quadrature over the test grid (tests/test_norms.py).
PANEL_NODES = 32
Z_MAX = 9.0


def make_activation(name: str, inplace: bool = False) -> nn.Module:
    """The activation `name`; `inplace` where it runs on a tensor nobody else reads (a norm's fresh
    output): no second activation-sized allocation per layer. On a CPU a large allocation is a
    fresh mmap whose pages fault in as they are written, which made the out-of-place activation
    cost twice the in-place one (timm's norm+act layers run in place; issue 21)."""
    if name == "gelu":  # nn.GELU has no in-place form
        return nn.GELU()
    return {"silu": nn.SiLU, "relu": nn.ReLU}[name](inplace=inplace)


def _normal_pdf(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _normal_cdf(x: torch.Tensor) -> torch.Tensor:
    # erf, not erfc: the legacy ONNX exporter has no erfc
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


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
        self.z_max = Z_MAX  # an attribute, not a global: TorchScript reads no global floats
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
        z_max = self.z_max
        bend = (-mean / std).clamp(-z_max, z_max)[:, None]
        start = torch.cat([torch.full_like(bend, -z_max), bend], 1)[:, :, None]  # (C, 2 panels, 1)
        width = torch.cat([bend + z_max, z_max - bend], 1)[:, :, None]
        u, v = self.unit_nodes.to(mean.dtype), self.unit_weights.to(mean.dtype)
        z = (start + width * u).flatten(1)  # (C, 2 x nodes)
        w = (width * v).flatten(1) * _normal_pdf(z)
        values = self.phi(mean[:, None] + std[:, None] * z)
        first = (values * w).sum(1)
        centred = values - first[:, None]
        return first, (centred * centred * w).sum(1)  # two-pass variance: no cancellation


class BatchNormAct2d(nn.BatchNorm2d):
    """BatchNorm2d, then an activation (timm's BatchNormAct2d is the model): a BatchNorm2d to every
    tool that looks for one (conv-BN folding, sync-BN conversion; see convert_sync_batchnorm)."""

    def __init__(
        self, num_features: int, eps: float = 1e-3, momentum: float = 0.01, activation: str | None = None
    ) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.act = make_activation(activation, inplace=True) if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # BatchNorm2d.forward, written out: TorchScript cannot call super()
        if self.training and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        momentum = 0.0 if self.momentum is None else self.momentum
        x = F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, self.training, momentum, self.eps
        )
        return self.act(x)


class GroupNormAct(nn.GroupNorm):
    """GroupNorm (GN), or with one group LayerNorm over (C, H, W) with a per-channel affine (LN,
    paper eq. 3), then an activation."""

    def __init__(self, num_channels: int, num_groups: int, eps: float = 1e-3, activation: str | None = None) -> None:
        super().__init__(num_groups, num_channels, eps=eps)
        self.act = make_activation(activation, inplace=True) if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps))


class ProxyNormAct(GroupNormAct):
    """GN or LN, an activation, then proxy normalization of the activation (GN+PN, LN+PN)."""

    def __init__(
        self, num_channels: int, num_groups: int, eps: float = 1e-3, activation: str = "silu", pn_eps: float = 3e-2
    ) -> None:
        super().__init__(num_channels, num_groups, eps, activation)
        self.pn_eps = pn_eps
        self.pn_beta = nn.Parameter(torch.zeros(num_channels))
        self.pn_gamma = nn.Parameter(torch.zeros(num_channels))
        self.moments = ProxyMoments(activation)

    def proxy_scale_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel (scale, shift) with PN(z) = z * scale + shift."""
        # at least float32: under fp16/bf16 the per-channel moments are computed in full precision
        dtype = torch.promote_types(self.weight.dtype, torch.float32)
        mean, var = self.moments(
            self.weight.to(dtype), self.bias.to(dtype), self.pn_beta.to(dtype), self.pn_gamma.to(dtype)
        )
        scale = torch.rsqrt(var + self.pn_eps)
        return scale, -mean * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps))
        scale, shift = self.proxy_scale_shift()
        # one fused multiply-add: one output allocation rather than two
        return torch.addcmul(shift.to(x.dtype)[:, None, None], x, scale.to(x.dtype)[:, None, None])


class FilterResponseNormTlu2d(nn.Module):
    """Filter Response Normalization, then a Thresholded Linear Unit (Singh & Krishnan, 2020), as
    timm's FilterResponseNormTlu2d (same parameter names): x / sqrt(mean_hw(x^2) + eps) per sample
    and channel, times gamma plus beta, then max(., tau) where the layer is activated."""

    def __init__(self, num_channels: int, eps: float = 1e-3, tlu: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.tau = nn.Parameter(torch.zeros(num_channels)) if tlu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the mean square in at least float32, as timm's inv_instance_rms
        nu2 = x.float().square().mean(dim=(2, 3), keepdim=True)
        x = x * torch.rsqrt(nu2 + self.eps).to(x.dtype)
        x = x * self.weight.to(x.dtype)[:, None, None] + self.bias.to(x.dtype)[:, None, None]
        tau = self.tau
        return x if tau is None else torch.maximum(x, tau.to(x.dtype)[:, None, None])


# The layer classes the norm kinds name, by name; a plug-in's torch half adds its own here.
MODULES: dict[str, type[nn.Module]] = {
    cls.__name__: cls for cls in (BatchNormAct2d, GroupNormAct, ProxyNormAct, FilterResponseNormTlu2d)
}


def register_module(cls: type[nn.Module]) -> type[nn.Module]:
    """Register a norm layer class under its name (what a NormKind's `module` names)."""
    MODULES[cls.__name__] = cls
    return cls


def layer_class(name: str) -> type[nn.Module]:
    """The norm layer class `name`: a plug-in's torch half registers its class when its module
    (the kind's `source`) is first imported, here."""
    for kind in norms.registry().values():
        if kind.module == name and name not in MODULES:
            import_module(kind.source)
    return MODULES[name]


def norm_act(
    channels: int,
    kind: str,
    *,
    num_groups: int = 4,
    eps: float = 1e-3,
    momentum: float = 0.01,
    activation: str | None = None,
    proxy: bool = False,
    pn_eps: float = 3e-2,
) -> nn.Module:
    """The norm + activation layer of the registered norm `kind` (GN's statistics groups:
    `num_groups`), with proxy normalization when `proxy`."""
    declared = norms.kind(kind)
    layer = norms.NormLayer(channels, declared.groups(num_groups, channels), eps, momentum, pn_eps, activation)
    leaf = norm_leaf(declared, layer, proxy)
    return layer_class(leaf.source_name)(*leaf.args, **leaf.kwargs)


class SyncBatchNormAct(BatchNormAct2d):
    """BatchNormAct2d whose statistics, in training across several processes, are those of the
    whole batch: the per-channel sums are all-reduced, differentiably, so the gradients are the
    whole batch's too. (torch's nn.SyncBatchNorm has no CPU kernel, and DDP refuses it on CPUs.)"""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        return self.act(self._synced(x))

    def _synced(self, x: torch.Tensor) -> torch.Tensor:
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        local = torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), x.new_full((1,), x.numel() / c)])
        total = all_reduce(local)
        n = total[-1]
        mean = total[:c] / n
        var = (total[c : 2 * c] / n - mean * mean).clamp_min(0)
        running_mean, running_var, tracked = self.running_mean, self.running_var, self.num_batches_tracked
        assert running_mean is not None and running_var is not None and tracked is not None  # tracked by archspec's BN
        with torch.no_grad():  # BatchNorm2d's running averages, with the unbiased variance
            m = self.momentum or 0.0
            running_mean.mul_(1 - m).add_(m * mean.detach())
            running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1))
            tracked.add_(1)
        scale = self.weight * torch.rsqrt(var + self.eps)
        return x * scale[None, :, None, None] + (self.bias - mean * scale)[None, :, None, None]


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNormAct2d as a SyncBatchNormAct, weights and running statistics kept. (torch's
    own nn.SyncBatchNorm.convert_sync_batchnorm would drop the activation inside the layer, as it
    does for timm's BatchNormAct2d, and makes layers DDP refuses on CPUs.)"""
    if isinstance(module, BatchNormAct2d) and not isinstance(module, SyncBatchNormAct):
        synced = SyncBatchNormAct(module.num_features, module.eps, module.momentum or 0.0)
        synced.act = module.act
        synced.load_state_dict(module.state_dict())
        return synced.to(module.weight.device).train(module.training)
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child))
    return module


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
            is_proxy = isinstance(module, ProxyNormAct) and name in ("pn_beta", "pn_gamma")
            (decay if is_weight or is_proxy else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
