"""archspec bench: measured throughput, and the timm comparison only where the networks are equal."""

from __future__ import annotations

import json

import archspec
from conftest import SPECS


def test_bench_json(cli):
    payload = json.loads(
        cli("bench", SPECS / "tiny.yaml", "--steps", "1", "--batch-size", "2", "--train", "--json").out
    )
    assert payload["mode"] == "train" and payload["resolution"] == 64
    assert payload["params"] == archspec.stats(SPECS / "tiny.yaml").params
    assert payload["archspec"]["images_per_s"] > 0


def test_bench_against_timm_only_for_the_same_network(cli):
    same = json.loads(
        cli(
            "bench", "efficientnet-b0", "--resolution", "32", "--steps", "1", "--batch-size", "1", "--vs-timm", "--json"
        ).out
    )
    assert same["timm_note"] == "timm efficientnet_b0, group_size=1" and same["timm"]["images_per_s"] > 0
    other = json.loads(
        cli(
            "bench",
            SPECS / "b0_g16.yaml",
            "--resolution",
            "32",
            "--steps",
            "1",
            "--batch-size",
            "1",
            "--vs-timm",
            "--json",
        ).out
    )
    assert "timm" not in other and "not the same network" in other["timm_note"]


def test_bench_bad_input(cli):
    result = cli("bench", SPECS / "tiny.yaml", "--device", "tpu")
    assert (
        result.code == 2
        and "Invalid value for '--device': Value error, 'tpu' is not one of 'cpu', 'cuda'" in result.err
    )


def test_bench_uses_the_spec_input_channels_and_classes(cli, tmp_path):
    spec = tmp_path / "gray.yaml"
    spec.write_text(f"base: {SPECS / 'tiny.yaml'}\nin_channels: 1\nnum_classes: 2\n")
    result = cli("bench", spec, "--steps", "1", "--batch-size", "2", "--train", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["params"] == archspec.stats(spec).params
