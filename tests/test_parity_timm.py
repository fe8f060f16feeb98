"""Parity with an independent implementation: timm's efficientnet_b0 ... b7 (dev extra)."""

from __future__ import annotations

import importlib
import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import archspec
from archspec.graph import layers
from conftest import NATIVE, SPECS


@pytest.fixture(scope="module")
def timm():
    """timm, imported by the tests that use it rather than at collection (it takes seconds)."""
    return importlib.import_module("timm")


@pytest.mark.parametrize("b", range(8))
def test_params_and_macs_equal_timm(timm, b):
    spec = archspec.load_spec(
        {"base": f"efficientnet-b{b}", "group_size": 1, "expansion_ratio": 6, "norm": {"type": "bn"}}
    )
    ours = archspec.stats(spec, resolution=NATIVE[b])
    assert (ours.params, ours.macs) == _timm_params_and_macs(timm, f"efficientnet_b{b}", NATIVE[b])


def _timm_params_and_macs(timm, name: str, resolution: int) -> tuple[int, int]:
    """timm's model `name`: its parameters, and its MACs as torch's FLOP counter counts them."""
    with torch.device("meta"):
        reference = timm.create_model(name)
        x = torch.empty(1, 3, resolution, resolution)
    with FlopCounterMode(display=False) as counter:
        reference.eval()(x)
    flops = counter.get_flop_counts()["Global"]
    assert set(map(str, flops)) <= {"aten.convolution", "aten.addmm"}
    return sum(p.numel() for p in reference.parameters()), sum(flops.values()) // 2


@pytest.mark.parametrize("b", [0, 3])
def test_timm_weights_load_strictly_and_give_the_same_logits(timm, b):
    # same architecture, same names: a timm checkpoint is an archspec checkpoint
    reference = timm.create_model(f"efficientnet_b{b}", bn_eps=1e-3).eval()
    model = archspec.build_model({"base": f"efficientnet-b{b}"}).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(b))
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=1e-6)


V2_REFERENCE = {"s": 300, "m": 384, "l": 384}


@pytest.mark.parametrize("v", list(V2_REFERENCE))
def test_efficientnetv2_params_and_macs_equal_timm(timm, v):
    resolution = V2_REFERENCE[v]
    ours = archspec.stats(f"efficientnetv2-{v}", resolution=resolution)
    assert (ours.params, ours.macs) == _timm_params_and_macs(timm, f"tf_efficientnetv2_{v}", resolution)


def _v2_forward_is_timms(timm, v: str) -> None:
    # tf_efficientnetv2's weights load by name; the forward is compared with timm's efficientnetv2
    # of the same stage table, which pads symmetrically as archspec does (the tf_ model pads
    # TensorFlow's 'same' way, asymmetric at stride 2), with those weights and BN eps 1e-3
    weights = timm.create_model(f"tf_efficientnetv2_{v}").state_dict()
    reference = timm.create_model(f"efficientnetv2_{v}", bn_eps=1e-3).eval()
    reference.load_state_dict(weights, strict=True)
    model = archspec.build_model(f"efficientnetv2-{v}").eval()
    model.load_state_dict(weights, strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


def test_efficientnetv2_s_forward_is_bit_exact_with_timm_weights(timm):
    _v2_forward_is_timms(timm, "s")


@pytest.mark.slow
@pytest.mark.parametrize("v", ["m", "l"])
def test_efficientnetv2_m_l_forward_is_bit_exact_with_timm_weights(timm, v):
    _v2_forward_is_timms(timm, v)


def test_g16_efficientnetv2_s_compiles_and_flop_matches(cli, tmp_path):
    spec = SPECS / "v2s_g16.yaml"
    result = cli("match-flops", spec, "--target", "efficientnetv2-s", "--json")
    assert result.code == 0, result.err
    payload = json.loads(result.out)
    assert payload["expansion_ratio"] == archspec.load_spec(spec).expansion_ratio
    assert abs(payload["relative_error"]) <= 0.01
    compiled = cli("compile", spec, "--out", tmp_path, "--json")
    assert compiled.code == 0, compiled.err
    kinds = {b.name: b.block for b in archspec.as_resolved(spec).blocks}
    spatial = [
        (kinds[d["unit"]], d)
        for _, d in layers(archspec.as_graph(spec))
        if d["op"] == "conv" and d["role"] == "spatial" and d["unit"] in kinds
    ]
    # G16 replaces the depthwise convs; the fused MBConv stages keep their dense convs
    assert all(d["group_size"] == 16 for kind, d in spatial if kind == "mbconv")
    assert all(d["groups"] == 1 for kind, d in spatial if kind == "fused_mbconv")
