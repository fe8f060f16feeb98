"""Practical speed: bench --per-layer, device profiles, and the predictor that reads them.

The predictor is checked against a synthetic profile whose times follow a known law (so the
expected times come from the IR's own MACs and sizes, not from our output); its accuracy on real
measurements is a benchmark (benchmarks/speed_predictor.py), not a test.
"""

from __future__ import annotations

import json
import math

import networkx as nx
import pytest

import archspec
from archspec.api import as_graph
from archspec.errors import SpecError
from archspec.graph import layers
from archspec.predict import load_profile, node_seconds, predict
from conftest import SPECS

TINY = SPECS / "tiny.yaml"
# the law the synthetic profile follows: a kernel takes a fixed cost + per MAC + per element moved,
# and every measured call the harness's overhead on top (which a network's step pays once)
FIXED, PER_MAC, PER_ELEMENT, OVERHEAD = 10e-6, 1e-10, 2e-9, 20e-6


def law(macs: float, elements: float, train: bool) -> float:
    return (3 if train else 1) * (FIXED + PER_MAC * macs + PER_ELEMENT * elements)


def _entry_law(e: dict, batch: int, train: bool) -> float:
    """What the harness would measure: the kernel's law and the call's overhead."""
    return OVERHEAD + (0.0 if e["kind"] == "call" else _kernel_law(e, batch, train))


def _kernel_law(e: dict, batch: int, train: bool) -> float:
    c, h = e["channels"], e["size"]
    if e["kind"] in ("conv", "conv1x1", "stem"):
        out = -(-h // e["stride"])
        macs = batch * out * out * e["out_channels"] * e["group_size"] * e["kernel"] ** 2
        return law(macs, batch * (c * h * h + e["out_channels"] * out * out), train)
    if e["kind"] == "linear":
        return law(batch * c * 1000, 0, train)
    return law(0, batch * c * h * h, train)


# networks whose whole-network times follow the law too (a step pays the overhead once): they
# calibrate the kernels to the identity
# (group sizes the grid measures, so that the kernels alone follow the law exactly too)
CALIBRATION = [
    str(TINY),
    str(SPECS / "b1_g1.yaml"),
    *(
        {"base": str(TINY), "group_size": g, "resolution": {"train": px}, "norm": {"type": norm}}
        for g, px, norm in ((1, 64, "bn"), (2, 96, "gn"), (4, 128, "ln+pn"), (8, 80, "gn+pn"), (1, 160, "ln"))
    ),
]


def _network_law(spec, batch: int, train: bool, elementwise_factor: float = 1.0) -> float:
    g = as_graph(spec)
    total = 0.0
    for _, d in layers(g):
        if d["op"] != "input":
            t = _node_law(d, batch, train)
            total += elementwise_factor * t if d["op"] in ("norm", "act", "add") else t
    return total + OVERHEAD


def synthetic_profile(batch: int = 4, elementwise_factor: float = 1.0) -> dict:
    """`elementwise_factor`: how much slower the norms, activations and adds run inside the
    calibration networks than alone."""
    from archspec.backends.torch.profile import FORMAT, VERSION, grid

    entries = [{**e, "infer_s": _entry_law(e, batch, False), "train_s": _entry_law(e, batch, True)} for e in grid()]
    networks = []
    for spec in CALIBRATION:
        for b in (1, batch):
            row = {"source": "test", "spec": spec if isinstance(spec, dict) else {"base": spec}, "batch_size": b}
            row |= {"infer_s": _network_law(spec, b, False, elementwise_factor), "infer_spread": 0.01}
            if b > 1:
                row |= {"train_s": _network_law(spec, b, True, elementwise_factor), "train_spread": 0.01}
            networks.append(row)
    return {
        "format": FORMAT,
        "version": VERSION,
        "device": "cpu",
        "dtype": "fp32",
        "batch_size": batch,
        "channels_last": False,
        "train": True,
        "torch": "synthetic",
        "threads": 2,
        "machine": {"cpu": "synthetic"},
        "created": "2026-01-01T00:00:00+00:00",
        "kernel_batch_size": batch,
        "allocator": "synthetic",
        "seconds": 0.0,
        "peaks": {"gflops": 100.0, "gbps": 10.0},
        "entries": entries,
        "calibration": networks,
        "noise": {"kernels": 0.01, "networks": 0.01},
    }


@pytest.fixture(scope="module")
def profile_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("profile") / "synthetic.json"
    path.write_text(json.dumps(synthetic_profile()))
    return path


def _node_law(d, batch: int, train: bool) -> float:
    """The law at one IR node, from the node's own attributes."""
    if d["op"] == "conv":
        elements = batch * (math.prod(d["in_shape"]) + math.prod(d["out_shape"]))
        return law(batch * d["macs"], elements, train)
    if d["op"] == "linear":
        return law(batch * d["macs"], 0, train)
    kernels = 2 if d["op"] == "norm" and d["proxy"] else 1  # a proxy norm runs the norm and PN
    return kernels * law(0, batch * math.prod(d["in_shape"]), train)


@pytest.mark.parametrize("spec", [TINY, SPECS / "b0_g16_lnpn_half.yaml", SPECS / "b1_g1.yaml"])
def test_the_predictor_recovers_a_profile_that_follows_a_law(profile_file, spec):
    profile = load_profile(profile_file)
    g = as_graph(spec)
    for batch, mode in ((4, "infer"), (16, "train"), (1, "infer")):
        predicted = node_seconds(g, profile, batch, mode)
        for name, d in layers(g):
            if d["op"] != "input":
                assert predicted[name] == pytest.approx(_node_law(d, batch, mode == "train"), rel=1e-6), name


def test_the_prediction_adds_up(profile_file):
    g = as_graph(SPECS / "b0_g16.yaml")
    p = predict(g, load_profile(profile_file), 8)
    assert [s.stage for s in p.stages] == ["stem", *range(7), "head"]
    assert sum(s.infer_s for s in p.stages) == pytest.approx(p.infer_s)
    assert sum(s.train_s for s in p.stages) == pytest.approx(p.train_s)
    assert p.infer_images_per_s == pytest.approx(8 / p.infer_s)
    assert p.train_images_per_s < p.infer_images_per_s
    # the step pays the call overhead once, not once per layer
    infer = sum(_node_law(d, 8, False) for _, d in layers(g) if d["op"] != "input")
    assert p.infer_s == pytest.approx(infer + OVERHEAD, rel=1e-6)
    latency = sum(_node_law(d, 1, False) for _, d in layers(g) if d["op"] != "input")
    assert p.latency_ms == pytest.approx((latency + OVERHEAD) * 1e3, rel=1e-6)


def test_the_calibration_learns_what_kernels_alone_miss(tmp_path):
    """Where norms, activations and adds run 1.3x slower inside networks than alone, a network the
    calibration never saw is predicted with its elementwise layers 1.3x slower, the rest as alone."""
    path = tmp_path / "p.json"
    path.write_text(json.dumps(synthetic_profile(elementwise_factor=1.3)))
    spec = SPECS / "b0_g16_lnpn_half.yaml"
    for batch, train in ((4, False), (4, True), (1, False)):
        p = predict(as_graph(spec), load_profile(path), batch)
        predicted = p.latency_ms / 1e3 if batch == 1 else p.train_s if train else p.infer_s
        assert predicted == pytest.approx(_network_law(spec, batch, train, 1.3), rel=1e-4), (batch, train)


def test_batches_beyond_the_calibration_are_refused(cli, profile_file):
    result = cli("stats", TINY, "--profile", profile_file, "--batch-size", "64")
    assert result.code == 2 and result.out == "" and result.err.count("\n") == 1
    assert "calibrated for (batch 1 to 4" in result.err and "--batch-size 64" in result.err
    assert cli("stats", TINY, "--profile", profile_file, "--batch-size", "8").code == 0


def test_a_profile_from_other_threads_is_warned_about(cli, profile_file, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    result = cli("stats", TINY, "--profile", profile_file)
    assert result.code == 0
    assert "warning: the profile was measured with 2 threads, a run here uses 3" in result.err
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert "warning" not in cli("stats", TINY, "--profile", profile_file).err


def test_group_sizes_between_measured_ones_are_interpolated(tmp_path):
    """Where the profile says G16 costs twice its law and G8 its law, a G12 layer costs what it
    would with G8 and with G16, interpolated in log G."""
    data = synthetic_profile()
    for e in data["entries"]:
        if e["kind"] == "conv" and e["group_size"] >= 16:
            e["infer_s"] = OVERHEAD + 2 * (e["infer_s"] - OVERHEAD)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    profile = load_profile(path)
    g = as_graph({"base": str(TINY), "group_size": 12, "mid_channel_rounding": "group"})
    name, d = [(n, d) for n, d in layers(g) if d["op"] == "conv" and d["group_size"] == 12][-1]

    def law_with(group_size: int) -> float:
        macs = d["macs"] * group_size // 12
        return law(4 * macs, 4 * (math.prod(d["in_shape"]) + math.prod(d["out_shape"])), False)

    w = math.log(12 / 8) / math.log(16 / 8)
    expected = law_with(8) ** (1 - w) * (2 * law_with(16)) ** w
    assert node_seconds(g, profile, 4, "infer")[name] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "content, says",
    [
        ("{not json", "not a JSON file"),
        ("[1, 2]", "not an archspec profile"),
        ('{"name": "b0", "macs": 1}', "not an archspec profile"),
        ('{"format": "archspec-profile", "version": 3}', "corrupt profile"),
        ('{"format": "archspec-profile", "version": 2}', "run `archspec profile` again"),
        ('{"format": "archspec-profile", "version": 1}', "run `archspec profile` again"),
    ],
)
def test_a_corrupt_or_foreign_profile_is_one_line(tmp_path, cli, content, says):
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(SpecError, match=says) as err:
        load_profile(path)
    assert err.value.parameter == "profile"
    result = cli("stats", TINY, "--profile", path)
    assert result.code == 2 and result.out == ""
    assert result.err.count("\n") == 1 and "--profile" in result.err and says in result.err


def test_a_profile_with_a_bad_field_names_it(tmp_path, cli, profile_file):
    data = json.loads(profile_file.read_text())
    data["entries"][3]["infer_s"] = -1
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    result = cli("stats", TINY, "--profile", path, "--json")
    assert result.code == 2 and "entries[3].infer_s" in result.err and result.err.count("\n") == 1
    missing = cli("stats", TINY, "--profile", tmp_path / "absent.json")
    assert missing.code == 2 and "no such file" in missing.err


def test_stats_profile_prints_predicted_speed(cli, profile_file):
    result = cli("stats", SPECS / "b0_g16.yaml", "--profile", profile_file, "--json")
    assert result.code == 0, result.err
    payload = json.loads(result.out)
    expected = predict(as_graph(SPECS / "b0_g16.yaml"), load_profile(profile_file), 4)
    assert payload["macs"] == archspec.stats(SPECS / "b0_g16.yaml").macs
    assert payload["predicted"]["infer_images_per_s"] == pytest.approx(expected.infer_images_per_s)
    assert payload["predicted"]["batch_size"] == 4  # the profile's, unless --batch-size says otherwise
    text = cli("stats", SPECS / "b0_g16.yaml", "--profile", profile_file, "--batch-size", "2")
    assert text.code == 0 and "images/s" in text.out and "latency" in text.out
    assert all(any(line.split()[:1] == [s] for line in text.out.splitlines()) for s in ("stem", "3", "head"))


def test_the_profile_backend_writes_what_the_predictor_reads(tmp_path):
    from archspec.backends.torch.profile import profile

    configs = [
        {
            "kind": "conv",
            "variant": "",
            "channels": 16,
            "out_channels": 16,
            "kernel": 3,
            "stride": 1,
            "group_size": 4,
            "size": 8,
        },
        {"kind": "norm", "variant": "gn", "channels": 16, "size": 8},
        {"kind": "pn", "variant": "silu", "channels": 16, "size": 8},
    ]
    ticks = []
    out = tmp_path / "p.json"
    tiny = [("tiny.yaml", {"base": str(TINY)})]
    data = profile(
        "cpu", "fp32", 2, True, configs=configs, progress=lambda i, n, _: ticks.append((i, n)), out=out, networks=tiny
    )
    assert ticks[-1] == (4, 4)
    loaded = load_profile(out)
    assert len(loaded.entries) == 3 and all(e.train_s and e.infer_s for e in loaded.entries)
    assert loaded.threads >= 1 and loaded.torch == data["torch"] and loaded.machine["cores"] >= 1
    # the network is timed whole at batch 1 (latency) and at the profile's batch, forward + backward too
    assert [(n.batch_size, n.train_s is not None) for n in loaded.calibration] == [(1, False), (2, True)]
    assert all(n.infer_s > 0 and n.spec == tiny[0][1] for n in loaded.calibration)


def test_profile_refuses_an_unwritable_out_before_measuring(cli, tmp_path):
    result = cli("profile", "--out", tmp_path / "missing" / "p.json")
    assert result.code == 2 and "--out" in result.err and result.err.count("\n") == 1


def test_bench_per_layer_has_a_row_per_node_and_adds_up(cli):
    g = as_graph(TINY)
    for mode in ((), ("--train",)):
        result = cli("bench", TINY, "--per-layer", "--batch-size", "2", "--steps", "3", "--json", *mode)
        assert result.code == 0, result.err
        p = json.loads(result.out)
        rows = {r["name"]: r for r in p["rows"]}
        assert set(rows) == {n for n, d in layers(g) if d["op"] != "input"}
        assert all(rows[n]["forward_s"] > 0 for n, d in layers(g) if d["op"] in ("conv", "norm"))
        if mode:
            assert all(rows[n]["backward_s"] > 0 for n, d in layers(g) if d["op"] in ("conv", "norm"))
        assert abs(p["sum_ratio"] - 1) <= p["tolerance"], p["sum_ratio"]
        assert p["layers_s"] == pytest.approx(sum(r["forward_s"] + r["backward_s"] for r in p["rows"]))
        assert sum(k["share"] for k in p["kinds"].values()) == pytest.approx(1)


def test_bench_per_layer_draws_the_roofline(cli, tmp_path):
    figure = tmp_path / "roofline.png"
    result = cli("bench", TINY, "--per-layer", "--batch-size", "2", "--steps", "1", "--plot", figure)
    assert result.code == 0, result.err
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "per-layer times sum to" in result.out and "tolerance" in result.out
    refused = cli("bench", TINY, "--plot", figure)
    assert refused.code == 2 and "--per-layer" in refused.err


def test_the_predictor_stays_in_the_lean_core():
    from test_structure import HEAVY, _graph

    g = _graph()
    reached = nx.descendants(g, "archspec.predict")
    assert not {m for m in reached if m.split(".")[0] in HEAVY}


def test_profile_on_a_machine_without_cuda_is_one_line(cli, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal is for machines without it")
    result = cli("profile", "--device", "cuda", "--out", tmp_path / "p.json")
    assert result.code == 2 and "CUDA is not available" in result.err and result.err.count("\n") == 1


@pytest.mark.slow
def test_profile_default_grid_feeds_the_predictor(cli, tmp_path):
    """The real command, its default grid and calibration (a few minutes on two cores) and a
    user's own network: a file the predictor reads, with every kernel class a network needs, so
    stats --profile works on any spec, and says what calibrated it."""
    from archspec.calibration import DEFAULT_COUNT

    out = tmp_path / "cpu.json"
    result = cli("profile", "--out", out, "--json", "--calibrate", SPECS / "b0_g16_ln.yaml")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    profile = load_profile(out)
    assert summary["configurations"] == len(profile.entries) and profile.train
    assert summary["calibration_networks"] == DEFAULT_COUNT + 1
    for spec in (TINY, SPECS / "b0_g1.yaml", SPECS / "b2_g16_lnpn_half.yaml"):
        p = predict(as_graph(spec), profile, 8)
        assert p.infer_images_per_s > p.train_images_per_s > 0 and p.latency_ms > 0
    stats = json.loads(cli("stats", TINY, "--profile", out, "--json").out)["predicted"]
    assert stats["calibration"]["sources"] == {"default": DEFAULT_COUNT, str(SPECS / "b0_g16_ln.yaml"): 1}
