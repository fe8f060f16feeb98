"""The fast paths (channels_last, torch.compile, BN folding, in-place activations) change no
number: each is held equal to the plain eager model; and the flag combinations that cannot run
get one line and exit 2."""

from __future__ import annotations

import copy
import json

import pytest
import torch

import archspec
from conftest import SPECS, run_archspec

TINY = SPECS / "tiny.yaml"


def _model(norm: str, train: bool = False) -> torch.nn.Module:
    """The tiny spec with `norm`, its norm layers given statistics and affines that are not the
    identity (so that folding and normalising have something to get wrong)."""
    model = archspec.build_model({"base": str(TINY), "norm": {"type": norm}}, seed=0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.train(train)


def _batch(n: int = 4, px: int = 64) -> torch.Tensor:
    return torch.randn(n, 3, px, px, generator=torch.Generator().manual_seed(n))


def _close(got: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-4) -> None:
    """Equal within `rtol` of the largest magnitude (logits of an untrained net are small)."""
    scale = float(expected.detach().abs().max())
    assert scale > 0
    diff = float((got - expected).detach().abs().max())
    assert diff <= rtol * scale, (diff, scale)


def test_folding_bn_keeps_the_outputs_and_leaves_no_bn():
    from archspec.backends.torch.fast import fold_batchnorm

    model = _model("bn").eval()
    bn_layers = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    for n in (1, 3):
        x = _batch(n)
        with torch.no_grad():
            expected = model(x)
            folded, count = fold_batchnorm(copy.deepcopy(model))
            _close(folded(x), expected)
    assert count == bn_layers > 0
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    # fewer parameters: each BN's four vectors become a conv bias
    assert sum(p.numel() for p in folded.parameters()) < sum(p.numel() for p in model.parameters())


def test_folding_works_on_timms_norm_act_layers_too():
    """bench --fold --vs-timm folds timm's model the same way, so both run in the same mode."""
    from timm.layers import BatchNormAct2d

    from archspec.backends.torch.fast import fold_batchnorm

    conv = torch.nn.Conv2d(8, 16, 3, padding=1, bias=False)
    bn = BatchNormAct2d(16, act_layer=torch.nn.SiLU)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
    seq = torch.nn.Sequential(conv, bn).eval()
    x = torch.randn(2, 8, 12, 12)
    with torch.no_grad():
        expected = seq(x)
        folded, count = fold_batchnorm(copy.deepcopy(seq))
        _close(folded(x), expected)
    assert count == 1 and isinstance(folded[1], torch.nn.SiLU)


@pytest.mark.parametrize("norm", ["bn", "gn", "ln+pn"])
def test_channels_last_equals_contiguous_in_training(norm):
    """Forward and every gradient of a training step, NCHW against channels_last."""
    model = _model(norm, train=True)
    other = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x, y = _batch(4), torch.arange(4) % 10
    outs = []
    for m, inp in ((model, x), (other, x.contiguous(memory_format=torch.channels_last))):
        torch.manual_seed(0)  # dropout draws the same mask
        out = m(inp)
        torch.nn.functional.cross_entropy(out, y).backward()
        outs.append(out)
    _close(outs[1], outs[0])
    # every gradient, as one vector: some (biases before a BN) are rounding noise on their own
    grads = [torch.cat([p.grad.flatten() for p in m.parameters()]) for m in (model, other)]
    _close(grads[1], grads[0], rtol=1e-3)


@pytest.mark.parametrize("norm", ["bn", "gn", "ln+pn"])
def test_in_place_activations_change_no_gradient(norm):
    """The norm layers run their activation in place (the cause of the BN gap against timm, issue
    21): the step equals one with every activation out of place."""
    model = _model(norm, train=True)
    in_place = [m for m in model.modules() if getattr(m, "inplace", False)]
    assert in_place, "the norm layers' activations run in place"
    other = copy.deepcopy(model)
    for m in other.modules():
        if hasattr(m, "inplace"):
            m.inplace = False
    x, y = _batch(2), torch.tensor([1, 2])
    for m in (model, other):
        torch.manual_seed(0)
        torch.nn.functional.cross_entropy(m(x), y).backward()
    for (name, a), b in zip(model.named_parameters(), other.parameters()):
        assert torch.equal(a.grad, b.grad), name


def _has_compiler() -> bool:
    try:
        from archspec.backends.torch.fast import require_compiler

        require_compiler("cpu")
    except Exception:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _has_compiler(), reason="torch.compile needs a C++ compiler (g++ or $CXX), none found")
def test_compiled_model_equals_eager():
    model = _model("gn").eval()
    compiled = torch.compile(copy.deepcopy(model))
    x = _batch(2)
    with torch.no_grad():
        _close(compiled(x), model(x))


def test_bench_refuses_fold_with_train(cli):
    result = cli("bench", TINY, "--fold", "--train", "--steps", "1")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert "--fold folds BN for inference" in result.err


@pytest.mark.parametrize(
    "args",
    [
        ("bench", TINY, "--compile", "--steps", "1"),
        ("train", TINY, "--compile", "--max-steps", "1"),
        ("eval", SPECS, "--compile", "--resolutions", "64"),
    ],
    ids=["bench", "train", "eval"],
)
def test_compile_without_a_compiler_is_one_line(args, tmp_path):
    """No C++ compiler (CXX names none): one line and exit 2, before any work, never eager instead."""
    result = run_archspec(*args, cwd=tmp_path, env={"CXX": str(tmp_path / "no-such-compiler")})
    assert result.code == 2, result.err
    assert len(result.err.strip().splitlines()) == 1 and "C++ compiler" in result.err, result.err
    assert not (tmp_path / "runs").exists()


def test_compile_goes_with_the_torch_backend(cli, tmp_path):
    result = cli("train", TINY, "--compile", "--backend", "torch-pipeline", "--out", tmp_path / "r")
    assert result.code == 2 and "--compile goes with --backend torch" in result.err


def test_bench_interleaves_and_reports_the_ratio_and_its_spread(cli):
    payload = json.loads(
        cli(
            "bench", "efficientnet-b0", "--vs-timm", "--fold", "--resolution", "32", "--batch-size", "2",
            "--steps", "5", "--json",
        ).out
    )  # fmt: skip
    r = payload["ratio"]
    assert r["min"] <= r["q1"] <= r["median"] <= r["q3"] <= r["max"]
    # timm's B0 has as many BN layers as archspec's: both were folded, so both ran in the same mode
    assert payload["folded"]["archspec"] == payload["folded"]["timm"] == 49
    assert payload["fast_paths"] == "BN folded"
    assert payload["archspec"]["spread"] >= 0 and payload["steps"] == 5


def test_per_layer_against_timm_names_the_same_layers(cli):
    payload = json.loads(
        cli(
            "bench", "efficientnet-b0", "--per-layer", "--vs-timm", "--resolution", "32", "--batch-size", "1",
            "--steps", "2", "--json",
        ).out
    )  # fmt: skip
    timed = [r for r in payload["rows"] if r["timm_forward_s"] == r["timm_forward_s"]]  # not NaN
    # every conv, norm, activation, SE and add exists in timm under its IR name; only the head's
    # dropout (a function call in timm) does not
    assert {r["kind"] for r in timed} >= {"pointwise conv", "grouped conv", "norm", "activation", "se", "add"}
    assert all(r["timm_forward_s"] > 0 for r in timed if r["kind"] != "add")
    assert payload["timm"]["step_s"] > 0


def test_export_writes_the_folded_model_and_checks_it_against_the_unfolded_one(cli, tmp_path):
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "b0.onnx"
    result = cli("export", "efficientnet-b0", "--format", "onnx", "--resolution", "64", "--out", out, "--json")
    assert result.code == 0, result.err
    payload = json.loads(result.out)
    assert payload["folded_bn"] == 49 and payload["ok"]
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "BatchNormalization" not in ops and "Identity" not in ops
    kept = cli("export", TINY, "--format", "torchscript", "--no-fold", "--out", tmp_path / "tiny.pt")
    assert kept.code == 0 and "BN kept (--no-fold)" in kept.out, kept.err


@pytest.mark.slow  # about 90 s on two cores: a training run and two evaluations
def test_train_and_eval_take_channels_last(cli, tmp_path):
    run = tmp_path / "run"
    args = ("--dataset", "synthetic", "--max-steps", "2", "--batch-size", "8", "--channels-last")
    trained = cli("train", TINY, "--out", run, *args)
    assert trained.code == 0, trained.err
    plain = json.loads(cli("eval", run, "--resolutions", "64", "--json").out)
    fast = json.loads(cli("eval", run, "--resolutions", "64", "--channels-last", "--json").out)
    assert fast["results"][0]["top1"] == pytest.approx(plain["results"][0]["top1"], abs=0.02)


@pytest.mark.parametrize("norm", ["bn", "gn", "ln+pn"])
def test_inference_in_place_equals_the_recorded_forward_and_leaves_the_input(norm):
    """Without autograd the blocks scale (SE) and add (residual) into their own fresh tensors:
    the logits equal a forward that records gradients (out of place), bit for bit, and the
    caller's batch is left as it was."""
    model = _model(norm).eval()
    x = _batch(2)
    kept = x.clone()
    with torch.no_grad():
        fast = model(x)
    recorded = model(x)
    assert torch.equal(x, kept)
    assert torch.equal(fast, recorded.detach())
