"""`archspec export`: every format written, read back by its own runtime (onnxruntime, torch.jit.load,
torch.export.load) in this test, and compared with the eager model built here; TorchScript scripting
of every norm layer; a run's weights; bad input as one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import archspec
from conftest import SPECS

TINY = SPECS / "tiny.yaml"
# torch's notes on its own deprecations (torch.jit.script, torch.jit.load), not on archspec
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:FutureWarning")
TOLERANCE = 1e-4  # the bound on |exported - eager|, on logits
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "exported-program": ".pt2"}

# (format, ONNX exporter, --dynamic-batch): every format, both ONNX exporters, a dynamic batch in some
FORMATS = [
    ("onnx", "dynamo", True),
    ("onnx", "legacy", False),
    ("torchscript", None, False),
    ("exported-program", None, True),
]
FORMAT_IDS = ["onnx-dynamo", "onnx-legacy", "torchscript", "exported-program"]

# One small spec per norm type besides tiny's LN+PN (both block kinds, squeeze-excite, a residual
# add, grouped convs), with the activations whose paths differ: ReLU under PN takes the closed form
# (erf; the legacy exporter once failed there, on erfc), SiLU and GELU the quadrature.
SMALL = {
    "stem": {"channels": 16},
    "stages": [
        {"repeats": 1, "kernel": 3, "stride": 1, "expansion": 1, "channels": 16},
        {"repeats": 2, "kernel": 3, "stride": 2, "expansion": 4, "channels": 24},
        {"repeats": 1, "kernel": 5, "stride": 2, "expansion": 4, "channels": 32, "se_ratio": 0},
    ],
    "head": {"channels": 128, "dropout": 0.1},
    "group_size": 8,
    "num_classes": 10,
    "resolution": {"native": 64},
}
VARIANTS = {
    "bn": {"norm": "bn", "activation": "silu"},
    "gn": {"norm": {"type": "gn", "groups": 4}, "activation": "gelu"},
    "ln": {"norm": "ln", "activation": "relu"},
    "gn_pn": {"norm": "gn+pn", "activation": "relu"},
}


def _variant(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps({"name": f"small_{name}", **SMALL, **VARIANTS[name]}))  # JSON is YAML
    return path


def _loaded(fmt: str, path: Path):
    """The written file, read back by the runtime that format is for: a function of a batch, and
    whether its batch is free."""
    if fmt == "onnx":
        import onnx
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        dim = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0]
        return (lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])), dim.HasField("dim_param")
    if fmt == "torchscript":
        return torch.jit.load(str(path)), True
    program = torch.export.load(str(path))
    (name,) = program.graph_signature.user_inputs
    size = next(n for n in program.graph.nodes if n.name == name).meta["val"].shape[0]
    return program.module(), not isinstance(size, int)  # a free dimension is a SymInt


def _exported(cli, source: Path, fmt: str, exporter, dynamic: bool, out: Path, *extra: str) -> dict:
    args = ["export", source, "--format", fmt, "--out", out, "--json", *extra]
    args += ["--exporter", exporter] if exporter else []
    args += ["--dynamic-batch"] if dynamic else []
    result = cli(*args)
    assert result.code == 0, result.err
    return json.loads(result.out)


def _difference(run, model, resolution: int, batch: int) -> float:
    """|file - eager| on a batch of our own."""
    x = torch.randn(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        return float((run(x) - model.eval()(x)).abs().max())


def _assert_exports(cli, spec: Path, fmt: str, exporter, dynamic: bool, out: Path) -> dict:
    payload = _exported(cli, spec, fmt, exporter, dynamic, out, "--resolution", "64")
    assert out.is_file() and payload["out"] == str(out) and payload["bytes"] == out.stat().st_size
    assert payload["ok"] and payload["max_abs_diff"] <= TOLERANCE, payload
    free = dynamic or fmt == "torchscript"
    assert len(payload["checks"]) == (2 if free else 1) and payload["dynamic_batch"] == free
    run, batch_is_free = _loaded(fmt, out)
    assert batch_is_free == free
    # our own check, with the eager model built here, on a batch the command did not use
    model = archspec.build_model(spec, seed=0)
    assert _difference(run, model, 64, 5 if free else 1) <= TOLERANCE
    return payload


@pytest.mark.parametrize(("fmt", "exporter", "dynamic"), FORMATS, ids=FORMAT_IDS)
def test_tiny_in_every_format_agrees_with_eager(tmp_path, cli, fmt, exporter, dynamic):
    payload = _assert_exports(cli, TINY, fmt, exporter, dynamic, tmp_path / f"tiny{SUFFIX[fmt]}")
    assert payload["weights"] == "initial" and payload["resolution"] == 64
    if fmt == "onnx":
        assert payload["exporter"] == exporter and payload["opset"] >= 17


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize(("fmt", "exporter", "dynamic"), FORMATS, ids=FORMAT_IDS)
def test_every_norm_type_in_every_format_agrees_with_eager(tmp_path, cli, variant, fmt, exporter, dynamic):
    # the batch is fixed here where it is free for tiny, and free where fixed
    _assert_exports(cli, _variant(tmp_path, variant), fmt, exporter, not dynamic, tmp_path / f"m{SUFFIX[fmt]}")


@pytest.mark.parametrize("activation", ["silu", "relu", "gelu"])
@pytest.mark.parametrize("norm", ["bn", "gn", "ln", "gn+pn", "ln+pn"])
def test_every_norm_layer_scripts_to_the_same_function(norm, activation):
    from archspec.backends.torch.norms import norm_act

    kind, proxy = norm.removesuffix("+pn"), norm.endswith("+pn")
    layer = norm_act(24, kind, activation=activation, proxy=proxy).eval()
    with torch.no_grad():
        for p in layer.parameters():  # away from the initial gamma = 1, beta = 0
            p.add_(torch.randn_like(p) * 0.5)
    scripted = torch.jit.script(layer)
    x = torch.randn(3, 24, 5, 5)
    with torch.no_grad():
        assert torch.equal(scripted(x), layer(x))


def test_the_generated_standalone_model_scripts(tmp_path, cli):
    """compile --out's model.py carries the same classes: it scripts too."""
    import importlib.util

    assert cli("compile", _variant(tmp_path, "gn_pn"), "--out", tmp_path).code == 0
    spec = importlib.util.spec_from_file_location("generated_small", tmp_path / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.build().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(torch.jit.script(model)(x), model(x))


# ---------------------------------------------------------------------------------------------
# a run directory: its weights
# ---------------------------------------------------------------------------------------------

RECIPE = """\
epochs: 1
global_batch_size: 16
optimizer: {lr: 0.05}
schedule: {warmup_epochs: 0}
checkpoint_every_steps: 2
log_every_steps: 100
synthetic: {train_size: 64, val_size: 16, canvas: 64}
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A small LN+PN network trained a few steps at 48 px (so that EMA and raw weights differ), then
    fine-tuned at 64 px (3 stride-2 layers: 64 = 48 mod 8)."""
    from archspec.cli.app import main

    root = tmp_path_factory.mktemp("export-run")
    (root / "recipe.yaml").write_text(RECIPE)
    spec = root / "small.yaml"
    spec.write_text(json.dumps({"name": "small", **SMALL, "norm": "ln+pn"}))
    run = root / "run"
    commands = [
        ["train", spec, "--recipe", root / "recipe.yaml", "--resolution", "48", "--max-steps", "3", "--out", run],
        ["finetune", run, "--resolution", "64", "--blocks", "1", "--max-steps", "1"],
    ]
    for args in commands:
        with pytest.raises(SystemExit) as exit_:
            main([str(a) for a in args])
        assert exit_.value.code == 0
    return run


def _run_model(run: Path, file: str):
    from archspec.runner.checkpoint import model_with_weights

    return model_with_weights(archspec.load_spec(run / "spec.yaml"), run / file, "weights", torch.device("cpu"))


@pytest.mark.parametrize(
    ("flags", "resolution", "file"),
    [
        ([], 48, "ema.pt"),  # by default: the run's training resolution, its EMA weights
        (["--weights", "raw"], 48, "checkpoint.pt"),
        (["--resolution", "64"], 64, "finetuned-r64.pt"),  # auto: eval's choice at 64 px, its fine-tune
        (["--resolution", "64", "--weights", "ema"], 64, "ema.pt"),
    ],
)
def test_a_run_exports_the_weights_eval_would_use(tmp_path, cli, run_dir, flags, resolution, file):
    out = tmp_path / "run.pt"
    payload = _exported(cli, run_dir, "torchscript", None, False, out, *flags)
    assert (payload["kind"], payload["resolution"], payload["weights_file"]) == ("run", resolution, file)
    assert payload["ok"]
    run, _ = _loaded("torchscript", out)
    assert _difference(run, _run_model(run_dir, file), resolution, 2) <= TOLERANCE
    for other in {"ema.pt", "checkpoint.pt", "finetuned-r64.pt"} - {file}:  # and not the others
        assert _difference(run, _run_model(run_dir, other), resolution, 2) > TOLERANCE, other


def test_text_output_names_the_file_the_weights_and_the_difference(tmp_path, cli, run_dir):
    out = tmp_path / "m.onnx"
    result = cli("export", run_dir, "--format", "onnx", "--exporter", "legacy", "--out", out)
    assert result.code == 0, result.err
    for words in (str(out), "ONNX opset", "ema.pt", "onnxruntime", "largest |difference|", "within the tolerance"):
        assert words in result.out, result.out


def test_a_difference_over_the_tolerance_fails_with_status_1(tmp_path, cli):
    out = tmp_path / "m.onnx"
    result = cli("export", _variant(tmp_path, "gn"), "--format", "onnx", "--exporter", "legacy", "--out", out,
                 "--tolerance", "1e-12")  # fmt: skip
    assert result.code == 1 and "more than the tolerance" in result.err, result
    assert len(result.err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# bad input: one line on stderr, status 2, nothing written
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unknown-format", "--format"),
        ("no-format", "--format"),
        ("out-dir-missing", "--out: "),
        ("out-is-a-directory", "is a directory"),
        ("program-not-pt2", "--out: "),
        ("not-a-run", "not a run directory"),
        ("spec-with-weights", "--weights: a spec has no trained weights"),
        ("exporter-without-onnx", "--exporter: "),
        ("tiny-resolution", "--resolution: must be from"),
        ("named-resolution", "--resolution: expected a pixel count"),
        ("missing-spec", "nope.yaml"),
        ("zero-tolerance", "--tolerance: must be positive"),
        ("no-fine-tune-there", "--weights: "),
        ("unreadable-weights", "SOURCE: "),
    ],
)
def test_bad_input_is_one_line(tmp_path, cli, run_dir, case, expected):
    import shutil

    out = tmp_path / "m.onnx"
    base = ["export", TINY, "--format", "onnx", "--out", out]
    args = {
        "unknown-format": ["export", TINY, "--format", "tflite"],
        "no-format": ["export", TINY],
        "out-dir-missing": [*base[:-1], tmp_path / "missing" / "m.onnx"],
        "out-is-a-directory": [*base[:-1], tmp_path],
        "program-not-pt2": ["export", TINY, "--format", "exported-program", "--out", out],
        "not-a-run": ["export", tmp_path, "--format", "onnx", "--out", out],
        "spec-with-weights": [*base, "--weights", "ema"],
        "exporter-without-onnx": ["export", TINY, "--format", "torchscript", "--exporter", "legacy"],
        "tiny-resolution": [*base, "--resolution", "4"],
        "named-resolution": [*base, "--resolution", "big"],
        "missing-spec": ["export", tmp_path / "nope.yaml", "--format", "onnx", "--out", out],
        "zero-tolerance": [*base, "--tolerance", "0"],
        "no-fine-tune-there": ["export", run_dir, "--format", "onnx", "--weights", "finetuned", "--out", out],
    }.get(case)
    if case == "unreadable-weights":
        run = tmp_path / "run"
        shutil.copytree(run_dir, run)
        (run / "ema.pt").write_bytes(b"not a checkpoint")
        args = ["export", run, "--format", "onnx", "--out", out]
    result = cli(*args)
    assert result.code == 2, result
    assert len(result.err.strip().splitlines()) == 1 and expected in result.err, result.err
    assert "Traceback" not in result.err and not out.exists()


def test_without_the_export_extra_onnx_says_which_extra(tmp_path, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an install without it looks like to import
    result = cli("export", TINY, "--format", "onnx", "--out", tmp_path / "m.onnx")
    assert result.code == 2 and "archspec[export]" in result.err, result
    assert not (tmp_path / "m.onnx").exists()


# ---------------------------------------------------------------------------------------------
# every shipped spec, every format (slow)
# ---------------------------------------------------------------------------------------------

SHIPPED = sorted(SPECS.glob("*.yaml"))
SLOW_FORMATS = [("onnx", "dynamo"), ("torchscript", None), ("exported-program", None)]


def _export_here(args: list[str]) -> tuple[int, str, str]:
    """One `archspec export`, in this (worker) process: its status, stdout and stderr."""
    import contextlib
    import io

    from archspec.cli.app import run_command

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_command(args)
    Path(args[args.index("--out") + 1]).unlink(missing_ok=True)  # B5's files are 100+ MB each
    return code, out.getvalue(), err.getvalue()


def _one_thread() -> None:
    torch.set_num_threads(1)  # two workers on two cores


def _cost(spec: Path, fmt: str) -> float:
    """A guess at an export's time, to start the longest first: tracing goes by the number of
    operations, which proxy norm multiplies."""
    res = archspec.resolve(archspec.load_spec(spec))
    return len(res.blocks) * (4 if res.norm.proxy else 1) * {"onnx": 3, "exported-program": 2}.get(fmt, 0.5)


@pytest.mark.slow
def test_every_shipped_spec_in_every_format_agrees_with_eager(tmp_path):
    """At 64 px; the ONNX files by torch's default exporter (the legacy one is in the default run),
    half of them with a free batch. Two worker processes, each exporting one file after another
    (exporting is single-threaded Python), the longest first."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    cases = sorted(
        ((spec, fmt, exporter) for spec in SHIPPED for fmt, exporter in SLOW_FORMATS),
        key=lambda case: -_cost(case[0], case[1]),
    )
    commands = []
    for i, (spec, fmt, exporter) in enumerate(cases):
        out = tmp_path / f"{spec.stem}-{fmt}{SUFFIX[fmt]}"
        args = ["export", str(spec), "--format", fmt, "--resolution", "64", "--out", str(out), "--json"]
        commands.append(args + (["--exporter", exporter] if exporter else []) + (["--dynamic-batch"] * (i % 2)))
    spawn = multiprocessing.get_context("spawn")  # not fork: torch's thread pools do not survive it
    with ProcessPoolExecutor(max_workers=2, mp_context=spawn, initializer=_one_thread) as pool:
        results = list(pool.map(_export_here, commands))
    failed = {" ".join(args[1:4]): err[-800:] for args, (code, _, err) in zip(commands, results) if code != 0}
    assert not failed, failed
    for (spec, fmt, _), (_, out, _) in zip(cases, results):
        payload = json.loads(out)
        assert payload["ok"] and payload["max_abs_diff"] <= TOLERANCE, (spec.stem, fmt, payload["max_abs_diff"])
    assert len(results) == len(SHIPPED) * len(SLOW_FORMATS) >= 19 * 3
