"""Generated standalone source (DIR/model.py): same parameters and logits as the live model, in an
interpreter where archspec cannot be imported; and no way for a spec to inject code into it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import torch

import archspec
from conftest import SPECS

CHECK = r"""
import importlib.util, json, sys
sys.modules["archspec"] = None  # importing archspec now fails: the generated files must not need it
import torch
results = {}
for case in json.loads(sys.argv[1]):
    spec = importlib.util.spec_from_file_location("generated_" + case["name"], case["model"])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if "weights" not in case:  # a large model: its parameter names and shapes, built on no device
        with torch.device("meta"):
            model = module.build()
        results[case["name"]] = {name: list(p.shape) for name, p in model.state_dict().items()}
        continue
    model = module.build().eval()
    model.load_state_dict(torch.load(case["weights"], weights_only=True), strict=True)
    x, expected = torch.load(case["io"], weights_only=True)
    with torch.no_grad():
        logits = model(x)
    results[case["name"]] = (logits - expected).abs().max().item()
print(json.dumps(results))
"""
# B0-sized specs and the tiny one cover every layer kind and norm; the larger ones add only size
WITH_WEIGHTS = {"tiny", "b0_g1", "b0_g16", "b0_g16_lnpn_half"}


def test_every_shipped_spec_round_trips_through_generated_source(tmp_path, cli):
    cases, shapes = [], {}
    for path in sorted(SPECS.glob("*.yaml")):
        out = tmp_path / path.stem
        assert cli("compile", path, "--out", out).code == 0
        case = {"name": path.stem, "model": str(out / "model.py")}
        if path.stem in WITH_WEIGHTS:
            model = archspec.build_model(path, seed=1).eval()
            x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
            with torch.no_grad():
                logits = model(x)
            torch.save(model.state_dict(), out / "weights.pt")
            torch.save((x, logits), out / "io.pt")
            case.update(weights=str(out / "weights.pt"), io=str(out / "io.pt"))
        else:
            with torch.device("meta"):
                shapes[path.stem] = {k: list(v.shape) for k, v in archspec.build_model(path).state_dict().items()}
        cases.append(case)
    proc = subprocess.run(
        [sys.executable, "-c", CHECK, json.dumps(cases)], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert set(results) == {c["name"] for c in cases} and len(cases) >= 19
    differences = {name: results[name] for name in WITH_WEIGHTS}
    assert max(differences.values()) <= 1e-6, differences
    for name, expected in shapes.items():
        assert results[name] == expected, name


def test_generated_source_is_readable(tmp_path, cli):
    cli("compile", SPECS / "b0_g16.yaml", "--out", tmp_path)
    source = (tmp_path / "model.py").read_text()
    tree = ast.parse(source)
    imports = {
        a.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for a in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
    }
    assert imports == {"math", "torch"}
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert {"GroupNormAct", "SqueezeExcite", "DepthwiseSeparable", "InvertedResidual", "EfficientNet"} <= classes
    assert "# stage 3: 40x28x28 -> 80x14x14, 3 blocks," in source
    assert source.count("nn.Sequential(") == 1 + 7  # the stages, plus the Sequential of stages


HOSTILE_DESCRIPTION = 'a """ quote\n\' " \\ \n"""; import os; os.system("touch PWNED") #\x00\x1b[31m'


def test_spec_strings_cannot_inject_code(tmp_path, cli):
    spec = tmp_path / "evil.yaml"
    spec.write_text(
        "base: efficientnet-b0\nwidth_multiplier: 0.25\ndescription: " + json.dumps(HOSTILE_DESCRIPTION) + "\n"
    )
    out = tmp_path / "out"
    result = cli("compile", spec, "--out", out)
    assert result.code == 0, result.err
    source = (out / "model.py").read_text()
    ast.parse(source)
    run = subprocess.run([sys.executable, str(out / "model.py")], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert not (tmp_path / "PWNED").exists()
    namespace: dict = {}
    exec(compile(source, "model.py", "exec"), namespace)
    assert namespace["SPEC"]["description"] == HOSTILE_DESCRIPTION
    assert not (tmp_path / "PWNED").exists()


def test_a_name_holding_code_is_refused(tmp_path, cli):
    spec = tmp_path / "evil.yaml"
    spec.write_text('base: efficientnet-b0\nname: "x\\"\\nimport os\\nos.system(\'touch PWNED\')"\n')
    result = cli("compile", spec, "--out", tmp_path / "out")
    assert result.code == 2 and len(result.err.splitlines()) == 1 and "name: must be letters" in result.err
    assert not (tmp_path / "out").exists()
