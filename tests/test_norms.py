"""Batch-independent normalization: proxy-normalized activations (paper eq. 4), GN, LN, and the
batch independence they buy."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate, stats

import archspec
from archspec.backends.torch.norms import ProxyMoments, norm_act, parameter_groups
from conftest import ROOT, SPECS

# gamma, beta (the norm's affine), proxy beta~, proxy gamma~
GRID = list(itertools.product([-2.0, -0.7, 0.5, 1.0, 2.5], [-1.5, 0.0, 1.0], [-0.8, 0.0, 0.5], [-0.4, 0.0, 0.7]))
PHI = {
    "silu": lambda x: x / (1 + math.exp(-x)) if x > -700 else 0.0,
    "gelu": lambda x: 0.5 * x * math.erfc(-x / math.sqrt(2)),
    "relu": lambda x: max(x, 0.0),
}


def _layer_moments(activation: str, params) -> tuple[np.ndarray, np.ndarray]:
    columns = [torch.tensor(c, dtype=torch.float64) for c in zip(*params)]
    mean, var = ProxyMoments(activation)(*columns)
    return mean.numpy(), var.numpy()


def _proxy(gamma, beta, proxy_beta, proxy_gamma) -> tuple[float, float]:
    """Mean and std of U = gamma * Y~ + beta with Y~ ~ N(beta~, (1 + gamma~)^2)."""
    return gamma * proxy_beta + beta, abs(gamma * (1 + proxy_gamma))


def _quad_moments(phi, m: float, s: float) -> tuple[float, float]:
    """High-precision adaptive quadrature in float64, split where the integrand bends."""

    def pdf(y: float) -> float:  # N(m, s^2); a frozen scipy.stats distribution is ~80x slower per call
        return math.exp(-0.5 * ((y - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))

    cuts = sorted({m - 14 * s, m + 14 * s, min(max(0.0, m - 14 * s), m + 14 * s), m})
    opts = dict(epsabs=0, epsrel=1e-13, limit=400)

    def integral(f):
        return sum(integrate.quad(lambda y: f(y) * pdf(y), a, b, **opts)[0] for a, b in itertools.pairwise(cuts))

    first = integral(phi)
    return first, integral(lambda y: (phi(y) - first) ** 2)


def test_relu_moments_match_the_closed_form():
    mean, var = _layer_moments("relu", GRID)
    for i, p in enumerate(GRID):
        m, s = _proxy(*p)
        a = m / s  # E[relu(U)] = m Phi(a) + s phi(a);  E[relu(U)^2] = (m^2 + s^2) Phi(a) + m s phi(a)
        first = m * stats.norm.cdf(a) + s * stats.norm.pdf(a)
        second = (m * m + s * s) * stats.norm.cdf(a) + m * s * stats.norm.pdf(a)
        assert mean[i] == pytest.approx(first, rel=1e-5), p
        assert var[i] == pytest.approx(second - first * first, rel=1e-5), p


@pytest.mark.parametrize("activation", ["silu", "gelu"])
def test_smooth_activation_moments_match_adaptive_quadrature(activation):
    mean, var = _layer_moments(activation, GRID)
    for i, p in enumerate(GRID):
        first, variance = _quad_moments(PHI[activation], *_proxy(*p))
        # E is held relative to the spread of phi(U): E crosses zero (SiLU: exactly at m = -1/2, s = 1)
        assert abs(mean[i] - first) <= 1e-5 * max(abs(first), math.sqrt(variance)), (p, mean[i], first)
        assert var[i] == pytest.approx(variance, rel=1e-5), p


@pytest.mark.parametrize("activation", ["silu", "relu", "gelu"])
def test_moments_agree_with_monte_carlo_within_4_standard_errors(activation):
    rng = np.random.default_rng(0)
    n = 10**6
    phi = {
        "silu": lambda u: u / (1 + np.exp(-u)),
        "relu": lambda u: np.maximum(u, 0),
        "gelu": lambda u: 0.5 * u * (1 + np.vectorize(math.erf)(u / math.sqrt(2))),
    }[activation]
    params = [(1.3, -0.4, 0.2, -0.3), (-0.8, 0.5, -0.6, 0.4), (2.0, 1.0, 0.0, 0.0)]
    mean, var = _layer_moments(activation, params)
    for i, (gamma, beta, proxy_beta, proxy_gamma) in enumerate(params):
        y = rng.normal(proxy_beta, 1 + proxy_gamma, size=n)
        z = phi(gamma * y + beta)
        se_mean = z.std() / math.sqrt(n)
        centred = z - z.mean()
        se_var = math.sqrt(((centred**2 - centred.var()) ** 2).mean() / n)
        assert abs(mean[i] - z.mean()) < 4 * se_mean
        assert abs(var[i] - z.var()) < 4 * se_var


@pytest.mark.parametrize("activation", ["silu", "relu"])
def test_moments_are_differentiable(activation):
    moments = ProxyMoments(activation)
    inputs = tuple(
        torch.tensor(v, dtype=torch.float64, requires_grad=True)
        for v in ([1.2, -0.7, 0.4], [0.3, -0.2, 1.1], [0.1, -0.4, 0.0], [0.2, -0.1, 0.3])
    )
    assert torch.autograd.gradcheck(lambda *a: moments(*a), inputs)


@pytest.mark.parametrize("kind", ["gn", "ln"])
def test_proxy_normalized_activation_is_eq_4(kind):
    torch.manual_seed(0)
    layer = norm_act(16, kind, num_groups=4, activation="silu", proxy=True, pn_eps=3e-2).double()
    with torch.no_grad():
        for p in (layer.weight, layer.bias, layer.pn_beta, layer.pn_gamma):
            p.normal_(0, 0.5)
    x = torch.randn(3, 16, 5, 5, dtype=torch.float64)
    groups = 1 if kind == "ln" else 4
    y = F.group_norm(x, groups, eps=1e-3)  # eq. (3) for LN; GN per group
    u = layer.weight[:, None, None] * y + layer.bias[:, None, None]
    mean, var = ProxyMoments("silu")(layer.weight, layer.bias, layer.pn_beta, layer.pn_gamma)
    expected = (F.silu(u) - mean[:, None, None]) / torch.sqrt(var[:, None, None] + 3e-2)
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)


def test_norm_without_activation_is_plain():
    with pytest.raises(ValueError):
        norm_act(8, "ln", proxy=True)
    g = archspec.build_graph(
        archspec.resolve(archspec.load_spec({"base": "efficientnet-b0", "norm": {"type": "ln+pn"}}))
    )
    project_norms = [d for n, d in g.nodes(data=True) if d["op"] == "norm" and d["activation"] is None]
    assert project_norms and not any(d["proxy"] for d in project_norms)


def _model(norm: str, seed: int = 0):
    """The tiny G16 spec with the given norm, in float64 and train mode, without dropout."""
    spec = {"base": str(SPECS / "tiny.yaml"), "norm": {"type": norm}, "head": {"dropout": 0.0}, "drop_path": 0.0}
    return archspec.build_model(spec, seed=seed).train().double()


def _logits_in_one_batch_and_split(norm: str, size: int):
    """Train-mode logits of 8 samples in one batch, and in batches of `size`."""
    model = _model(norm)
    x = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        return model(x), torch.cat([model(x[i : i + size]) for i in range(0, 8, size)])


@pytest.mark.parametrize("norm", ["gn", "ln", "frn", "gn+pn", "ln+pn"])
def test_batch_independence_in_train_mode(norm):
    together, alone = _logits_in_one_batch_and_split(norm, 1)
    torch.testing.assert_close(alone, together, rtol=0, atol=1e-5)


def test_batchnorm_is_batch_dependent_in_train_mode():
    # the contrast: with BN a sample's logits depend on which samples share its batch
    together, in_pairs = _logits_in_one_batch_and_split("bn", 2)
    assert (in_pairs - together).abs().max() > 1e-2


def _full_and_accumulated(norm: str):
    """Two copies of one model after a backward pass: over 32 samples at once, and over 4 x 8."""
    x = torch.randn(32, 3, 64, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = torch.randint(0, 10, (32,), generator=torch.Generator().manual_seed(3))
    full, accumulated = _model(norm), _model(norm)
    F.cross_entropy(full(x), y).backward()
    for i in range(4):
        (F.cross_entropy(accumulated(x[8 * i : 8 * i + 8]), y[8 * i : 8 * i + 8]) / 4).backward()
    return full, accumulated


@pytest.mark.parametrize("norm", ["gn", "ln", "frn", "gn+pn", "ln+pn"])
def test_gradient_accumulation_equals_the_large_batch(norm):
    full, accumulated = _full_and_accumulated(norm)
    for (name, a), (_, b) in zip(full.named_parameters(), accumulated.named_parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-10, msg=name)


def test_bn_gradient_accumulation_differs():
    full, accumulated = _full_and_accumulated("bn")
    assert (full.conv_stem.weight.grad - accumulated.conv_stem.weight.grad).abs().max() > 1e-6


def test_weight_decay_groups():
    model = archspec.build_model({"base": "efficientnet-b0", "norm": {"type": "ln+pn"}, "width_multiplier": 0.25})
    decay, no_decay = parameter_groups(model, 1e-5)
    assert decay["weight_decay"] == 1e-5 and no_decay["weight_decay"] == 0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    plain = {names[id(p)] for p in no_decay["params"]}
    assert decayed | plain == set(names.values()) and not decayed & plain
    for name in decayed:
        assert name.endswith(
            (
                "conv_stem.weight",
                "conv_pw.weight",
                "conv_dw.weight",
                "conv_pwl.weight",
                "conv_head.weight",
                "conv_reduce.weight",
                "conv_expand.weight",
                "classifier.weight",
                ".pn_beta",
                ".pn_gamma",
            )
        ), name
    assert any(n.endswith(".pn_beta") for n in decayed) and any(n.endswith(".pn_gamma") for n in decayed)
    for name in plain:
        assert name.endswith((".bias", "bn1.weight", "bn2.weight", "bn3.weight")), name


# --------------------------------------------------------------------------------------------
# norm layers that the ecosystem recognises


def _bn_model(spec=SPECS / "tiny.yaml"):
    return archspec.build_model({"base": str(spec), "norm": {"type": "bn"}}, seed=0).eval()


def test_norm_layers_are_torch_norm_layers():
    from archspec.backends.torch.norms import BatchNormAct2d

    g = archspec.build_graph(archspec.resolve(archspec.load_spec({"base": str(SPECS / "tiny.yaml"), "norm": "bn"})))
    bn_nodes = [d["module"] for _, d in g.nodes(data=True) if d["op"] == "norm"]
    model = _bn_model()
    assert all(isinstance(model.get_submodule(m), (torch.nn.BatchNorm2d, BatchNormAct2d)) for m in bn_nodes)
    for norm in ("gn", "ln", "gn+pn", "ln+pn"):
        other = archspec.build_model({"base": str(SPECS / "tiny.yaml"), "norm": {"type": norm}})
        assert all(isinstance(other.get_submodule(m), torch.nn.GroupNorm) for m in bn_nodes), norm


def test_convert_sync_batchnorm_converts_every_bn_and_keeps_the_activation():
    from archspec.backends.torch.norms import SyncBatchNormAct, convert_sync_batchnorm

    model = _bn_model()
    bns = [n for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(x)
        converted = convert_sync_batchnorm(model).eval()
        after = converted(x)
    synced = [n for n, m in converted.named_modules() if isinstance(m, SyncBatchNormAct)]
    g = archspec.build_graph(archspec.resolve(archspec.load_spec({"base": str(SPECS / "tiny.yaml"), "norm": "bn"})))
    assert synced == bns == [d["module"] for _, d in g.nodes(data=True) if d["op"] == "norm"]
    torch.testing.assert_close(after, before, rtol=0, atol=0)


def test_conv_bn_folding_keeps_the_outputs():
    from archspec.backends.torch.fast import fold_batchnorm
    from archspec.backends.torch.norms import BatchNormAct2d

    model = _bn_model()
    with torch.no_grad():  # running statistics that are not the identity
        for m in model.modules():
            if isinstance(m, BatchNormAct2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2)
        x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        before = model(x)
        fused, _ = fold_batchnorm(model)
        after = fused(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["sync", "local"])
def test_two_processes_keep_the_same_bn_statistics(tmp_path, mode):
    """--nproc 2 on a BN spec: with sync BN (the runner's default) both processes hold the running
    statistics of one process trained on the whole batch; without it, each its own."""
    import subprocess
    import sys

    out = tmp_path / "stats.pt"
    worker = ROOT / "tests" / "sync_bn_worker.py"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node=2",
            str(worker),
            str(out),
            str(SPECS / "tiny.yaml"),
            mode,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = torch.load(out, weights_only=True)
    one, two = result["ranks"]
    same = all(torch.allclose(one[k], two[k], rtol=0, atol=0) for k in one)
    assert same == (mode == "sync")
    if mode == "sync":
        for k, v in result["whole_batch"].items():
            torch.testing.assert_close(one[k], v, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("norm", ["bn", "gn", "ln", "frn", "gn+pn", "ln+pn"])
@pytest.mark.parametrize("classes", [10, 100])
def test_a_fresh_network_starts_at_the_loss_of_a_uniform_guess(norm: str, classes: int) -> None:
    """Before any training a classifier knows nothing, so its cross-entropy should be that of a
    uniform guess, ln C. Logits of small std s add about s^2/2 to it (a few hundredths for s < 0.5);
    a head initialized for 1000 classes on 10 had logits of std ~1.5 and started ~0.8 above ln 10."""
    spec = archspec.load_spec(
        {"name": "t", "base": str(SPECS / "tiny.yaml"), "norm": {"type": norm}, "num_classes": classes}
    )
    model = archspec.build_model(spec, seed=0).train()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, 64, 64, generator=g)
    y = torch.randint(0, classes, (32,), generator=g)
    with torch.no_grad():
        loss = F.cross_entropy(model(x), y).item()
    assert abs(loss - math.log(classes)) < 0.25, (norm, classes, loss, math.log(classes))
