"""What other counters print for an archspec model, computed from the IR alone.

fvcore, ptflops, thop, torchinfo and torchvision's weights metadata each count a network their own
way: some count only convs and linears, some add biases, norms or activations, some miss a layer
type altogether. Each convention below is the rule that reproduces one tool's numbers exactly on
archspec's torch models (batch 1 at the resolution the IR was lowered at, model in eval mode, the
tool called as its documentation shows), quirks included: where a tool misses a layer, so does the
rule. tests/test_conventions.py runs every tool on random specs and requires equality.

How each tool was read (installed sources, then checked by running it):
- fvcore: FlopCountAnalysis traces the model and counts aten ops; one fused multiply-add is one
  "flop"; aten::batch_norm in eval counts 2 per element (affine), aten::group_norm 5; every other
  elementwise op (activations, mean, sigmoid, mul, add) is unsupported and counts 0.
- ptflops (0.7, default backend "pytorch"): forward hooks looked up by the module's exact type,
  plus patched torch.nn.functional calls. Our norm layers subclass nn.BatchNorm2d / nn.GroupNorm,
  so no hook fires on them (0); nn.ReLU and nn.GELU count their output once through the module
  hook and once more through the patched F.relu / F.gelu their forward calls, nn.SiLU (no hook)
  once through F.silu; nn.Sigmoid, Tensor.mean and the `*` / `+` operators count 0. Conv and
  linear biases count one per output element. Params: every trainable parameter.
- thop (profile): hooks looked up by exact type too, ops and params both; our norm layers have
  none, so their ops and their parameters (gamma, beta, PN's beta~, gamma~) are missed. Conv and
  linear ops exclude biases (= archspec's MACs); conv and linear params include them.
- torchinfo (summary): mult-adds summed over leaf modules only, each adding (its "weight" and
  "bias" parameters) x output positions for a conv, x batch for others. Our norm layers hold their
  activation as a child, so they are not leaves: their gamma, beta count no mult-adds; conv and
  linear biases do. Total params: every parameter.
- torchvision: the `_ops` in its weights metadata is computed by test/common_extended_utils.py
  (`get_ops`): a TorchDispatchMode counting aten convolution, addmm, mm, matmul and bmm, one per
  multiply-accumulate, biases excluded, summed / 1e9 and rounded to 3 decimals, labelled GFLOPS;
  `num_params` is sum(p.numel() for p in model.parameters()).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

import networkx as nx

from . import norms
from .graph import info, layers

Counts = dict[str, Union[int, float]]

# ptflops: how many times one output element of an activation module is counted. nn.ReLU and
# nn.GELU have a module hook and their forward calls the patched F.relu / F.gelu; nn.SiLU has no
# module hook, only the patched F.silu.
PTFLOPS_ACTIVATION_COUNTS = {"relu": 2, "gelu": 2, "silu": 1}

# The torch backend computes proxy normalization's per-channel moments by evaluating the
# activation at 2 panels x 32 Gauss-Legendre nodes per channel (backends/torch/norms.py:
# ProxyMoments, PANEL_NODES); ReLU's moments are in closed form and evaluate no activation.
PN_QUADRATURE_POINTS = 64


@dataclass(frozen=True)
class Convention:
    name: str
    call: str  # the call whose numbers it reproduces
    headline: str  # the key of the op count the tool prints first
    unit: str  # what that op count is
    rule: str  # the rule, in one or two sentences
    counter: Callable[[nx.DiGraph[str]], Counts]

    def count(self, g: nx.DiGraph[str]) -> Counts:
        return self.counter(g)


def _ptflops_times(function: str) -> int:
    if function not in PTFLOPS_ACTIVATION_COUNTS:
        raise ValueError(f"the ptflops convention has no rule for activation {function!r}")
    return PTFLOPS_ACTIVATION_COUNTS[function]


def _parts(g: nx.DiGraph[str]) -> dict[str, int]:
    """The sums every convention is made of, from one walk over the IR."""
    out = dict.fromkeys(
        (
            "params",
            "macs",
            "norm_params",
            "conv_bias_outputs",  # conv outputs that get a bias added (SE's two 1x1 convs)
            "linear_bias_outputs",
            "batch_norm_elements",  # layers FLOP counters see as torch's batch_norm (the kind says)
            "group_norm_elements",  # GN and LN: both run torch's group_norm
            "none_elements",  # norms whose ops no counter counts (FRN's elementwise ops)
            "torchinfo_norms",  # torchinfo's mult-adds of norm layers that are leaf modules
            "ptflops_activations",
        ),
        0,
    )
    for _, d in layers(g):
        out["params"] += d["params"]
        out["macs"] += d["macs"]
        if d["op"] == "norm":
            out["norm_params"] += d["params"]
            kind = norms.kind(d["norm"])
            out[f"{kind.counted_as}_elements"] += math.prod(d["in_shape"])
            out["torchinfo_norms"] += kind.torchinfo_per_channel * d["channels"]
            if d["proxy"] and d["activation"] is not None and d["activation"] != "relu":
                times = _ptflops_times(d["activation"])
                out["ptflops_activations"] += times * PN_QUADRATURE_POINTS * d["channels"]
        elif d["op"] == "act":
            out["ptflops_activations"] += _ptflops_times(d["function"]) * d["activations"]
        elif d["op"] == "se":
            c, r = d["channels"], d["reduced_channels"]
            out["conv_bias_outputs"] += r + c  # conv_reduce's and conv_expand's outputs, 1 x 1 each
            out["ptflops_activations"] += _ptflops_times(d["function"]) * r
        elif d["op"] == "conv" and d["bias"]:
            out["conv_bias_outputs"] += d["activations"]
        elif d["op"] == "linear" and d["bias"]:
            out["linear_bias_outputs"] += d["out_features"]
    return out


def _archspec(g: nx.DiGraph[str]) -> Counts:
    p = _parts(g)
    return {"macs": p["macs"], "flops": 2 * p["macs"], "params": p["params"]}


def _fvcore(g: nx.DiGraph[str]) -> Counts:
    p = _parts(g)
    return {"flops": p["macs"] + 2 * p["batch_norm_elements"] + 5 * p["group_norm_elements"], "params": p["params"]}


def _ptflops(g: nx.DiGraph[str]) -> Counts:
    p = _parts(g)
    macs = p["macs"] + p["conv_bias_outputs"] + p["linear_bias_outputs"] + p["ptflops_activations"]
    return {"macs": macs, "params": p["params"]}


def _thop(g: nx.DiGraph[str]) -> Counts:
    p = _parts(g)
    return {"macs": p["macs"], "params": p["params"] - p["norm_params"]}


def _torchinfo(g: nx.DiGraph[str]) -> Counts:
    p = _parts(g)
    mult_adds = p["macs"] + p["conv_bias_outputs"] + p["linear_bias_outputs"] + p["torchinfo_norms"]
    return {"mult_adds": mult_adds, "params": p["params"]}


def _torchvision(g: nx.DiGraph[str]) -> Counts:
    p = _parts(g)
    return {"flops": p["macs"], "_ops": round(p["macs"] / 1e9, 3), "num_params": p["params"]}


CONVENTIONS: dict[str, Convention] = {
    c.name: c
    for c in (
        Convention(
            "archspec",
            "archspec stats",
            "macs",
            "MACs",
            "MACs of every conv and linear layer (squeeze-excite's 1x1 convs included), biases excluded; "
            "flops = 2 x MACs (what torch.utils.flop_counter.FlopCounterMode prints); params: every "
            "learnable parameter.",
            _archspec,
        ),
        Convention(
            "fvcore",
            "fvcore.nn.FlopCountAnalysis(model, x).total(), fvcore.nn.parameter_count(model)['']",
            "flops",
            "flops (1 per multiply-add)",
            "Conv and linear MACs without biases, plus 2 per element for each BN layer (eval) and 5 per "
            "element for each GN/LN layer; activations, squeeze-excite's gating, pooling, residual adds "
            "and PN's arithmetic count 0. Params: every parameter.",
            _fvcore,
        ),
        Convention(
            "ptflops",
            "ptflops.get_model_complexity_info(model, (3, H, W), as_strings=False) (ptflops 0.7, its default "
            "backend 'pytorch')",
            "macs",
            "MACs",
            "Conv and linear MACs plus 1 per biased output element (squeeze-excite's convs, the "
            "classifier), plus each activation's elements, twice for ReLU/GELU (module hook and "
            "F.relu/F.gelu) and once for SiLU (F.silu), squeeze-excite's inner one and the 64 "
            "quadrature points per channel of PN's moments (SiLU/GELU) included; norm layers count 0 "
            "(subclasses of torch's norms get no hook), as do sigmoid, pooling and adds. Params: every "
            "parameter.",
            _ptflops,
        ),
        Convention(
            "thop",
            "thop.profile(model, inputs=(x,))",
            "macs",
            "MACs",
            "Conv and linear MACs without biases (archspec's MACs); params of conv and linear layers "
            "only, biases included: norm layers, subclasses of torch's norms, get no rule, so their "
            "ops and their parameters (gamma, beta, PN's beta~, gamma~) are missed.",
            _thop,
        ),
        Convention(
            "torchinfo",
            "torchinfo.summary(model, input_size=(1, 3, H, W)): Total mult-adds, Total params",
            "mult_adds",
            "mult-adds",
            "Over leaf modules, (weight + bias parameters) x output positions: conv and linear MACs plus "
            "1 per biased output element; norm layers hold their activation, so are not leaves and add "
            "none (a norm without a child activation, FRN + TLU, is a leaf: its weight and bias elements count once "
            "each). Total params: every parameter.",
            _torchinfo,
        ),
        Convention(
            "torchvision",
            "_ops and num_params of torchvision's weights metadata (get_ops in pytorch/vision's "
            "test/common_extended_utils.py)",
            "flops",
            "FLOPs (= MACs)",
            "Conv and linear MACs without biases, one per multiply-accumulate (archspec's MACs), "
            "published as _ops = round(MACs / 1e9, 3) GFLOPS; num_params: every parameter.",
            _torchvision,
        ),
    )
}

NAMES: tuple[str, ...] = tuple(CONVENTIONS)


def count(g: nx.DiGraph[str], convention: str) -> Counts:
    """What `convention`'s tool prints for the model of `g`, batch 1 at `g`'s resolution."""
    if convention not in CONVENTIONS:
        raise ValueError(f"no convention {convention!r}; the conventions are {', '.join(NAMES)}")
    return CONVENTIONS[convention].count(g)


def report(g: nx.DiGraph[str], names: tuple[str, ...] = NAMES) -> dict[str, Any]:
    """What `stats --convention` / `--all` print, as plain data: each convention's counts for one
    image at the IR's resolution, with the call it reproduces and its rule."""
    for name in names:
        if name not in CONVENTIONS:
            raise ValueError(f"no convention {name!r}; the conventions are {', '.join(NAMES)}")
    macs = _parts(g)["macs"]
    rows: dict[str, Any] = {}
    for name in names:
        c = CONVENTIONS[name]
        counts = c.count(g)
        rows[name] = {
            "counts": counts,
            "headline": c.headline,
            "unit": c.unit,
            "vs_archspec_macs": round(counts[c.headline] / macs, 4) if macs else None,
            "call": c.call,
            "rule": c.rule,
        }
    g_info = info(g)
    return {"name": g_info["name"], "resolution": g_info["resolution"][0], "batch_size": 1, "conventions": rows}
