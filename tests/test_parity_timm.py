"""Parity with an independent implementation: timm's efficientnet_b0 ... b7 (dev extra)."""

from __future__ import annotations

import importlib

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import archspec
from conftest import NATIVE


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
    with torch.device("meta"):
        reference = timm.create_model(f"efficientnet_b{b}")
        x = torch.empty(1, 3, NATIVE[b], NATIVE[b])
    with FlopCounterMode(display=False) as counter:
        reference.eval()(x)
    flops = counter.get_flop_counts()["Global"]
    assert set(map(str, flops)) <= {"aten.convolution", "aten.addmm"}
    assert ours.params == sum(p.numel() for p in reference.parameters())
    assert ours.macs == sum(flops.values()) // 2


@pytest.mark.parametrize("b", [0, 3])
def test_timm_weights_load_strictly_and_give_the_same_logits(timm, b):
    # same architecture, same names: a timm checkpoint is an archspec checkpoint
    reference = timm.create_model(f"efficientnet_b{b}", bn_eps=1e-3).eval()
    model = archspec.build_model({"base": f"efficientnet-b{b}"}).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(b))
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=1e-6)
