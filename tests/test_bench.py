"""archspec bench: measured throughput, and the timm comparison only where the networks are equal."""

from __future__ import annotations

import json

import pytest

import archspec
from conftest import SPECS


def test_bench_json(cli):
    payload = json.loads(
        cli("bench", SPECS / "tiny.yaml", "--steps", "1", "--batch-size", "2", "--train", "--json").out
    )
    assert payload["mode"] == "train" and payload["resolution"] == 64
    assert payload["params"] == archspec.stats(SPECS / "tiny.yaml").params
    assert payload["archspec"]["images_per_s"] > 0


def _vs_timm(cli, spec) -> dict:
    args = ("--resolution", "32", "--steps", "1", "--batch-size", "1", "--vs-timm", "--json")
    return json.loads(cli("bench", spec, *args).out)


def test_bench_against_timm_only_for_the_same_network(cli):
    same = _vs_timm(cli, "efficientnet-b0")
    assert same["timm_note"] == "timm efficientnet_b0 (group_size=1, E=6, bn)" and same["timm"]["images_per_s"] > 0
    other = _vs_timm(cli, SPECS / "b0_g16_lnpn_half.yaml")  # timm has no proxy normalization
    assert "timm" not in other and "not the same network (norm ln+pn" in other["timm_note"]


@pytest.mark.parametrize("spec", ["b0_g16", "b1_g16", "b2_g16"])
def test_the_shipped_g16_gn_specs_are_timed_against_timm(cli, spec):
    """timm builds G16 with GroupNorm and E = 4 from its own block notation; equal parameter
    counts (checked inside bench) say it is the same network, so both are timed."""
    payload = _vs_timm(cli, SPECS / f"{spec}.yaml")
    assert payload["timm_note"].endswith("(group_size=16, E=4, gn)"), payload["timm_note"]
    assert payload["timm"]["images_per_s"] > 0 and payload["archspec"]["images_per_s"] > 0


def test_bench_bad_input(cli):
    result = cli("bench", SPECS / "tiny.yaml", "--device", "tpu")
    assert (
        result.code == 2
        and "Invalid value for '--device': Value error, 'tpu' is not one of 'cpu', 'cuda'" in result.err
    )


def test_bench_uses_the_spec_input_channels_and_classes(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHSPEC_SPEC_ROOTS", str(SPECS))  # the spec below bases on a shipped one
    spec = tmp_path / "gray.yaml"
    spec.write_text(f"base: {SPECS / 'tiny.yaml'}\nin_channels: 1\nnum_classes: 2\n")
    result = cli("bench", spec, "--steps", "1", "--batch-size", "2", "--train", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["params"] == archspec.stats(spec).params
