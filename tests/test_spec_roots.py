"""Specs read only specs (issue 17, class 3): a `base:` must be a .yaml file under the allowed roots
(the top spec's own directory tree, --spec-root / ARCHSPEC_SPEC_ROOTS, load_spec's roots=), a
regular file once its links are resolved, and size-bounded; a refusal is one line that quotes
nothing of the file it refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import archspec
from archspec.spec import SPEC_ROOTS_VARIABLE
from conftest import SPECS, run_archspec

SECRET = "hunter2-not-a-spec"  # what a refused file holds: it must never reach the output


@pytest.fixture(autouse=True)
def _no_roots_from_outside(monkeypatch):
    monkeypatch.delenv(SPEC_ROOTS_VARIABLE, raising=False)


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """tmp/project/spec dir (the top spec's tree) beside tmp/private (not a root)."""
    project, private = tmp_path / "project", tmp_path / "private"
    (project / "sub").mkdir(parents=True)
    private.mkdir()
    (private / "secret.yaml").write_text(f"password: {SECRET}\n")
    (private / "passwd").write_text(f"root:x:0:0:{SECRET}:/root:/bin/bash\n")
    (private / "spec.yaml").write_text("base: efficientnet-b0\nwidth_multiplier: 0.5\n")
    monkeypatch.chdir(project)
    return project, private


def _refused(result, *needles: str) -> str:
    assert result.code == 2, result
    lines = result.err.splitlines()
    assert len(lines) == 1 and len(lines[0]) <= 500, result.err
    assert SECRET not in result.out + result.err and "Traceback" not in result.err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_base_etc_passwd_is_refused_without_reading_it(cli, tree):
    Path("evil.yaml").write_text("base: /etc/passwd\n")
    line = _refused(cli("validate", "evil.yaml"), "evil.yaml:1:7: base:", "a preset or a .yaml file")
    assert "root:" not in line


def test_a_symlink_to_etc_passwd_is_refused(cli, tree):
    project, private = tree
    Path("passwd.yaml").symlink_to("/etc/passwd")
    Path("mine.yaml").symlink_to(private / "passwd")
    for name in ("passwd.yaml", "mine.yaml"):
        Path("evil.yaml").write_text(f"base: {name}\n")
        line = _refused(cli("validate", "evil.yaml"), "base:", "outside the directories specs may be read from")
        assert "root:" not in line and str(project) in line  # it names the root it allows


def test_dotdot_leaving_the_roots_is_refused_even_for_a_spec(cli, tree):
    """A real spec file outside the tree: refused all the same (and not read: no existence oracle)."""
    for base in ("../private/spec.yaml", "sub/../../private/secret.yaml", "../../../../etc/x.yaml"):
        Path("evil.yaml").write_text(f"base: {base}\n")
        _refused(cli("validate", "evil.yaml"), "outside the directories", "--spec-root DIR")


def test_a_named_root_allows_its_specs_by_flag_and_by_environment(cli, tree, monkeypatch):
    _, private = tree
    Path("mine.yaml").write_text("base: ../private/spec.yaml\nname: mine\n")
    assert cli("validate", "mine.yaml").code == 2
    assert cli("--spec-root", private, "validate", "mine.yaml").code == 0
    assert SPEC_ROOTS_VARIABLE not in os.environ  # the flag lasts as long as the command
    monkeypatch.setenv(SPEC_ROOTS_VARIABLE, f"/nonexistent{os.pathsep}{private}")
    assert cli("validate", "mine.yaml").code == 0
    # a root admits specs, never other files
    Path("evil.yaml").write_text("base: ../private/passwd\n")
    _refused(cli("validate", "evil.yaml"), "a preset or a .yaml file")


def test_inside_the_tree_and_the_shipped_chain_are_read(cli, tree):
    Path("other.yaml").write_text("base: efficientnet-b0\ngroup_size: 16\n")
    Path("sub/parent.yaml").write_text("base: ../other.yaml\nwidth_multiplier: 0.5\n")
    Path("top.yaml").write_text("base: sub/parent.yaml\nname: top\n")
    # a base's own base may climb back up to anywhere in the top spec's tree
    assert cli("validate", "top.yaml").code == 0
    # ... but named as the top spec itself, sub/parent.yaml's tree is sub/
    _refused(cli("validate", "sub/parent.yaml"), "outside the directories")
    assert cli("validate", SPECS / "b0_g16_lnpn_half.yaml").code == 0  # base: b0_g16.yaml beside it


def test_user_spec_elsewhere_based_on_a_shipped_one(cli, tree):
    Path("mine.yaml").write_text(f"base: {SPECS / 'b0_g16_lnpn_half.yaml'}\nname: mine\n")
    line = _refused(cli("validate", "mine.yaml"), "outside the directories")
    assert "ARCHSPEC_SPEC_ROOTS" in line
    result = cli("--spec-root", SPECS, "validate", "mine.yaml")
    assert result.code == 0 and "mine: 7 stages" in result.out


def test_python_api_roots(tree):
    project, private = tree
    Path("mine.yaml").write_text("base: ../private/spec.yaml\n")
    with pytest.raises(archspec.SpecError, match="outside the directories"):
        archspec.load_spec("mine.yaml")
    assert archspec.load_spec("mine.yaml", roots=[private]).width_multiplier == 0.5
    # a mapping's own base is named by the caller, like a path given to load_spec; that file's
    # base then obeys the rule from its own directory
    assert archspec.load_spec({"base": str(private / "spec.yaml")}).width_multiplier == 0.5
    with pytest.raises(archspec.SpecError, match="outside the directories"):
        archspec.load_spec({"base": str(project / "mine.yaml")})
    assert archspec.load_spec({"base": str(project / "mine.yaml")}, roots=[private]).width_multiplier == 0.5


def test_base_that_is_not_a_regular_file(cli, tree):
    Path("dir.yaml").mkdir()
    Path("evil.yaml").write_text("base: dir.yaml\n")
    _refused(cli("validate", "evil.yaml"), "is not a regular file")
    Path("zero.yaml").symlink_to("/dev/zero")
    Path("evil.yaml").write_text("base: zero.yaml\n")
    _refused(cli("validate", "evil.yaml"), "outside the directories")
    # named directly, a device or a kernel file is not read either
    for special in ("/dev/zero", "/proc/self/maps"):
        _refused(cli("validate", special), "not a spec file")


def test_a_fifo_named_as_base_does_not_hang(tree):
    project, _ = tree
    os.mkfifo(project / "pipe.yaml")
    (project / "evil.yaml").write_text("base: pipe.yaml\n")
    result = run_archspec("validate", "evil.yaml", cwd=project, timeout=60)
    _refused(result, "is not a regular file")
    result = run_archspec("validate", "pipe.yaml", cwd=project, timeout=60)
    _refused(result, "pipe.yaml: not a regular file")


def test_an_oversized_base_is_refused_before_it_is_read(cli, tree):
    Path("big.yaml").write_text("description: '" + "x" * (2 << 20) + "'\n")
    Path("evil.yaml").write_text("base: big.yaml\n")
    _refused(cli("validate", "evil.yaml"), "big.yaml: file is", "a spec may be at most")


def test_a_bad_spec_root_is_one_line(cli, tree):
    missing = cli("--spec-root", "/nonexistent/dir", "validate", "x.yaml")
    _refused(missing, "--spec-root: /nonexistent/dir: no such directory")
    _refused(cli("--spec-root", "a\x00b", "validate", "x.yaml"), "--spec-root", "NUL byte")


def test_an_allowed_file_that_is_not_a_spec_is_quoted_only_in_a_short_escaped_excerpt(cli, tree):
    _, private = tree
    (private / "long.yaml").write_text(SECRET + "x" * 5000 + "\n")
    Path("mine.yaml").write_text("base: ../private/long.yaml\n")
    result = cli("--spec-root", private, "validate", "mine.yaml")
    assert result.code == 2 and "the top level must be a mapping" in result.err
    assert len(result.err) < 200 and "x" * 40 not in result.err
    (private / "long.yaml").write_text("\x1b[31m" + "x" * 5000 + "\n")
    line = _refused(cli("--spec-root", private, "validate", "mine.yaml"), "YAML error")
    assert "\x1b" not in line and "x" * 40 not in line
