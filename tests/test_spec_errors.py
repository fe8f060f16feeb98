"""Bad specs: each exits 2 with one line naming the file, the line/column where known, and the field."""

from __future__ import annotations

import resource
import textwrap

import pytest

from conftest import run_archspec

# (id, file content, text the one-line error must contain, expected line:col or None)
MALFORMED = [
    ("syntax-error", "name: x\nstages: [unclosed\n", "YAML syntax error", None),
    ("tab-indent", "name: x\nnorm:\n\ttype: gn\n", "YAML syntax error", None),
    (
        "unknown-key",
        "base: efficientnet-b0\nwidht_multiplier: 1.2\n",
        "widht_multiplier: unknown key (did you mean 'width_multiplier'?)",
        "2:1",
    ),
    (
        "unknown-nested-key",
        "base: efficientnet-b0\nnorm: {type: gn, group: 4}\n",
        "norm.group: unknown key (did you mean 'groups'?)",
        "2:18",
    ),
    ("unknown-stage-key", "stages:\n  - {channels: 16, strides: 2}\n", "stages[0].strides: unknown key", "2:20"),
    ("string-for-int", "base: efficientnet-b0\nnum_classes: '10'\n", "num_classes: must be an integer", "2:14"),
    (
        "string-for-float",
        "base: efficientnet-b0\nwidth_multiplier: '1.2'\n",
        "width_multiplier: must be a number",
        None,
    ),
    ("bool-for-int", "base: efficientnet-b0\nnum_classes: true\n", "num_classes: must be an integer", None),
    ("float-for-int", "stages:\n  - {channels: 16, repeats: 2.5}\n", "stages[0].repeats: must be an integer", "2:29"),
    (
        "bad-stride",
        "stages:\n  - {channels: 16}\n  - {channels: 24}\n  - {channels: 40, stride: 3}\n",
        "stages[2].stride: must be 1 or 2, got 3",
        "4:28",
    ),
    (
        "negative-width",
        "base: efficientnet-b0\nwidth_multiplier: -1\n",
        "width_multiplier: must be >= 0.05, got -1",
        None,
    ),
    ("zero-channels", "stages:\n  - {channels: 0}\n", "stages[0].channels: must be >= 1", None),
    ("even-kernel", "stages:\n  - {channels: 16, kernel: 4}\n", "stages[0].kernel: must be odd", None),
    ("nan", "base: efficientnet-b0\ndepth_multiplier: .nan\n", "depth_multiplier: must be a finite number", None),
    ("inf", "base: efficientnet-b0\nwidth_multiplier: .inf\n", "width_multiplier:", None),
    ("unknown-preset", "base: efficientnet-b9\n", "base: unknown preset 'efficientnet-b9'", "1:7"),
    ("missing-base-file", "base: nowhere/missing.yaml\n", "base: base spec 'nowhere/missing.yaml' not found", "1:7"),
    ("empty-file", "", "the file is empty", None),
    ("comment-only", "# nothing here\n\n", "the file is empty", None),
    ("list-document", "- channels: 16\n", "the top level must be a mapping", "1:1"),
    ("scalar-document", "just a string\n", "the top level must be a mapping", "1:1"),
    ("two-documents", "name: a\n---\nname: b\n", "expected one YAML document", None),
    ("python-tag", "name: !!python/object/apply:os.system ['echo pwned']\n", "unsupported YAML tag", "1:7"),
    ("python-name-tag", "base: efficientnet-b0\nnorm: !!python/name:os.system\n", "unsupported YAML tag", None),
    ("custom-tag", "base: efficientnet-b0\nactivation: !shell ls\n", "unsupported YAML tag", None),
    ("timestamp", "base: efficientnet-b0\ndescription: 2021-05-01\n", "unsupported YAML tag", None),
    (
        "alias-bomb",
        textwrap.dedent("""\
        a: &a [x, x, x, x, x, x, x, x, x, x]
        b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
        c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
        d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
        e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
        f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
        g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
        h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
        i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]
        """),
        "document expands to more than",
        None,
    ),
    ("recursive-alias", "stages: &s [*s]\n", "stages", None),
    ("merge-key", "n: &n {type: gn}\nbase: efficientnet-b0\nnorm:\n  <<: *n\n", "merge keys", "4:3"),
    ("int-key", "base: efficientnet-b0\n1: one\n", "keys must be plain strings", "2:1"),
    (
        "duplicate-key",
        "base: efficientnet-b0\ngroup_size: 4\ngroup_size: 16\n",
        "group_size: duplicate key (first defined at line 2)",
        "3:1",
    ),
    (
        "absurd-repeats",
        "stages:\n  - {channels: 16, repeats: 100000}\n",
        "stages[0].repeats: must be <= 64, got 100000",
        "2:29",
    ),
    (
        "absurd-depth",
        "base: efficientnet-b0\ndepth_multiplier: 10\nstages:\n"
        + "".join("  - {channels: 16, repeats: 64}\n" for _ in range(4)),
        "depth_multiplier: the network would have 2560 blocks",
        "2:19",
    ),
    (
        "absurd-width",
        "width_multiplier: 10\nstages:\n  - {channels: 8192}\n",
        "width_multiplier: stages[0].channels would have 81920 channels",
        "1:19",
    ),
    (
        "gn-groups-divide-nothing",
        "base: efficientnet-b0\nnorm: {type: gn, groups: 3}\n",
        "norm.groups: 3 groups do not divide the 32 channels of the stem",
        "2:26",
    ),
    (
        "gn-groups-odd-channels",
        "base: efficientnet-b0\nchannel_divisor: 1\nwidth_multiplier: 0.37\nnorm: {type: gn+pn, groups: 4}\n",
        "norm.groups: 4 groups do not divide",
        "4:29",
    ),
    (
        "unknown-norm",
        "base: efficientnet-b0\nnorm: {type: batchnorm}\n",
        "norm.type: must be 'bn', 'gn', 'ln', 'frn', 'gn+pn' or 'ln+pn', got 'batchnorm'",
        "2:14",
    ),
    ("no-stages", "name: bare\n", "stages: required field is missing", None),
    ("empty-stages", "stages: []\n", "stages: must have at least 1 items, got 0", "1:9"),
    (
        "bad-train-resolution",
        "base: efficientnet-b0\nresolution: {train: quarter}\n",
        "resolution.train: must be 'native', 'half' or an integer from 8 to 4096, got 'quarter'",
        "2:21",
    ),
    (
        "native-without-native",
        "stages:\n  - {channels: 16}\nresolution: {train: native}\n",
        "resolution.train: 'native' needs resolution.native",
        "3:21",
    ),
    (
        "tiny-test-resolution",
        "base: efficientnet-b0\nresolution: {test: [224, 4]}\n",
        "resolution.test: test resolutions must be from 8 to 4096, got 4",
        None,
    ),
    ("small-expansion", "base: efficientnet-b0\nexpansion_ratio: 0.5\n", "expansion_ratio: must be >= 1", "2:18"),
    ("dropout-one", "base: efficientnet-b0\nhead: {dropout: 1.5}\n", "head.dropout: must be < 1", "2:17"),
    (
        "code-in-name",
        "base: efficientnet-b0\nname: \"x'); import os; os.system('id') #\"\n",
        "name: must be letters",
        "2:7",
    ),
    ("newline-in-name", 'base: efficientnet-b0\nname: "a\\nb"\n', "name: must be letters", None),
    ("mapping-for-list", "stages: {channels: 16}\n", "stages: must be a list", "1:9"),
    ("list-for-mapping", "base: efficientnet-b0\nnorm: [gn]\n", "norm: must be a mapping", "2:7"),
]


@pytest.mark.parametrize("content,expected,where", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_spec_is_one_located_line_and_exit_2(tmp_path, monkeypatch, cli, content, expected, where):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text(content)
    result = cli("validate", "bad.yaml")
    assert result.code == 2, result
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    line = lines[0]
    assert line.startswith("bad.yaml:") or line.startswith("bad.yaml: "), line
    assert expected in line, line
    if where is not None:
        assert line.startswith(f"bad.yaml:{where}: "), line
    assert "Traceback" not in result.err + result.out
    assert result.out == ""


def test_at_least_25_malformed_cases():
    assert len(MALFORMED) >= 25


def test_cyclic_bases_are_detected(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.yaml").write_text("base: sub/b.yaml\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text("group_size: 4\nbase: ../a.yaml\n")
    result = cli("validate", "a.yaml")
    assert result.code == 2
    assert result.err.splitlines() == ["sub/b.yaml:2:7: base: cyclic base: a.yaml -> sub/b.yaml -> a.yaml"]


def test_self_base_is_a_cycle(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "self.yaml").write_text("base: self.yaml\n")
    result = cli("validate", "self.yaml")
    assert result.code == 2 and "cyclic base: self.yaml -> self.yaml" in result.err


def test_error_in_a_base_file_points_into_the_base(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "parent.yaml").write_text("base: efficientnet-b0\nnorm:\n  type: gn\n  groups: 5\n")
    (tmp_path / "child.yaml").write_text("base: parent.yaml\nname: child\n")
    result = cli("validate", "child.yaml")
    assert result.code == 2
    assert result.err.startswith("parent.yaml:4:11: norm.groups: 5 groups do not divide"), result.err


def test_missing_spec_file(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    result = cli("validate", "absent.yaml")
    assert (result.code, result.err) == (2, "absent.yaml: no such file\n")


def test_directory_instead_of_file(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.yaml").mkdir()
    result = cli("validate", "d.yaml")
    assert (result.code, result.err) == (2, "d.yaml: not a regular file\n")


def test_non_utf8_file(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bin.yaml").write_bytes(b"name: \xff\xfe\n")
    result = cli("validate", "bin.yaml")
    assert result.code == 2 and result.err.startswith("bin.yaml: not UTF-8 text")


def test_oversized_file_is_refused_before_parsing(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "big.yaml").write_text("description: '" + "x" * (2 << 20) + "'\n")
    result = cli("validate", "big.yaml")
    assert result.code == 2 and "a spec may be at most" in result.err


def test_several_specs_report_each_bad_one(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "good.yaml").write_text("base: efficientnet-b0\n")
    (tmp_path / "bad1.yaml").write_text("base: efficientnet-b0\ngroup_size: 0\n")
    (tmp_path / "bad2.yaml").write_text("[]\n")
    result = cli("validate", "good.yaml", "bad1.yaml", "bad2.yaml")
    assert result.code == 2
    assert result.out.startswith("ok  good.yaml")
    assert [line.split(":")[0] for line in result.err.splitlines()] == ["bad1.yaml", "bad2.yaml"]


# Hostile inputs run in a real interpreter under a memory cap and a timeout: no hang, no blow-up.
HOSTILE = {
    "alias-bomb": next(c[1] for c in MALFORMED if c[0] == "alias-bomb"),
    "deep-nesting": "stages: " + "[" * 5000 + "]" * 5000 + "\n",
    "deep-mapping": "".join("  " * i + f"k{i}:\n" for i in range(400)) + "  " * 400 + "v: 1\n",
    "python-object": "name: !!python/object/new:os.system [echo pwned]\n",
    "huge-int": "base: efficientnet-b0\nnum_classes: " + "9" * 4000 + "\n",
}


def _limit_memory():
    cap = 2 << 30  # 2 GiB of address space: torch is not imported by `validate`
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_input_in_a_fresh_process(tmp_path, name):
    (tmp_path / "evil.yaml").write_text(HOSTILE[name])
    result = run_archspec("validate", "evil.yaml", cwd=tmp_path, timeout=60, preexec_fn=_limit_memory)
    assert result.code == 2, result
    assert len(result.err.splitlines()) == 1, result.err
    assert result.err.startswith("evil.yaml"), result.err
    assert "Traceback" not in result.err and "pwned" not in result.out + result.err
