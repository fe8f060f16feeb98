"""What a new user meets: outputs that say what they are, specs written the way a person would,
shorthands, every error findable, help without placeholders."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

import archspec
from conftest import ROOT, SPECS, run_archspec


def test_version(cli):
    result = cli("--version")
    assert result.code == 0 and result.out.strip() == f"archspec {archspec.__version__}"


def test_help_has_no_placeholders(cli):
    from typer.main import get_command

    from archspec.cli.app import app

    for name in get_command(app).commands:
        text = cli(name, "--help").out
        assert "Usage" in text, name
        assert not re.search(r"\{[a-z_]+\}|<list|<[a-z]+\[", text), (name, text)


def test_matched_spec_is_the_input_plus_the_ratio(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("ARCHSPEC_SPEC_ROOTS", str(SPECS))  # the matched spec, elsewhere, bases on a shipped one
    out = tmp_path / "elsewhere" / "matched.yaml"
    out.parent.mkdir()
    payload = json.loads(
        cli("match-flops", SPECS / "b0_g16_lnpn_half.yaml", "--target-macs", "0.5G", "--write", out, "--json").out
    )
    written = yaml.safe_load(out.read_text())
    assert "stages" not in written and written["expansion_ratio"] == payload["expansion_ratio"]
    assert written["norm"]["type"] == "ln+pn"  # the input's own fields, as written there
    assert (tmp_path / "elsewhere" / written["base"]).resolve() == (SPECS / "b0_g16.yaml").resolve()
    cost = archspec.stats(out, resolution=160)
    assert (cost.params, cost.macs) == (payload["params"], payload["macs"])


def test_sweep_says_which_rules_are_in_force(cli):
    args = ("sweep", SPECS / "b0_g16.yaml", "--group-sizes", "64", "--expansions", "2")
    spec_rules = json.loads(cli(*args, "--json").out)
    assert spec_rules["rules"] == {"group_rounding": "count", "mid_channel_rounding": "group"}
    assert spec_rules["rows"][0]["aligned_mid_channels"] > 0  # G64 moves expanded channels to multiples of 64
    table_2 = json.loads(cli(*args, "--mid-channel-rounding", "divisor", "--json").out)
    assert table_2["rules_overridden"] == ["mid_channel_rounding"] and table_2["rows"][0]["aligned_mid_channels"] == 0
    assert round(table_2["rows"][0]["params"] / 1e6, 1) == table_2["rows"][0]["paper"][0] == 6.7  # Table 2, B0 G64
    assert "rules: group_rounding count (the spec), mid_channel_rounding group (the spec)" in cli(*args).out


def test_stats_labels_what_is_per_image_and_what_is_per_batch(cli):
    text = cli("stats", SPECS / "tiny.yaml", "--batch-size", "8").out
    assert re.search(r"activations\s+[\d,]+\s+activation elements per image", text)
    assert re.search(r"activation_bytes\s+[\d,]+\s+bytes of activations for the whole batch", text)


def test_written_files_carry_no_float_noise_and_only_the_norm_fields_that_apply(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("ARCHSPEC_SPEC_ROOTS", str(SPECS))  # the spec below bases on a shipped one
    spec = tmp_path / "ln.yaml"
    spec.write_text(f"base: {SPECS / 'tiny.yaml'}\ndrop_path: 0.2\nnorm: ln\n")
    assert cli("compile", spec, "--out", tmp_path / "out").code == 0
    resolved = (tmp_path / "out" / "resolved.yaml").read_text()
    model = (tmp_path / "out" / "model.py").read_text()
    assert not re.search(r"\d\.\d*0000000000\d", resolved + model)  # e.g. 0.15000000000000002
    assert yaml.safe_load(resolved)["norm"] == {"type": "ln", "eps": 0.001}
    from archspec.spec import spec_yaml

    assert yaml.safe_load(spec_yaml(archspec.load_spec(spec)))["norm"] == {"type": "ln", "eps": 0.001}


def test_shorthands_for_norm_and_resolution(tmp_path):
    spec = tmp_path / "short.yaml"
    spec.write_text("base: efficientnet-b0\nnorm: ln+pn\nresolution: half\n")
    res = archspec.resolve(archspec.load_spec(spec))
    assert res.norm.type == "ln+pn" and res.resolution.train == 160 and res.resolution.native == 224  # Table 1


def test_all_errors_lists_every_error(tmp_path, cli):
    spec = tmp_path / "bad.yaml"
    spec.write_text("base: efficientnet-b0\nwidth_multiplier: -1\nbogus: 3\nnorm: {type: gx}\n")
    first = cli("validate", spec)
    assert first.code == 2 and len(first.err.splitlines()) == 1 and "+2 more errors" in first.err
    every = cli("validate", "--all-errors", spec)
    assert every.code == 2 and [line.split(": ")[1] for line in every.err.splitlines()] == [
        "width_multiplier",
        "bogus",
        "norm.type",
    ]


def test_validate_warns_about_incongruent_test_resolutions(tmp_path, cli):
    spec = tmp_path / "inc.yaml"
    spec.write_text("base: efficientnet-b0\nresolution: {test: [224, 225]}\n")
    result = cli("validate", spec)
    assert result.code == 0 and "test resolution 225 is not congruent" in result.err


def test_run_json_records_the_recipe_given(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("global_batch_size: 16\nsynthetic: {train_size: 64, val_size: 16, canvas: 32}\n")
    run = tmp_path / "run"
    done = run_archspec(
        "train",
        SPECS / "tiny.yaml",
        "--recipe",
        recipe,
        "--max-steps",
        "1",
        "--resolution",
        "32",
        "--out",
        run,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.code == 0, done.err
    assert json.loads((run / "run.json").read_text())["options"]["recipe"] == str(recipe)


def test_ctrl_c_says_where_the_last_checkpoint_is(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("global_batch_size: 8\ncheckpoint_every_steps: 1\nsynthetic: {train_size: 4000, canvas: 32}\n")
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "archspec.cli",
            "train",
            str(SPECS / "tiny.yaml"),
            "--recipe",
            str(recipe),
            "--resolution",
            "32",
            "--out",
            str(run),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not (run / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("archspec: interrupted at step") and "checkpoint.pt" in last and "--resume" in last, last


def test_readme_test_command_names_the_slow_tests():
    readme = (ROOT / "README.md").read_text()
    assert "python -m pytest -m slow" in readme


@pytest.mark.parametrize("spec", sorted(p.name for p in SPECS.glob("*.yaml")))
def test_shipped_specs_still_validate(cli, spec):
    assert cli("validate", SPECS / spec).code == 0
