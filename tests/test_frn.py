"""Filter Response Normalization + TLU (`norm: frn`), a norm added through the norm registry alone:
timm's FilterResponseNormTlu2d is the reference for its outputs, and it works in every command."""

from __future__ import annotations

import json
import runpy

import pytest
import torch

import archspec
from archspec.graph import layers

SPEC = (
    "name: tiny_frn\nbase: efficientnet-b0\nwidth_multiplier: 0.25\ndepth_multiplier: 0.25\n"
    "group_size: 8\nexpansion_ratio: 3\nnorm: {type: frn, eps: 1.0e-5}\ndrop_path: 0.0\n"
    "resolution: {native: 32, train: native, test: [32]}\nnum_classes: 10\n"
)


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "tiny_frn.yaml"
    path.write_text(SPEC)
    return path


@pytest.mark.parametrize("tlu", [True, False])
def test_frn_matches_timm_within_1e5(tlu):
    from timm.layers import FilterResponseNormTlu2d as TimmFRN

    from archspec.backends.torch.norms import norm_act

    torch.manual_seed(0)
    ours = norm_act(24, "frn", eps=1e-5, activation="tlu" if tlu else None)
    theirs = TimmFRN(24, apply_act=tlu, eps=1e-5)
    with torch.no_grad():
        for p in theirs.parameters():
            p.normal_()
    # timm keeps tau without its TLU; ours has it only where the TLU applies
    state = {k: v for k, v in theirs.state_dict().items() if tlu or k != "tau"}
    ours.load_state_dict(state)
    x = torch.randn(3, 24, 7, 5) * 4
    assert torch.allclose(ours(x), theirs(x), atol=1e-5, rtol=0)


def test_frn_model_params_and_shapes_are_the_irs(spec_file):
    model = archspec.build_model(spec_file)
    st = archspec.stats(spec_file)
    assert sum(p.numel() for p in model.parameters()) == st.params
    res = archspec.resolve(archspec.load_spec(spec_file))
    g = archspec.build_graph(res)
    norms = [d for _, d in layers(g) if d["op"] == "norm"]
    # an activated FRN layer has gamma, beta and tau, a plain one gamma and beta; its TLU is in the layer
    assert all(d["params"] == (3 if d["activation"] else 2) * d["channels"] for d in norms)
    assert {d["activation"] for d in norms} == {"tlu", None}
    assert not any(d["op"] == "act" for _, d in layers(g))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_frn_through_validate_compile_and_stats(spec_file, tmp_path, cli):
    assert cli("validate", spec_file).code == 0
    out = tmp_path / "out"
    result = cli("compile", spec_file, "--out", out, "--json")
    assert result.code == 0, result.err
    st = archspec.stats(spec_file)
    built = runpy.run_path(str(out / "model.py"))["build"]()
    model = archspec.build_model(spec_file)
    built.load_state_dict(model.state_dict())  # same names, same shapes
    assert sum(p.numel() for p in built.parameters()) == st.params
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(built.eval()(x), model.eval()(x))
    stats = json.loads(cli("stats", spec_file, "--json").out)
    assert (stats["params"], stats["macs"]) == (st.params, st.macs)
    conv = json.loads(cli("stats", spec_file, "--all", "--json").out)["conventions"]
    # FRN's pow/mean/rsqrt/mul/add/max are elementwise ops that fvcore does not count
    assert conv["fvcore"]["counts"]["flops"] == st.macs
    assert conv["thop"]["counts"]["params"] < st.params  # norm layers get no thop rule


def test_frn_counts_are_what_each_counter_prints(spec_file):
    from test_conventions import MODULES, TOOLS

    from archspec import conventions

    for module in MODULES.values():
        pytest.importorskip(module, reason=f"{module} is in the dev extra: pip install -e '.[dev]'")
    g = archspec.build_graph(archspec.resolve(archspec.load_spec(spec_file)))
    model = archspec.build_model(g, seed=0).eval()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for name, tool in TOOLS.items():
        assert conventions.count(g, name) == tool(model, x), name


def test_frn_kernel_class_is_profiled_and_predicted(spec_file, tmp_path, cli):
    from archspec.backends.torch.profile import profile
    from archspec.calibration import default_specs
    from archspec.predict import load_profile

    # the default calibration networks hold FRN layers, so every default profile can predict it
    assert any(s["norm"]["type"] == "frn" for s in default_specs())
    out = tmp_path / "p.json"
    profile("cpu", "fp32", 2, True, progress=lambda *_: None, out=out, networks=[("frn", {"base": str(spec_file)})])
    assert {e.variant for e in load_profile(out).entries if e.kind == "norm"} == {"frn"}


def test_frn_stats_profile(spec_file, tmp_path, cli):
    from test_speed import synthetic_profile

    path = tmp_path / "synthetic.json"
    path.write_text(json.dumps(synthetic_profile()))
    result = cli("stats", spec_file, "--profile", path, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["predicted"]["infer_images_per_s"] > 0


@pytest.mark.slow
def test_frn_bench_export_and_train(spec_file, tmp_path, cli):
    bench = cli("bench", spec_file, "--steps", "2", "--batch-size", "2", "--json")
    assert bench.code == 0, bench.err
    export = cli("export", spec_file, "--format", "torchscript", "--out", tmp_path / "m.pt")
    assert export.code == 0, export.err
    run = tmp_path / "run"
    train = cli("train", spec_file, "--dataset", "synthetic", "--max-steps", "2", "--batch-size", "4", "--out", run)
    assert train.code == 0, train.err
    assert (run / "checkpoint.pt").exists()
