"""Hostile inputs (issue 17, classes 6 to 9, and the command line's guard): every command keeps its
contract on any input, valid or not: exit 0 or 2, a refusal is one line of at most 500 characters
on stderr, never a traceback, never a run of more than 10 s. Each input is bounded where it comes
in, before work is done on it.

The property tests at the end generate hostile specs and flag values for every command; the
default run tries a few dozen of each, `pytest -m slow` many more."""

from __future__ import annotations

import importlib
import itertools
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import archspec
from archspec import reader
from archspec.atomic import write_text
from archspec.errors import MAX_LINE, SpecError
from archspec.limits import MAX_ERRORS_LISTED, MAX_LIST_ITEMS, MAX_YAML_NODES
from archspec.plan import Costing, Device, Unit, fits, optimal_cuts
from conftest import ROOT, SPECS, Result, run_archspec

TINY = SPECS / "tiny.yaml"
LIMIT_S = 10.0  # CPU seconds of any one command: robust to a shared machine's load, unlike wall time


def timed(cli, *args):
    start = time.process_time()
    result = cli(*args)
    return result, time.process_time() - start


def assert_contract(result, seconds: float = 0.0, codes=(0, 2), most_lines: int = 1) -> None:
    assert result.code in codes, result
    assert "Traceback" not in result.out + result.err, result.err[-3000:]
    lines = result.err.splitlines()
    if result.code != 0:
        assert 1 <= len(lines) <= most_lines, result.err[:3000]
    assert all(len(line) <= MAX_LINE for line in lines), max(map(len, lines))
    assert seconds < LIMIT_S, (seconds, result)


def refused(result, seconds: float = 0.0, *needles: str) -> str:
    assert_contract(result, seconds, codes=(2,))
    for needle in needles:
        assert needle in result.err, result.err
    return result.err.strip()


# --------------------------------------------------------------------------------------------
# class 6: hangs on valid or nearly valid input


def _deep_spec(path: Path) -> Path:
    """A valid network of 1,024 blocks (the most a spec may resolve to)."""
    stage = "  - {channels: 16, repeats: 64, expansion: 4, kernel: 3}\n"
    head = "name: deep\nstem: {channels: 16}\nhead: {channels: 64}\nresolution: {native: 32}\n"
    path.write_text(head + "stages:\n" + stage * 16)
    assert len(archspec.resolve(archspec.load_spec(path)).blocks) == 1024
    return path


def test_plan_of_a_1024_block_network_is_fast(cli, tmp_path):
    """Was over 60 s for --stages 3: the DP tried every split and summed every stage anew."""
    spec = _deep_spec(tmp_path / "deep.yaml")
    for stages in ("3", "64"):
        result, seconds = timed(cli, "plan", spec, "--stages", stages, "--json")
        assert_contract(result, seconds, codes=(0,))
    refused(cli("plan", spec, "--stages", "65"), 0, "--stages: must be from 1 to 64")
    result, seconds = timed(cli, "plan", spec, "--stages", "8", "--memory-mb", "0.5")
    refused(result, seconds, "no split into 8 stages fits")


@st.composite
def unit_chains(draw):
    """Units with small integer costs (many ties), chained as the IR's are or (rarely) not."""
    n = draw(st.integers(1, 9))
    chained = draw(st.booleans()) or draw(st.booleans())
    small = st.integers(0, 6)
    units, previous = [], draw(small)
    for i in range(n):
        given_input = previous if chained else draw(small)
        output = draw(small)
        units.append(Unit(f"u{i}", (f"l{i}",), draw(small), draw(small), draw(small), given_input, output))
        previous = output
    return units


def _brute_force(units, k, costing):
    best = None
    for cuts in itertools.combinations(range(1, len(units)), k - 1):
        parts = [units[a:b] for a, b in itertools.pairwise([0, *cuts, len(units)])]
        if all(costing.memory(p, i, k) <= costing.device.memory_bytes for i, p in enumerate(parts)):
            value = max(costing.time(p) for p in parts)
            best = value if best is None else min(best, value)
    return best


@settings(max_examples=300, deadline=None)
@given(
    units=unit_chains(),
    k=st.integers(1, 9),
    budget=st.integers(0, 250),
    micro=st.integers(1, 3),
    recompute=st.booleans(),
)
def test_the_fast_plan_is_still_optimal(units, k, budget, micro, recompute):
    """The searched DP against every split, on units whose costs tie often (and, for the fallback,
    on units that do not chain as the IR's do)."""
    assume(k <= len(units))
    costing = Costing(micro, Device(budget, flops=1.0, bandwidth=1.0), recompute=recompute)
    reference = _brute_force(units, k, costing)
    cuts = optimal_cuts(units, k, costing)
    assert fits(units, k, costing) == (reference is not None)
    if reference is None:
        assert cuts is None
        return
    parts = [units[a:b] for a, b in itertools.pairwise([0, *cuts, len(units)])]
    assert all(parts) and len(parts) == k
    assert all(costing.memory(p, i, k) <= budget for i, p in enumerate(parts))
    assert max(costing.time(p) for p in parts) == reference


def test_match_flops_with_channel_divisor_1_is_bounded(cli, tmp_path):
    """channel_divisor 1 makes nearly every E its own architecture: a wide range is refused at once,
    a narrow one is matched."""
    wide = tmp_path / "b7.yaml"
    wide.write_text("base: efficientnet-b7\nchannel_divisor: 1\n")
    result, seconds = timed(cli, "match-flops", wide, "--target-macs", "3G")
    refused(result, seconds, "--min: E in [1, 8] spans up to", "narrow the range")
    assert seconds < 2
    b0 = tmp_path / "b0.yaml"
    b0.write_text("base: efficientnet-b0\nchannel_divisor: 1\n")
    refused(cli("match-flops", b0, "--target-macs", "300M", "--max", "16"), 0, "channel_divisor 1")
    result, seconds = timed(cli, "match-flops", b0, "--target-macs", "300M", "--min", "4", "--max", "5", "--json")
    assert_contract(result, seconds, codes=(0,))


def test_a_megabyte_flow_list_is_refused_while_read(cli, tmp_path):
    """Was 18 CPU-s: PyYAML built every node before archspec looked at any."""
    spec = tmp_path / "flow.yaml"
    spec.write_text("stages: [" + "1," * 500_000 + "1]\n")
    result, seconds = timed(cli, "validate", spec)
    refused(result, seconds, f"more than {MAX_YAML_NODES} values")
    assert seconds < 3


def test_tens_of_thousands_of_unknown_keys(cli, tmp_path):
    many = tmp_path / "many.yaml"
    many.write_text("base: efficientnet-b0\n" + "".join(f"key{i}: {i}\n" for i in range(40_000)))
    result, seconds = timed(cli, "validate", many)
    refused(result, seconds, f"more than {MAX_YAML_NODES} values")
    assert seconds < 3
    # fewer than the bound: each is an error, but only those shown are worded
    some = tmp_path / "some.yaml"
    some.write_text("base: efficientnet-b0\n" + "".join(f"key{i}: {i}\n" for i in range(5_000)))
    result, seconds = timed(cli, "validate", some)
    refused(result, seconds, "key0: unknown key", "+4999 more errors")
    assert seconds < 3
    result = cli("validate", "--all-errors", some)
    lines = result.err.splitlines()
    assert len(lines) == MAX_ERRORS_LISTED + 1
    assert lines[-1].endswith(f"{5_000 - MAX_ERRORS_LISTED} more errors not listed")


@pytest.mark.parametrize(
    "args",
    [
        ("eval", "no-such-run", "--resolutions", ",".join(["224"] * 2000)),
        ("sweep", TINY, "--group-sizes", ",".join(["16"] * 2000), "--expansions", "4"),
        ("sweep", TINY, "--group-sizes", "16", "--expansions", ",".join(["4"] * (MAX_LIST_ITEMS + 1))),
    ],
    ids=["eval-resolutions", "sweep-group-sizes", "sweep-expansions"],
)
def test_list_flags_are_bounded_before_parsing(cli, args):
    result, seconds = timed(cli, *args)
    refused(result, seconds, f"at most {MAX_LIST_ITEMS} items")


def test_a_sweep_grid_is_bounded(cli):
    sizes, ratios = ",".join(map(str, range(1, 65))), ",".join(["4"] * 64)
    result, seconds = timed(cli, "sweep", TINY, "--group-sizes", sizes, "--expansions", ratios, "--grid")
    refused(result, seconds, "--grid: 4096 rows of")


# --------------------------------------------------------------------------------------------
# class 7: tracebacks from paths


def _hostile_paths(tmp: Path) -> dict[str, str]:
    (tmp / "loop-a").symlink_to(tmp / "loop-b")
    (tmp / "loop-b").symlink_to(tmp / "loop-a")
    return {
        "symlink-loop": str(tmp / "loop-a" / "x"),
        "nul-byte": str(tmp / "a\x00b"),
        "lone-surrogate": str(tmp / "a\ud800b"),
        "over-long-path": str(tmp / "/".join(["d" * 200] * 30)),
        "over-long-name": str(tmp / ("n" * 300)),
    }


PATH_USES = {
    "SPEC": lambda p: ("stats", p + ".yaml"),
    "validate": lambda p: ("validate", p),
    "--write": lambda p: ("match-flops", TINY, "--target-macs", "60M", "--write", p + ".yaml"),
    "--plot": lambda p: ("sweep", TINY, "--group-sizes", "16", "--expansions", "4", "--plot", p + ".png"),
    "--out": lambda p: ("compile", TINY, "--out", p),
    "--target": lambda p: ("match-flops", TINY, "--target", p + ".yaml"),
    "--spec-root": lambda p: ("--spec-root", p, "validate", TINY),
}


@pytest.mark.parametrize("use", sorted(PATH_USES))
def test_hostile_paths_are_one_line(cli, tmp_path, use):
    for kind, path in _hostile_paths(tmp_path).items():
        result, seconds = timed(cli, *PATH_USES[use](path))
        refused(result, seconds)
        assert not list(tmp_path.glob("*.tmp")), kind


def test_hostile_paths_in_base(cli, tmp_path):
    for kind, path in _hostile_paths(tmp_path).items():
        spec = tmp_path / f"{kind}.yaml"
        spec.write_text(yaml.safe_dump({"base": path + ".yaml"}))
        line = refused(cli("validate", spec), 0, f"{kind}.yaml:1:7: base:")
        assert "\x00" not in line and "\ud800" not in line


def test_sweep_plot_must_be_a_png(cli, tmp_path):
    """--plot writes a PNG: a file named otherwise is refused (one line, before any work)."""
    result = cli("sweep", TINY, "--group-sizes", "16", "--expansions", "4", "--plot", tmp_path / "x.txt")
    refused(result, 0, "--plot", "give a file name ending in .png")
    assert not (tmp_path / "x.txt").exists()


# --------------------------------------------------------------------------------------------
# class 8: tracebacks from flags

NUMERIC = [
    ("stats", TINY, "--resolution", "nan"),
    ("stats", TINY, "--resolution", "1e308"),
    ("stats", TINY, "--batch-size", "99999999999999999999999"),
    ("compile", TINY, "--resolution", "inf"),
    ("compile", TINY, "--batch-size", "-1"),
    ("plan", TINY, "--stages", "99999999999999999999999"),
    ("plan", TINY, "--stages", "2", "--memory-mb", "nan"),
    ("plan", TINY, "--stages", "2", "--memory-mb", "inf"),
    ("plan", TINY, "--stages", "2", "--memory-mb", "1e308"),
    ("plan", TINY, "--stages", "2", "--memory-fraction", "nan"),
    ("plan", TINY, "--stages", "2", "--memory-fraction", "-inf"),
    ("plan", TINY, "--stages", "2", "--micro-batch", "1e9"),
    ("match-flops", TINY, "--target-macs", ""),
    ("match-flops", TINY, "--target-macs", "nan"),
    ("match-flops", TINY, "--target-macs", "inf"),
    ("match-flops", TINY, "--target-params", "1e400"),
    ("match-flops", TINY, "--target-params", "9" * 5000),
    ("match-flops", TINY, "--target-macs", "60M", "--min", "nan"),
    ("match-flops", TINY, "--target-macs", "60M", "--max", "inf"),
    ("match-flops", TINY, "--target-macs", "60M", "--resolution", "99999999999999999999999"),
    ("match-flops", TINY, "--target-macs", "60M", "--show", "1e9"),
    ("resolutions", TINY, "--max", "nan"),
    ("resolutions", TINY, "--max", "99999999999999999999999"),
    ("sweep", TINY, "--group-sizes", "16", "--expansions", "nan"),
    ("sweep", TINY, "--group-sizes", "16", "--expansions", "inf"),
    ("sweep", TINY, "--group-sizes", "1e300", "--expansions", "4"),
    ("sweep", TINY, "--group-sizes", "16", "--expansions", "4", "--batch-size", "1e9"),
    ("train", "no-such.yaml", "--seed", str(2**63)),
    ("train", "no-such.yaml", "--seed", str(2**64)),
    ("train", "no-such.yaml", "--batch-size", "nan"),
]


@pytest.mark.parametrize("args", NUMERIC, ids=[" ".join(map(str, a[2:]))[:40] for a in NUMERIC])
def test_numeric_flags_with_nan_inf_and_huge_values(cli, args):
    result, seconds = timed(cli, *args)
    refused(result, seconds)


# --------------------------------------------------------------------------------------------
# class 9: one bounded line; writes that would replace what is not a file


def test_a_key_holding_a_newline_is_one_line(cli, tmp_path):
    spec = tmp_path / "key.yaml"
    spec.write_text('base: efficientnet-b0\n"bad\\nkey\\u202e\\x1b[31m": 1\n')
    line = refused(cli("validate", spec), 0, "bad\\nkey\\u202e\\x1b[31m: unknown key")
    assert "\x1b" not in line


def test_megabyte_values_make_bounded_lines(cli, tmp_path):
    """A value is quoted in an error as far as one line of 500 characters allows, whichever field,
    key or argument it came in by."""
    huge = "x" * 1_000_000
    b0 = "base: efficientnet-b0\n"
    texts = [f"{b0}name: {huge}", f"{b0}{huge}: 1", f"name: x\nbase: {huge}", f"name: x\nbase: {huge}.yaml"]
    for i, text in enumerate(texts):
        spec = tmp_path / f"huge{i}.yaml"
        spec.write_text(text + "\n")
        refused(cli("validate", spec), 0, f"huge{i}.yaml:2:")
    refused(cli("validate", huge), 0, "unknown preset")
    refused(cli("stats", "efficientnet-b0", "--resolution", huge), 0, "--resolution")


def test_error_lines_are_escaped_and_bounded_whatever_they_quote():
    error = SpecError("m" * 10**6 + " the hint", field="k\ney" * 10**5, file="f\x00" * 10**5)
    line = error.line()
    assert len(line) <= MAX_LINE and line.isprintable() and line.endswith("the hint")
    assert "\\n" in line and "\\x00" in line


def test_write_refuses_a_symlink_and_a_device(cli, tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    link = tmp_path / "link.yaml"
    link.symlink_to(target)
    refused(cli("match-flops", TINY, "--target-macs", "60M", "--write", link), 0, "--write:", "is a symbolic link")
    assert target.read_text() == "keep me" and link.is_symlink()
    refused(cli("match-flops", TINY, "--target-macs", "60M", "--write", os.devnull), 0, "not a regular file")
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_a_link_planted_at_the_temporary_name_is_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / ".out.yaml.tmp").symlink_to(victim)
    write_text(tmp_path / "out.yaml", "written: true\n")
    assert victim.read_text() == "keep me" and (tmp_path / "out.yaml").read_text() == "written: true\n"


# --------------------------------------------------------------------------------------------
# the guard: a bug is one line naming the command, its traceback only with --debug


def test_an_internal_error_is_one_line_and_status_1(cli, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug\nwith a second line")

    monkeypatch.setattr("archspec.cli.compile.totals", broken)
    result = cli("stats", TINY)
    assert result.code == 1 and "Traceback" not in result.err
    assert result.err.splitlines() == [
        "archspec stats: internal error: ZeroDivisionError: a bug; run with --debug for the traceback"
    ]
    result = cli("--debug", "stats", TINY)
    assert result.code == 1 and "Traceback (most recent call last)" in result.err and "broken" in result.err
    assert result.err.splitlines()[-1].startswith("archspec stats: internal error: ZeroDivisionError")


# --------------------------------------------------------------------------------------------
# property tests: hostile specs and flag values for every command

HOSTILE_WORDS = [
    "nan", "NaN", "inf", "-inf", "Infinity", "1e308", "-1e308", "1e400", "1e-300", "-1", "0", "-0", "1", "2",
    "3.5", "64", "9223372036854775807", "9223372036854775808", "18446744073709551616", "9" * 400, "9" * 5000, "",
    " ", ",", ",,", "1,,2", "0x10", "1_000", "\u0661\u0662", "64,96", "half", "native", "train", "\n", "a\nb", "\x00",
    "\ud800", "\u202e", "x" * 5000, "../../etc/passwd", "/etc/passwd", "/dev/zero", "/proc/self/maps", "-",
    "blocks.1.0", "stem,head", "390M", "0.39G", "1e17", "efficientnet-b9",
]  # fmt: skip
hostile_values = st.one_of(
    st.sampled_from(HOSTILE_WORDS),
    st.integers(-(2**70), 2**70).map(str),
    st.floats().map(str),
    st.text(max_size=20),
    st.lists(st.sampled_from(["1", "16", "4", "nan", "-1", "x", "", "1e9"]), max_size=80).map(",".join),
)
NO_SPEC, NO_RUN = "no-such-spec.yaml", "no-such-run"
FLAG_TEMPLATES = [
    ("validate", "{v}"),
    ("validate", "--all-errors", "{v}"),
    ("schema", "{v}"),
    ("--spec-root", "{v}", "validate", TINY),
    ("stats", "{v}"),
    ("stats", TINY, "--resolution", "{v}"),
    ("stats", TINY, "--batch-size", "{v}"),
    ("compile", TINY, "--resolution", "{v}", "--batch-size", "{v}"),
    ("plan", TINY, "--stages", "{v}"),
    ("plan", TINY, "--stages", "2", "--micro-batch", "{v}"),
    ("plan", TINY, "--stages", "2", "--memory-mb", "{v}"),
    ("plan", TINY, "--stages", "2", "--memory-fraction", "{v}"),
    ("plan", TINY, "--stages", "3", "--at", "{v}"),
    ("match-flops", TINY, "--target-macs", "{v}"),
    ("match-flops", TINY, "--target-params", "{v}"),
    ("match-flops", TINY, "--target", "{v}"),
    ("match-flops", TINY, "--target-macs", "60M", "--min", "{v}"),
    ("match-flops", TINY, "--target-macs", "60M", "--max", "{v}"),
    ("match-flops", TINY, "--target-macs", "60M", "--resolution", "{v}"),
    ("match-flops", TINY, "--target-macs", "60M", "--show", "{v}"),
    ("resolutions", TINY, "--max", "{v}"),
    ("sweep", TINY, "--group-sizes", "{v}", "--expansions", "4"),
    ("sweep", TINY, "--group-sizes", "16", "--expansions", "{v}"),
    ("sweep", TINY, "--group-sizes", "{v}", "--expansions", "{v}", "--grid"),
    ("sweep", TINY, "--group-sizes", "16", "--expansions", "4", "--batch-size", "{v}"),
    # the runner's commands: on a spec or run that does not exist, so that nothing can start training;
    # what is checked is that no flag value gets past parsing as a traceback
    ("train", NO_SPEC, "--seed", "{v}"),
    ("train", NO_SPEC, "--batch-size", "{v}", "--accum", "{v}"),
    ("train", NO_SPEC, "--nproc", "{v}", "--stages", "{v}"),
    ("train", NO_SPEC, "--max-steps", "{v}", "--epochs", "{v}"),
    ("train", NO_SPEC, "--resolution", "{v}", "--device", "{v}"),
    ("finetune", NO_RUN, "--resolution", "{v}", "--blocks", "{v}"),
    ("finetune", NO_RUN, "--resolution", "96", "--blocks", "1", "--epochs", "{v}"),
    ("eval", NO_RUN, "--resolutions", "{v}"),
    ("eval", NO_RUN, "--resolutions", "64", "--weights", "{v}"),
    ("bench", NO_SPEC, "--batch-size", "{v}", "--steps", "{v}"),
    ("bench", NO_SPEC, "--resolution", "{v}", "--device", "{v}"),
]


def _flags(template, value: str) -> list[str]:
    return [value if part == "{v}" else str(part) for part in template]


def _check_flags(cli, template, value):
    result, seconds = timed(cli, *_flags(template, value))
    assert_contract(result, seconds)


FUZZ = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]}


@pytest.fixture
def _runner_imported():
    """The runner commands import torch on first use: before the clock starts, not inside it."""
    pytest.importorskip("torch")
    for module in ("archspec.backends.torch.bench", "archspec.runner.evaluate", "archspec.runner.finetune"):
        importlib.import_module(module)


@settings(max_examples=60, **FUZZ)
@given(template=st.sampled_from(FLAG_TEMPLATES), value=hostile_values)
def test_hostile_flag_values_keep_the_contract(cli, _runner_imported, template, value):
    _check_flags(cli, template, value)


@pytest.mark.slow
@settings(max_examples=500, **FUZZ)
@given(template=st.sampled_from(FLAG_TEMPLATES), value=hostile_values)
def test_hostile_flag_values_keep_the_contract_at_length(cli, _runner_imported, template, value):
    _check_flags(cli, template, value)


HOSTILE_SCALARS = [
    float("nan"), float("inf"), -float("inf"), 1e308, -1e308, 0, -1, 1, 2, 3, 7, 10, 64, 2**31, 2**63, 2**64, -(2**63),
    10**100, 0.5, 1e-9, True, False, None, "", "\n", "a\nb", "\x00", "\u202e", "x" * 3000, "efficientnet-b9",
    "/etc/passwd", "../../x.yaml", "half", "native", "ln+pn", "gn", [], {}, [1] * 100, {"a": 1}, [[[[]]]],
]  # fmt: skip
scalars = st.one_of(
    st.sampled_from(HOSTILE_SCALARS),
    st.integers(-(2**66), 2**66),
    st.floats(),
    st.text(max_size=30),
    st.lists(st.integers(-5, 5000), max_size=4),
)
# where a spec's values live (besides the top level): the nested mappings and a stage
NESTED = {
    "stem": ["channels", "kernel", "stride"],
    "head": ["channels", "dropout"],
    "norm": ["type", "groups", "eps", "pn_eps", "momentum"],
    "resolution": ["native", "half", "train", "test"],
}
TOP = [
    "name", "description", "base", "width_multiplier", "depth_multiplier", "channel_divisor", "group_size",
    "expansion_ratio", "mid_channel_rounding", "group_rounding", "activation", "drop_path", "num_classes",
    "in_channels", *NESTED,
]  # fmt: skip
STAGE = ["block", "repeats", "kernel", "stride", "expansion", "channels", "se_ratio", "group_size"]


@st.composite
def hostile_specs(draw) -> dict:
    """A small valid spec (B0 at a quarter of its width and depth, 64 px) with a few values made
    hostile, keys added or removed, or stages of its own."""
    spec = {
        "name": "h",
        "base": "efficientnet-b0",
        "width_multiplier": 0.25,
        "depth_multiplier": 0.25,
        "group_size": 16,
        "norm": {"type": "gn", "groups": 4},
        "resolution": {"native": 64, "test": [64, 96]},
        "num_classes": 10,
    }
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["top", "nested", "stages", "unknown", "drop"]))
        if kind == "top":
            spec[draw(st.sampled_from(TOP))] = draw(scalars)
        elif kind == "nested":
            outer = draw(st.sampled_from(sorted(NESTED)))
            inner = spec[outer] if isinstance(spec.get(outer), dict) else {}
            spec[outer] = {**inner, draw(st.sampled_from(NESTED[outer])): draw(scalars)}
        elif kind == "stages":
            stage = {"channels": 16, **{k: draw(scalars) for k in draw(st.lists(st.sampled_from(STAGE), max_size=3))}}
            spec["stages"] = [stage] * draw(st.integers(1, 3))
        elif kind == "unknown":
            spec[draw(st.text(min_size=1, max_size=40))] = draw(scalars)
        else:
            spec.pop(draw(st.sampled_from(sorted(spec))), None)
    return spec


YAML_PIECES = [
    "base: efficientnet-b0\n", "[", "]", "{", "}", "&a [*a, *a]\n", "*a", "!!python/name:os.system", "---\n", "\t",
    "x: ", ": ", "- ", "'", '"', "\\", "\n", "<<: {}\n", "? ", "1e999", "!!binary x", "stages:\n", "  - ",
]  # fmt: skip
raw_documents = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(YAML_PIECES), max_size=30).map("".join),
)
SPEC_COMMANDS = [
    ("validate", "{v}"),
    ("validate", "--all-errors", "{v}"),
    ("compile", "{v}"),
    ("stats", "{v}", "--resolution", "half"),
    ("plan", "{v}", "--stages", "2"),
    ("match-flops", "{v}", "--target-macs", "60M"),
    ("resolutions", "{v}"),
    ("sweep", "{v}", "--group-sizes", "1,16", "--expansions", "4,6"),
]


def _check_spec(cli, tmp_path, template, text: str):
    spec = tmp_path / "hostile.yaml"
    spec.write_text(text, errors="surrogateescape")
    result, seconds = timed(cli, *_flags(template, str(spec)))
    assert_contract(result, seconds, most_lines=MAX_ERRORS_LISTED + 1 if "--all-errors" in template else 1)


def _yaml(spec: dict) -> str:
    try:
        return yaml.safe_dump(spec, allow_unicode=False)
    except yaml.YAMLError:  # a value PyYAML cannot write (never one a user could)
        assume(False)
        raise


@settings(max_examples=60, **FUZZ)
@given(template=st.sampled_from(SPEC_COMMANDS), spec=hostile_specs(), raw=st.none() | raw_documents)
def test_hostile_specs_keep_the_contract(cli, tmp_path, template, spec, raw):
    _check_spec(cli, tmp_path, template, raw if raw is not None else _yaml(spec))


@pytest.mark.slow
@settings(max_examples=500, **FUZZ)
@given(template=st.sampled_from(SPEC_COMMANDS), spec=hostile_specs(), raw=st.none() | raw_documents)
def test_hostile_specs_keep_the_contract_at_length(cli, tmp_path, template, spec, raw):
    _check_spec(cli, tmp_path, template, raw if raw is not None else _yaml(spec))


# --------------------------------------------------------------------------------------------
# class 10 (issue 25): hostile files for every command that reads a file, and outputs that cannot
# be written. Every file a command reads goes through archspec.reader, every output through the
# write check: one line naming the file, exit 2, nothing written, never a hang.

ROW_SECONDS = 1.0  # what a refusal may take, beyond the interpreter's start


def _startup_seconds() -> float:
    """The wall time of `archspec --version`: importing the command line, which every row pays."""
    start = time.perf_counter()
    assert run_archspec("--version").code == 0
    return time.perf_counter() - start


FULL_DISK = """\
import os, sys
real = os.statvfs
def full(path):  # a file system without a free block
    r = real(path)
    return os.statvfs_result((r.f_bsize, r.f_frsize, r.f_blocks, 0, 0, r.f_files, r.f_ffree, r.f_favail, r.f_flag,
                              r.f_namemax))
os.statvfs = full
from archspec.cli.app import main
main(sys.argv[1:])
"""


@pytest.fixture
def table_files(tmp_path) -> Path:
    """The files of the issue's table, in the directory the rows run in."""
    (tmp_path / "tiny.yaml").write_text(TINY.read_text())
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "s.yaml").write_text(
        "base: tiny.yaml\nspace: {group_size: [1, 16]}\nobjectives: [{metric: params, direction: minimize}]\n"
    )
    (tmp_path / "full").mkdir()
    return tmp_path


TABLE = {  # each row of issue 25's table, and what its one line must say
    "profile-dev-zero": (("stats", "tiny.yaml", "--profile", "/dev/zero", "--json"), "/dev/zero: --profile: "),
    "profile-deep-json": (("stats", "tiny.yaml", "--profile", "deep.json"), "deep.json: --profile: JSON nested"),
    "profile-fifo": (("stats", "tiny.yaml", "--profile", "fifo"), "fifo: --profile: not a regular file"),
    "search-profile-fifo": (("search", "s.yaml", "--out", "S", "--profile", "fifo"), "fifo: --profile: not a regular"),
    "export-out-proc": (
        ("export", "tiny.yaml", "--format", "onnx", "--out", "/proc/x"),
        "--out: /proc/x: cannot write",
    ),
    "train-full-disk": (
        ("train", "tiny.yaml", "--max-steps", "1", "--out", "full/out"),
        "--out: full/out: cannot write",
    ),
}


@pytest.mark.parametrize("row", sorted(TABLE))
def test_each_row_of_the_issue_25_table_is_one_line_within_a_second(table_files, row):
    args, says = TABLE[row]
    limit = _startup_seconds() + ROW_SECONDS
    before = sorted(p.name for p in table_files.rglob("*"))
    start = time.perf_counter()
    if row == "train-full-disk":
        proc = subprocess.run(
            [sys.executable, "-c", FULL_DISK, *args], cwd=table_files, capture_output=True, text=True, timeout=limit
        )
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        says += ": the disk is full (0 bytes free on the file system of"
    else:
        result = run_archspec(*args, cwd=table_files, timeout=limit)
    seconds = time.perf_counter() - start
    assert result.code == 2 and result.out == "" and "Traceback" not in result.err, result
    assert len(result.err.splitlines()) == 1 and result.err.startswith(says), result.err
    assert seconds < limit, (seconds, limit)
    assert sorted(p.name for p in table_files.rglob("*")) == before  # nothing written
    assert not os.path.exists("/proc/x")


@pytest.fixture
def hostile_files(tmp_path) -> dict[str, Path]:
    """Files that are not what a command may read, by name (each kind's own deep and huge files are
    made by _hostile)."""
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir.yaml").mkdir()
    (tmp_path / "to-proc").symlink_to("/proc/self/status")
    return {
        "/dev/zero": Path("/dev/zero"),
        "/proc/self/status": Path("/proc/self/status"),
        "fifo": tmp_path / "fifo",
        "directory": tmp_path / "dir.yaml",
        "link-to-proc": tmp_path / "to-proc",
    }


def _hostile(tmp: Path, files: dict[str, Path], kind) -> dict[str, Path]:
    """`files`, a file over `kind`'s size limit (sparse: nothing is written), and one nested 100,000
    deep in the kind's language."""
    huge = tmp / f"huge-{kind.name}"
    with open(huge, "wb") as f:
        f.truncate(kind.limit + 1)
    deep = tmp / f"deep-{kind.name}"
    yaml_kind = kind in (reader.SPEC, reader.RECIPE, reader.SEARCH)
    deep.write_text(("a: " if yaml_kind else "") + "[" * 100_000 + "]" * 100_000)
    return {**files, "huge": huge, "deep": deep}


# (command, the parameter that names the file), and the command line that reads a hostile {f};
# {out} is where it would write, which must stay unwritten
FILE_READERS = {
    reader.SPEC: [
        (("validate", "specs"), ("validate", "{f}")),
        (("compile", "spec"), ("compile", "{f}", "--out", "{out}")),
        (("stats", "spec"), ("stats", "{f}")),
        (("plan", "spec"), ("plan", "{f}", "--stages", "2")),
        (("match-flops", "spec"), ("match-flops", "{f}", "--target-macs", "60M", "--write", "{out}.yaml")),
        (("match-flops", "target"), ("match-flops", TINY, "--target", "{f}", "--write", "{out}.yaml")),
        (("resolutions", "spec"), ("resolutions", "{f}")),
        (("sweep", "spec"), ("sweep", "{f}", "--group-sizes", "16", "--expansions", "4")),
        (("bench", "spec"), ("bench", "{f}")),
        (("train", "spec"), ("train", "{f}", "--max-steps", "1", "--out", "{out}")),
        (("export", "source"), ("export", "{f}", "--format", "torchscript", "--out", "{out}.pt")),
        (("profile", "calibrate"), ("profile", "--out", "{out}.json", "--calibrate", "{f}")),
    ],
    reader.RECIPE: [
        (
            ("compile", "recipe"),
            ("compile", TINY, "--backend", "poptorch", "--ipus", "2", "--recipe", "{f}", "--out", "{out}"),
        ),
        (("train", "recipe"), ("train", TINY, "--recipe", "{f}", "--max-steps", "1", "--out", "{out}")),
    ],
    reader.SEARCH: [(("search", "target"), ("search", "{f}", "--out", "{out}"))],
    reader.PROFILE: [
        (("stats", "profile"), ("stats", TINY, "--profile", "{f}")),
        (("search", "profile"), ("search", ROOT / "searches" / "g16_cpu.yaml", "--out", "{out}", "--profile", "{f}")),
    ],
}
DIRECTORY_READERS = [
    (("finetune", "run"), ("finetune", "{f}", "--resolution", "64", "--blocks", "1")),
    (("eval", "run"), ("eval", "{f}", "--resolutions", "64")),
    (("export", "source"), ("export", "{f}", "--format", "torchscript", "--out", "{out}.pt")),
    (("search", "directory"), ("search", "show", "{f}")),
    (("train", "data"), ("train", TINY, "--data", "{f}", "--max-steps", "1", "--out", "{out}")),
    (("", "spec_root"), ("--spec-root", "{f}", "validate", TINY)),
]
READERS_COVERED = {covered for readers in FILE_READERS.values() for covered, _ in readers} | {
    covered for covered, _ in DIRECTORY_READERS
}


def _refused_file(cli, template, path: Path, out: Path) -> str:
    args = [str(path) if part == "{f}" else str(out) + part[5:] if str(part).startswith("{out}") else part
            for part in template]  # fmt: skip
    result, seconds = timed(cli, *args)
    line = refused(result, seconds)
    assert str(path) in line, (args, line)
    assert not list(out.parent.glob(out.name + "*")), args  # nothing written
    return line


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", sorted(FILE_READERS, key=lambda k: k.name), ids=lambda k: k.name)
def test_hostile_files_for_every_command_that_reads_a_file(cli, tmp_path, hostile_files, _runner_imported, kind):
    """Each hostile file, given to each command that reads that kind of file, is one line naming it
    (a hang here would be a FIFO read: pytest-timeout ends it)."""
    for path in _hostile(tmp_path, hostile_files, kind).values():
        for _, template in FILE_READERS[kind]:
            _refused_file(cli, template, path, tmp_path / "out")


def _run_dir(tmp: Path) -> Path:
    """What `archspec train` leaves, as far as a command reads before the weights."""
    run = tmp / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"resolution": 32, "options": {"data": None, "seed": 0}}))
    (run / "spec.yaml").write_text(TINY.read_text())
    (run / "recipe.yaml").write_text("synthetic: {train_size: 32, val_size: 16, canvas: 32}\n")
    return run


@pytest.mark.timeout(120)
def test_hostile_run_and_data_directories(cli, tmp_path, hostile_files, _runner_imported):
    """A directory a command reads from (a run, a search, ImageFolder roots, a spec root) that is a
    device, a FIFO, a file or the kernel's is one line naming it."""
    (tmp_path / "to-proc-dir").symlink_to("/proc/self")
    directories = {
        **{k: v for k, v in hostile_files.items() if k != "directory"},
        "/proc/self": Path("/proc/self"),
        "/dev": Path("/dev"),
        "link-to-proc": tmp_path / "to-proc-dir",
        "a file": TINY,
    }
    for path in directories.values():
        for (command, _), template in DIRECTORY_READERS:
            if not (command == "export" and path == TINY):  # export's SOURCE may be a spec file
                _refused_file(cli, template, path, tmp_path / "out")
    data = tmp_path / "images"  # ImageFolder splits that are not directories
    data.mkdir()
    (data / "train").symlink_to("/proc/self")
    os.mkfifo(data / "val")
    line = _refused_file(cli, DIRECTORY_READERS[-2][1], data, tmp_path / "out")
    assert "train: not a dataset archspec reads (/proc is the kernel's)" in line


def _plant(target: Path, what: str, kind) -> None:
    """A hostile file at `target`, in place of one archspec wrote."""
    target.unlink(missing_ok=True)
    if what == "fifo":
        os.mkfifo(target)
    elif what == "directory":
        target.mkdir()
    elif what == "huge":
        with open(target, "wb") as f:
            f.truncate(kind.limit + 1)
    elif what == "deep":
        target.write_text("[" * 100_000 + "]" * 100_000)
    else:
        target.symlink_to({"dev-zero": "/dev/zero", "link-to-proc": "/proc/self/status"}[what])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("inside", ["run.json", "ema.pt", "search.json"])
def test_hostile_files_inside_run_and_search_directories(cli, tmp_path, _runner_imported, inside):
    """run.json, the weights and search.json, read from a directory archspec wrote, obey the same
    reader: every command that reads them says which file and why, in one line."""
    kind = {"run.json": reader.RECORD, "ema.pt": reader.CHECKPOINT, "search.json": reader.RECORD}[inside]
    templates = (
        [("search", "show", "{f}")]
        if inside == "search.json"
        else [
            ("eval", "{f}", "--resolutions", "32"),
            ("finetune", "{f}", "--resolution", "32", "--blocks", "1", "--max-steps", "1"),
            ("export", "{f}", "--format", "torchscript", "--out", "{out}.pt"),
            *([("train", TINY, "--out", "{f}", "--resume", "--max-steps", "1")] if inside == "run.json" else []),
        ]
    )
    for what in ("fifo", "directory", "huge", "deep", "dev-zero", "link-to-proc"):
        if what == "deep" and inside == "ema.pt":
            continue  # weights are bytes: nothing nests
        home = tmp_path / what
        home.mkdir()
        run = _run_dir(home)
        _plant(run / inside, what, kind)
        for template in templates:
            args = [str(run) if p == "{f}" else str(home / "out.pt") if p == "{out}.pt" else p for p in template]
            result, seconds = timed(cli, *args)
            line = refused(result, seconds)
            assert str(run / inside) in line and "Traceback" not in result.err, (what, args, line)
            assert not (home / "out.pt").exists() and not list(run.glob("finetune*"))


OUTPUTS = [  # every flag that names an output, and a command line that would write it
    ("compile", TINY, "--out", "{out}"),
    ("match-flops", TINY, "--target-macs", "60M", "--write", "{out}.yaml"),
    ("sweep", TINY, "--group-sizes", "16", "--expansions", "4", "--plot", "{out}.png"),
    ("bench", TINY, "--per-layer", "--plot", "{out}.png"),
    ("profile", "--out", "{out}.json"),
    ("export", TINY, "--format", "torchscript", "--out", "{out}.pt"),
    ("train", TINY, "--max-steps", "1", "--out", "{out}"),
    ("search", ROOT / "searches" / "g16_cpu.yaml", "--out", "{out}"),
]


def _statvfs_with(monkeypatch, **fields):
    real = os.statvfs

    def fake(path):
        r = real(path)
        values = [r.f_bsize, r.f_frsize, r.f_blocks, r.f_bfree, r.f_bavail, r.f_files, r.f_ffree, r.f_favail]
        values += [r.f_flag, r.f_namemax]
        names = ["f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail"]
        for name, value in fields.items():
            values[[*names, "f_flag", "f_namemax"].index(name)] = value
        return os.statvfs_result(tuple(values))

    monkeypatch.setattr(os, "statvfs", fake)


@pytest.mark.parametrize("place", ["proc", "sys", "read-only", "full", "unwritable-parent"])
def test_every_output_refuses_a_place_that_cannot_take_it(cli, tmp_path, monkeypatch, _runner_imported, place):
    """/proc, /sys, a read-only mount, a full disk or a parent that is a file: one line naming the
    path and the reason, exit 2, before any work, for every flag that names an output."""
    out = {"proc": Path("/proc/x"), "sys": Path("/sys/x"), "unwritable-parent": TINY / "x"}.get(place, tmp_path / "x")
    says = {
        "proc": "/proc is the kernel's",
        "sys": "/sys is the kernel's",
        "read-only": "is on a read-only file system",
        "full": "the disk is full (0 bytes free",
        "unwritable-parent": "is not a directory",
    }[place]
    if place == "read-only":
        _statvfs_with(monkeypatch, f_flag=os.ST_RDONLY)
    elif place == "full":
        _statvfs_with(monkeypatch, f_bavail=0)
    for template in OUTPUTS:
        args = [str(out) + str(p)[5:] if str(p).startswith("{out}") else p for p in template]
        result, seconds = timed(cli, *args)
        line = refused(result, seconds, says)
        assert str(out) in line and ": cannot write: " in line, (args, line)
    assert not list(tmp_path.iterdir())
