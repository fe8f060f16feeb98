"""The command line: compile, stats, schema and the one-line error contract."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

import archspec
from conftest import ROOT, SPECS, TABLE_2, run_archspec, torch_counts


def test_compile_prints_the_summary(cli):
    result = cli("compile", SPECS / "b0_g16.yaml")
    assert result.code == 0, result.err
    params, macs = torch_counts(SPECS / "b0_g16.yaml", 224)
    assert f"{params:,} params" in result.out and f"{macs:,} MACs" in result.out
    for stage in ["stem", *map(str, range(7)), "head", "total"]:
        assert any(line.startswith(stage) for line in result.out.splitlines()), stage


def test_compile_lists_rounded_layers(cli):
    result = cli("compile", SPECS / "b5_g16.yaml")
    # the spec rounds group counts: 24 channels want 1.5 groups of 16; the tie goes to one group of 24
    assert "group_rounding: count" in result.out
    assert "blocks.0.1.conv_dw: group size (of 24 channels) 16 -> 24" in result.out
    assert "16-24*" in result.out


def test_compile_out_writes_resolved_yaml_and_report(tmp_path, cli):
    out = tmp_path / "b2"
    result = cli("compile", SPECS / "b2_g16.yaml", "--out", out)
    assert result.code == 0, result.err
    resolved = yaml.safe_load((out / "resolved.yaml").read_text())
    report = json.loads((out / "report.json").read_text())
    res = archspec.resolve(archspec.load_spec(SPECS / "b2_g16.yaml"))
    assert len(resolved["blocks"]) == len(res.blocks)
    assert [b["group_size"] for b in resolved["blocks"]] == [b.group_size for b in res.blocks]
    params, macs = torch_counts(SPECS / "b2_g16.yaml", 260)
    assert (report["totals"]["params"], report["totals"]["macs"]) == (params, macs)
    assert sum(layer["params"] for layer in report["layers"]) == params
    assert not list(out.glob(".*.tmp"))


def test_compile_json_is_one_object_on_stdout(cli):
    result = cli("compile", "efficientnet-b0", "--json", "--batch-size", "8")
    report = json.loads(result.out)
    assert report["batch_size"] == 8
    assert report["totals"]["activation_bytes"] == 8 * 4 * report["totals"]["activations"]
    assert [row["stage"] for row in report["stages"]] == ["stem", 0, 1, 2, 3, 4, 5, 6, "head"]


def test_stats_json_contract(cli):
    result = cli("stats", SPECS / "b5_g16.yaml", "--resolution", "half", "--json")
    payload = json.loads(result.out)
    params, macs = torch_counts(SPECS / "b5_g16.yaml", 328)  # 328 px: B5's half resolution, Table 1
    assert payload["resolution"] == 328
    assert (payload["params"], payload["macs"], payload["flops"]) == (params, macs, 2 * macs)
    assert payload["activation_bytes"] == 4 * payload["activations"]  # fp32, batch 1


def test_stats_resolution_changes_macs_not_params(cli):
    small = json.loads(cli("stats", "efficientnet-b0", "--resolution", "112", "--json").out)
    large = json.loads(cli("stats", "efficientnet-b0", "--resolution", "224", "--json").out)
    assert small["params"] == large["params"] and small["macs"] < large["macs"]


def test_schema_is_json_schema_with_every_field(cli):
    schema = json.loads(cli("schema").out)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert set(archspec.ModelSpec.model_fields) <= set(schema["properties"])
    assert schema["additionalProperties"] is False


def test_bad_flag_values_are_one_line(cli):
    for args, expected in [
        (("stats", "efficientnet-b0", "--resolution", "big"), "--resolution: expected a pixel count"),
        (("stats", "efficientnet-b0", "--resolution", "5"), "--resolution: must be from 8 to 4096"),
        (("compile", "efficientnet-b0", "--batch-size", "0"), "archspec compile: Invalid value for '--batch-size'"),
        (("compile", "efficientnet-b0", "--bogus"), "archspec compile: No such option: --bogus"),
        (("frobnicate",), "archspec: No such command 'frobnicate'"),
    ]:
        result = cli(*args)
        assert result.code == 2, args
        assert len(result.err.splitlines()) == 1 and expected in result.err, result.err


def test_unwritable_out_is_one_line(tmp_path, cli):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = cli("compile", "efficientnet-b0", "--out", blocker / "sub")
    assert result.code == 2 and len(result.err.splitlines()) == 1 and "--out" in result.err


def test_help_works_for_every_command(cli):
    for command in ("validate", "schema", "compile", "stats"):
        result = cli(command, "--help")
        assert result.code == 0 and "Usage" in result.out


def test_console_script_runs_in_a_fresh_interpreter():
    result = run_archspec("stats", "specs/b0_g1.yaml", "--json")
    assert result.code == 0, result.err
    assert round(json.loads(result.out)["params"] / 1e6, 1) == TABLE_2[(0, 1, 6)][0]  # B0, G1, E6: 5.3 M


def test_validate_and_stats_do_not_import_torch():
    probe = (
        "import sys; from archspec.cli.app import main\n"
        "for args in (['validate', 'specs/b5_g16.yaml'], ['stats', 'specs/b5_g16.yaml', '--json']):\n"
        "    try:\n        main(args)\n"
        "    except SystemExit:\n        pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
