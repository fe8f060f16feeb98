"""`stats --convention`: each counter's number, computed from the IR, equals what the tool itself
prints when run on the built model (batch 1, eval mode, called as its documentation shows).

The specs are random but fixed (a seeded generator): every norm (bn, gn, ln, gn+pn, ln+pn) with
every activation, squeeze-excite on and off, depthwise to grouped convs, expansion 1 to 6, 1x1 to
7x7 kernels, with and without a head conv, 32 to 96 px. The default run checks the first five (all
five norms, all three activations); `-m slow` checks the other fifteen.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

import archspec
from archspec import conventions
from archspec.graph import build_graph, layers
from conftest import ROOT

NORMS = ["bn", "gn", "ln", "gn+pn", "ln+pn"]
ACTIVATIONS = ["silu", "relu", "gelu"]  # with NORMS: i % 5 and i % 3 give all 15 pairs in 15 specs
SPECS = 20
DEFAULT_RUN = 5


def random_spec(i: int) -> tuple[dict[str, Any], int]:
    """Spec number i and the resolution to count it at."""
    rng = random.Random(14_000 + i)
    stages = [
        {
            "repeats": rng.randint(1, 2),
            "kernel": rng.choice([1, 3, 5, 7]),
            "stride": 2 if stage == 0 else rng.choice([1, 2]),  # small networks: a quick test
            "expansion": rng.choice([1.0, 2.5, 4.0, 6.0]),
            "channels": rng.choice([8, 16, 24, 40]),
            "se_ratio": rng.choice([0.0, 0.25, 0.5]),
        }
        for stage in range(rng.randint(2, 4))
    ]
    spec: dict[str, Any] = {
        "name": f"random-{i}",
        "stem": {"channels": rng.choice([8, 16, 32]), "kernel": rng.choice([3, 5]), "stride": 2},
        "stages": stages,
        "head": {"channels": rng.choice([0, 64, 160]), "dropout": 0.1},
        "group_size": rng.choice([1, 2, 4, 8, 16]),
        "group_rounding": rng.choice(["size", "count"]),
        "norm": {"type": NORMS[i % 5], "groups": rng.choice([1, 2, 4])},
        "activation": ACTIVATIONS[i % 3],
        "drop_path": rng.choice([0.0, 0.2]),
        "width_multiplier": rng.choice([0.25, 0.5, 0.75]),
        "num_classes": rng.randint(2, 100),
    }
    if rng.random() < 0.5:
        spec["expansion_ratio"] = rng.choice([1.5, 3.0, 4.0])
    resolution = rng.randint(32, 96)
    spec["resolution"] = {"train": resolution}
    return spec, resolution


# ----------------------------------------------------------------------------------------------
# torchvision's counter. torchvision ships no function for it: the `_ops` of its weights metadata
# is computed by `get_ops` in its repository's test/common_extended_utils.py, a TorchDispatchMode
# that counts aten convolution / _convolution (batch x weight elements x output positions),
# addmm (batch x in x out), mm and matmul (elements of the first x last dim of the second) and bmm,
# on one preprocessed image in eval mode, and reports the sum / 1e9 rounded to 3 decimals. This
# is that counter, restated; test_torchvision_counter_reproduces_its_published_ops checks it on
# torchvision's own models against the published numbers.

aten = torch.ops.aten


def _conv(args: Any, out: Any) -> int:
    x, w, transposed = args[0].shape, args[1].shape, args[6]
    return x[0] * w.numel() * (x if transposed else out.shape)[2:].numel()


def _addmm(args: Any, out: Any) -> int:
    (batch, features), (_, outputs) = args[1].shape, args[2].shape
    return batch * features * outputs


def _mm(args: Any, out: Any) -> int:
    return args[0].shape.numel() * args[1].shape[-1]


def _bmm(args: Any, out: Any) -> int:
    n, c, t = args[0].shape
    return n * c * t * args[1].shape[-1]


TORCHVISION_RULES = {
    aten.convolution: _conv,
    aten._convolution: _conv,
    aten.addmm: _addmm,
    aten.mm: _mm,
    aten.matmul: _mm,
    aten.bmm: _bmm,
}


class TorchvisionOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        rule = TORCHVISION_RULES.get(func._overloadpacket)
        if rule is not None:
            self.total += rule(args, out)
        return out


def torchvision_counts(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Any]:
    counter = TorchvisionOps()
    with counter, torch.no_grad():
        model(x)
    return {
        "flops": counter.total,
        "_ops": round(counter.total / 1e9, 3),
        "num_params": sum(p.numel() for p in model.parameters()),
    }


# ----------------------------------------------------------------------------------------------
# the other tools, each called as its README shows


def archspec_counts(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Any]:
    # archspec's flops are torch's own FlopCounterMode's; MACs are half of them
    with FlopCounterMode(display=False) as counter:
        model(x)
    flops = counter.get_total_flops()
    return {"macs": flops // 2, "flops": flops, "params": sum(p.numel() for p in model.parameters())}


def fvcore_counts(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Any]:
    from fvcore.nn import FlopCountAnalysis, parameter_count

    analysis = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return {"flops": analysis.total(), "params": parameter_count(model)[""]}


def ptflops_counts(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Any]:
    from ptflops import get_model_complexity_info

    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        macs, params = get_model_complexity_info(
            model, tuple(x.shape[1:]), as_strings=False, print_per_layer_stat=False, ost=log
        )
    assert macs is not None, log.getvalue()
    return {"macs": macs, "params": params}


def thop_counts(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Any]:
    from thop import profile

    with contextlib.redirect_stdout(io.StringIO()):
        macs, params = profile(model, inputs=(x,), verbose=False)
    assert macs == int(macs) and params == int(params)  # thop sums in float64
    return {"macs": int(macs), "params": int(params)}


def torchinfo_counts(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Any]:
    from torchinfo import summary

    stats = summary(model, input_size=tuple(x.shape), verbose=0)
    return {"mult_adds": stats.total_mult_adds, "params": stats.total_params}


TOOLS = {
    "archspec": archspec_counts,
    "fvcore": fvcore_counts,
    "ptflops": ptflops_counts,
    "thop": thop_counts,
    "torchinfo": torchinfo_counts,
    "torchvision": torchvision_counts,
}
MODULES = {"fvcore": "fvcore", "ptflops": "ptflops", "thop": "thop", "torchinfo": "torchinfo"}


def _check_spec(i: int) -> None:
    for module in MODULES.values():
        pytest.importorskip(module, reason=f"{module} is in the dev extra: pip install -e '.[dev]'")
    spec, resolution = random_spec(i)
    g = build_graph(archspec.resolve(archspec.load_spec(spec)), resolution)
    model = archspec.build_model(g, seed=i).eval()
    x = torch.randn(1, 3, resolution, resolution, generator=torch.Generator().manual_seed(i))
    for name, tool in TOOLS.items():
        assert conventions.count(g, name) == tool(model, x), (name, spec, resolution)


@pytest.mark.parametrize("i", range(DEFAULT_RUN))
def test_every_convention_equals_its_tool(i):
    _check_spec(i)


@pytest.mark.slow
@pytest.mark.parametrize("i", range(DEFAULT_RUN, SPECS))
def test_every_convention_equals_its_tool_on_more_specs(i):
    _check_spec(i)


def test_the_random_specs_cover_what_the_tools_treat_differently():
    seen: dict[str, set[Any]] = {k: set() for k in ("norm", "se", "head", "grouped", "expanded")}
    for i in range(SPECS):
        spec, resolution = random_spec(i)
        assert 32 <= resolution <= 96
        g = build_graph(archspec.resolve(archspec.load_spec(spec)), resolution)
        nodes = [d for _, d in layers(g)]
        seen["norm"].add((spec["norm"]["type"], spec["activation"]))
        seen["se"].add(any(d["op"] == "se" for d in nodes))
        seen["head"].add(any(d["module"] == "conv_head" for d in nodes))
        seen["grouped"] |= {d["group_size"] > 1 for d in nodes if d["op"] == "conv" and d["role"] == "spatial"}
        blocks = {d["unit"] for d in nodes if d["unit"].startswith("blocks.")}
        expanded = {d["unit"] for d in nodes if d["op"] == "conv" and d["role"] == "expand"}
        seen["expanded"] |= {b in expanded for b in blocks}  # inverted residuals and depthwise-separable
    assert len(seen["norm"]) == 15  # every norm with every activation
    assert seen["se"] == seen["head"] == seen["grouped"] == seen["expanded"] == {True, False}


def test_pn_quadrature_points_are_the_backends():
    from archspec.backends.torch.norms import PANEL_NODES

    assert conventions.PN_QUADRATURE_POINTS == 2 * PANEL_NODES


@pytest.mark.parametrize(
    "name, weights",
    [("efficientnet_b0", "EfficientNet_B0_Weights"), ("resnet50", "ResNet50_Weights")],
)
def test_torchvision_counter_reproduces_its_published_ops(name, weights):
    # on the meta device: shapes only, no weights downloaded
    import torchvision.models as tv

    meta = getattr(tv, weights).DEFAULT
    crop = meta.transforms().crop_size[0]
    with torch.device("meta"):
        model = getattr(tv, name)().eval()
        counts = torchvision_counts(model, torch.empty(1, 3, crop, crop))
    assert (counts["_ops"], counts["num_params"]) == (meta.meta["_ops"], meta.meta["num_params"])


def test_every_convention_has_its_rule_and_the_cli_names():
    from archspec.cli.options import CONVENTIONS_CHOICE

    assert conventions.NAMES == ("archspec", "fvcore", "ptflops", "thop", "torchinfo", "torchvision")
    assert CONVENTIONS_CHOICE.names == conventions.NAMES
    g = build_graph(archspec.resolve(archspec.load_spec(random_spec(0)[0])), 64)
    report = conventions.report(g)
    assert (report["resolution"], report["batch_size"]) == (64, 1)
    for name, row in report["conventions"].items():
        assert row["rule"] and row["call"] and row["headline"] in row["counts"], name
    assert report["conventions"]["thop"]["vs_archspec_macs"] == 1.0
    with pytest.raises(ValueError, match="no convention 'flopth'"):
        conventions.count(g, "flopth")


def test_stats_convention_prints_what_torchvision_publishes(cli):
    import torchvision.models as tv

    meta = tv.EfficientNet_B0_Weights.DEFAULT.meta  # the same network as archspec's B0 preset
    result = cli("stats", "efficientnet-b0", "--convention", "torchvision")
    assert result.code == 0, result.err
    assert f"{meta['_ops']:.3f}" in result.out and f"{meta['num_params']:,}" in result.out
    assert "rule: " in result.out and "call: " in result.out


def test_stats_all_prints_every_convention(cli):
    tiny = ROOT / "specs" / "tiny.yaml"
    text = cli("stats", tiny, "--all")
    payload = json.loads(cli("stats", tiny, "--all", "--resolution", "96", "--json").out)
    g = build_graph(archspec.resolve(archspec.load_spec(tiny)), 96)
    assert text.code == 0, text.err
    assert all(f"{name}: " in text.out for name in conventions.NAMES)
    assert payload["resolution"] == 96
    counted = {n: r["counts"] for n, r in payload["conventions"].items()}
    assert counted == {n: conventions.count(g, n) for n in conventions.NAMES}


def test_stats_convention_flags_refuse_what_they_cannot_use(cli):
    both = cli("stats", "efficientnet-b0", "--all", "--convention", "thop")
    batch = cli("stats", "efficientnet-b0", "--convention", "thop", "--batch-size", "8")
    unknown = cli("stats", "efficientnet-b0", "--convention", "flopth")
    assert both.code == batch.code == unknown.code == 2
    assert both.err == "archspec stats: --convention and --all: give one of them\n"
    assert batch.err == "archspec stats: --convention and --all count one image: drop --batch-size and --profile\n"
    assert (
        unknown.err.startswith("archspec stats: Invalid value for '--convention'")
        and len(unknown.err.splitlines()) == 1
    )
