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
# the law the synthetic profile follows: a layer takes a fixed cost + per MAC + per element moved;
# a network's step pays the Python between its layers and its own overhead on top
FIXED, PER_MAC, PER_ELEMENT = 10e-6, 1e-10, 2e-9
PER_LAYER_GAP, STEP_OVERHEAD = 3e-6, 20e-6


def law(macs: float, elements: float, train: bool) -> float:
    return (3 if train else 1) * (FIXED + PER_MAC * macs + PER_ELEMENT * elements)


# the networks whose layers the synthetic profile holds (group sizes 1-32, every norm): the specs
# the predictor is checked on below are not among them. Their resolutions (px/4 odd) give the
# stride-2 convs odd inputs, where 'same' padding rounds up and MACs and elements moved part ways
# (at even sizes the two are proportional and a fit cannot tell them apart).
CALIBRATION = [
    {"base": str(TINY), "group_size": g, "resolution": {"train": px}, "norm": {"type": norm}}
    for g, px, norm in (
        (1, 100, "bn"),
        (2, 116, "gn"),
        (4, 132, "ln+pn"),
        (8, 84, "gn+pn"),
        (16, 148, "ln"),
        (32, 68, "frn"),
        (1, 224, "bn"),
        (16, 72, "gn+pn"),
    )
] + [{"base": str(SPECS / "b1_g1.yaml"), "resolution": {"train": 96}, "drop_path": 0.2}]


def _layer_entries(spec, batch: int, train: bool) -> list[dict]:
    """The profile entries `archspec profile` would write for the layers of `spec`, timed by the law."""
    from archspec.predict import node_shapes, shape_entry

    out = []
    for _, d in layers(as_graph(spec)):
        for mode in ("infer", "train") if train else ("infer",):
            for shape in node_shapes(d, batch, mode):
                out.append({**shape_entry(shape), f"{mode}_s": _shape_law(shape, mode == "train")})
    return out


def _shape_law(shape, train: bool) -> float:
    """The law of one kernel class's call, from its shape."""
    elements = shape.batch * shape.height * shape.width * shape.cin
    if shape.kind.value in ("conv", "conv1x1", "stem"):
        out = shape.out_pixels * shape.cout
        return law(shape.out_pixels * shape.cout * shape.group_size * shape.kernel**2, elements + out, train)
    if shape.kind.value == "linear":
        return law(shape.batch * shape.cin * shape.cout, 0, train)
    return law(0, elements, train)


def _network_law(spec, batch: int, train: bool) -> float:
    nodes = [d for _, d in layers(as_graph(spec)) if d["op"] != "input"]
    return sum(_node_law(d, batch, train) + PER_LAYER_GAP for d in nodes) + STEP_OVERHEAD


def synthetic_profile(batch: int = 4) -> dict:
    from archspec.backends.torch.profile import FORMAT, VERSION

    entries, networks = [], []
    for spec in CALIBRATION:
        for b in (1, batch):
            entries += _layer_entries(spec, b, train=b > 1)
            row = {"source": "test", "spec": spec, "batch_size": b}
            row |= {"infer_s": _network_law(spec, b, False), "infer_spread": 0.01}
            if b > 1:
                row |= {"train_s": _network_law(spec, b, True), "train_spread": 0.01}
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
        "allocator": "synthetic",
        "seconds": 0.0,
        "peaks": {"gflops": 100.0, "gbps": 10.0},
        "entries": entries,
        "calibration": networks,
        "noise": {"networks": 0.01},
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
    # beyond the largest calibrated batch (4) the nearest batch's calibration holds
    assert p.infer_s == pytest.approx(_network_law(SPECS / "b0_g16.yaml", 8, False), rel=1e-6)


def test_the_calibration_learns_what_the_layers_miss_of_a_step(profile_file):
    """The calibration networks' whole steps pay the Python between layers and the step's own
    overhead, which no layer's time holds: a network the calibration never saw is predicted with
    both, once per layer and once per step."""
    spec = SPECS / "b0_g16_lnpn_half.yaml"
    g = as_graph(spec)
    profile = load_profile(profile_file)
    for batch, train in ((4, False), (4, True), (1, False)):
        p = predict(g, profile, batch)
        predicted = p.latency_ms / 1e3 if batch == 1 else p.train_s if train else p.infer_s
        layers_s = node_seconds(g, profile, batch, "train" if train else "infer")
        assert predicted == pytest.approx(_network_law(spec, batch, train), rel=1e-6), (batch, train)
        assert predicted - sum(layers_s.values()) == pytest.approx(len(layers_s) * PER_LAYER_GAP + STEP_OVERHEAD)


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
    """Where the profile's convs with G >= 16 run twice their law and the rest at it, a G12 layer
    (no calibration network has one) is predicted between its law and twice it, and each measured
    group size keeps its own: a G16 layer nearer twice its law than a G8 layer is."""
    data = synthetic_profile()
    for e in data["entries"]:
        if e["kind"] == "conv" and e["group_size"] >= 16 and "infer_s" in e:
            e["infer_s"] = 2 * e["infer_s"]
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    profile = load_profile(path)

    def over_law(group_size: int) -> float:
        g = as_graph({"base": str(TINY), "group_size": group_size, "mid_channel_rounding": "group"})
        name, d = [(n, d) for n, d in layers(g) if d["op"] == "conv" and d["group_size"] == group_size][-1]
        return node_seconds(g, profile, 4, "infer")[name] / _node_law(d, 4, False)

    assert 1 < over_law(12) < 2
    assert over_law(8) < 1.25 and over_law(16) > 1.75


def test_layers_of_one_shape_count_once_at_their_median(tmp_path):
    """Three layers of one shape timed at 1x, 2x and 4x the law (a stage's repeated blocks, one of
    them slowed): a layer of that shape is predicted at their median, 2x, whichever is listed first."""
    data = synthetic_profile()
    spec = CALIBRATION[0]
    name, d = next((n, d) for n, d in layers(as_graph(spec)) if d["op"] == "conv" and d["role"] == "spatial")
    entry = next(e for e in _layer_entries(spec, 4, train=False) if e["kind"] == "conv")
    assert entry["channels"] == d["in_channels"]
    data["entries"] = [
        {**entry, "infer_s": 4 * entry["infer_s"]},
        *data["entries"],
        {**entry, "infer_s": 2 * entry["infer_s"]},
    ]
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    predicted = node_seconds(as_graph(spec), load_profile(path), 4, "infer")[name]
    assert predicted == pytest.approx(2 * _node_law(d, 4, False), rel=1e-6)


@pytest.mark.parametrize(
    "content, says",
    [
        ("{not json", "not a JSON file"),
        ("[1, 2]", "not an archspec profile"),
        ('{"name": "b0", "macs": 1}', "not an archspec profile"),
        ('{"format": "archspec-profile", "version": 4}', "corrupt profile"),
        ('{"format": "archspec-profile", "version": 3}', "run `archspec profile` again"),
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
    """Every layer of a calibration network, timed inside it at batch 1 and at the profile's batch
    (forward + backward too), as entries the predictor reads; the network's whole steps beside them."""
    from archspec.backends.torch.profile import profile
    from archspec.predict import node_shapes

    ticks = []
    out = tmp_path / "p.json"
    tiny = [("tiny.yaml", {"base": str(TINY)})]
    data = profile("cpu", "fp32", 2, True, progress=lambda i, n, _: ticks.append((i, n)), out=out, networks=tiny)
    assert ticks[-1] == (1, 1)
    loaded = load_profile(out)
    assert loaded.threads >= 1 and loaded.torch == data["torch"] and loaded.machine["cores"] >= 1
    g = as_graph(TINY)
    for batch, mode in ((1, "infer"), (2, "infer"), (2, "train")):
        expected = [(s.kind, s.cin, s.height) for _, d in layers(g) for s in node_shapes(d, batch, mode)]
        entries = [e for e in loaded.entries if e.batch_size == batch and getattr(e, f"{mode}_s")]
        timed = [(e.kind, e.channels, e.size) for e in entries]
        assert sorted(timed) == sorted(expected), (batch, mode)
    # the network is timed whole at batch 1 (latency) and at the profile's batch, forward + backward too
    assert [(n.batch_size, n.train_s is not None) for n in loaded.calibration] == [(1, False), (2, True)]
    assert all(n.infer_s > 0 and n.spec == tiny[0][1] for n in loaded.calibration)


def test_calibrate_merges_modes_and_takes_the_hooks_cost_off_each_layer(monkeypatch):
    """With layer times set by hand: a layer's forward and forward + backward are one entry where
    its kernel class is the same in both (a residual add with drop-path is two), a proxy norm is
    split into its norm and its PN part, and the hooked steps' excess over the plain ones is taken
    off the nodes evenly."""
    from archspec.backends.torch import profile as P
    from archspec.backends.torch.bench import LayerTimes

    spec = {"base": str(TINY), "drop_path": 0.2}
    g = as_graph(spec)
    nodes = [n for n, d in layers(g) if d["op"] != "input"]
    forward, backward, pn, plain, hook = 1e-3, 2e-3, 0.4e-3, 0.5, 1e-4

    def fake(g_, device, batch, train, steps, clock, warmup):
        proxy = {n for n, d in layers(g_) if d["op"] == "norm" and d["proxy"]}
        times = {n: (forward, backward if train else 0.0, pn if n in proxy else 0.0) for n in nodes}
        return LayerTimes(times, [plain] * 3, [plain + hook * len(nodes)] * 3, [0.0] * 3)

    monkeypatch.setattr(P, "layer_times", fake)
    entries, networks = P.calibrate([("t", spec)], "cpu", 2, True)
    assert [(n["batch_size"], n["infer_s"], n.get("train_s")) for n in networks] == [
        (1, plain, None),
        (2, plain, plain),
    ]
    at2 = [e for e in entries if e["batch_size"] == 2]
    convs = [e for e in at2 if e["kind"] == "conv"]
    assert convs and all(e["infer_s"] == pytest.approx(forward - hook) for e in convs)
    assert all(e["train_s"] == pytest.approx(forward + backward - hook) for e in convs)
    adds = {e["kind"]: e for e in at2 if e["kind"] in ("add", "droppath_add")}
    assert "train_s" not in adds["add"] and "infer_s" not in adds["droppath_add"]
    # a proxy norm's node: norm and PN in proportion to what each took, the hooks' share off both
    kept = (forward - hook) / forward
    pns, norms = ([e["infer_s"] for e in at2 if e["kind"] == kind] for kind in ("pn", "norm"))
    assert pns and pns == pytest.approx([pn * kept] * len(pns))
    # the norms PN follows, and those it does not (no activation after them)
    plain_norms = len(norms) - len(pns)
    expected = [(forward - pn) * kept] * len(pns) + [forward * kept] * plain_norms
    assert sorted(norms) == pytest.approx(sorted(expected))


def test_profile_refuses_an_unwritable_out_before_measuring(cli, tmp_path):
    result = cli("profile", "--out", tmp_path / "missing" / "p.json")
    assert result.code == 2 and "--out" in result.err and result.err.count("\n") == 1


def test_profile_refuses_a_dtype_the_step_does_not_compute_in(cli, tmp_path):
    """A profile predicts `bench`'s step, which computes in fp32 on a CPU: a bf16 profile of it
    would be labelled with what it did not measure."""
    result = cli("profile", "--dtype", "bf16", "--out", tmp_path / "p.json")
    assert result.code == 2 and result.err.count("\n") == 1
    assert "--dtype" in result.err and "in fp32 on cpu; got bf16" in result.err
    assert not (tmp_path / "p.json").exists()


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
def test_profile_default_feeds_the_predictor(cli, tmp_path):
    """The real command, its default calibration networks (a few minutes on two cores) and a
    user's own network: a file the predictor reads, with every kernel class a network needs, so
    stats --profile works on any spec, and says what calibrated it."""
    from archspec.calibration import DEFAULT_COUNT

    out = tmp_path / "cpu.json"
    result = cli("profile", "--out", out, "--json", "--calibrate", SPECS / "b0_g16_ln.yaml")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    profile = load_profile(out)
    assert summary["layers"] == len(profile.entries) and profile.train
    assert summary["calibration_networks"] == DEFAULT_COUNT + 1
    for spec in (TINY, SPECS / "b0_g1.yaml", SPECS / "b2_g16_lnpn_half.yaml"):
        p = predict(as_graph(spec), profile, 8)
        assert p.infer_images_per_s > p.train_images_per_s > 0 and p.latency_ms > 0
    stats = json.loads(cli("stats", TINY, "--profile", out, "--json").out)["predicted"]
    assert stats["calibration"]["sources"] == {"default": DEFAULT_COUNT, str(SPECS / "b0_g16_ln.yaml"): 1}
