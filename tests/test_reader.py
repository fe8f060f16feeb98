"""The one reader (archspec/reader.py) and the one write check (archspec/atomic.py), issue 25:
what each refuses, that reading never blocks or recurses without bound, and that no command reads
a file the user names except through the reader (a walk over the command line's options, and a
scan of the package's source for file reads outside it)."""

from __future__ import annotations

import ast
import errno
import json
import os
import socket
import threading
import typing
from pathlib import Path

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st

from archspec import reader
from archspec.atomic import Appender, check_writable, check_writable_dir, write_text
from archspec.errors import DiskFull, SpecError
from archspec.limits import MAX_DEPTH
from conftest import ROOT, SPECS

TINY = SPECS / "tiny.yaml"


# --------------------------------------------------------------------------------------------
# the reader, file by file


@pytest.fixture
def hostile(tmp_path) -> dict[str, Path]:
    """Files no reader may read, and the part of the message that says why."""
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    (tmp_path / "to-proc").symlink_to("/proc/self/status")
    (tmp_path / "to-zero").symlink_to("/dev/zero")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    sock.close()
    return {
        "/dev/zero": Path("/dev/zero"),
        "/proc/self/status": Path("/proc/self/status"),
        "fifo": tmp_path / "fifo",
        "directory": tmp_path / "dir",
        "socket": tmp_path / "sock",
        "link-to-proc": tmp_path / "to-proc",
        "link-to-dev-zero": tmp_path / "to-zero",
        "dangling-link": tmp_path / "dangling",
        "missing": tmp_path / "absent",
    }


WHY = {
    "/dev/zero": "a system file under /dev",
    "/proc/self/status": "a system file under /proc",
    "fifo": "not a regular file (a named pipe)",
    "directory": "not a regular file",
    "socket": "not a regular file (a socket)",
    "link-to-proc": "a system file under /proc",
    "link-to-dev-zero": "a system file under /dev",
    "dangling-link": "no such file",
    "missing": "no such file",
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", reader.KINDS, ids=[k.name for k in reader.KINDS])
def test_every_kind_refuses_what_is_not_a_regular_file(hostile, kind):
    for name, path in hostile.items():
        with pytest.raises(SpecError) as err:
            reader.read_bytes(path, kind, parameter="flag")
        assert WHY[name] in err.value.message, (name, err.value.line())
        assert err.value.file == str(path) and err.value.parameter == "flag"
        with pytest.raises(SpecError):
            reader.check_file(path, kind)


def test_a_link_to_a_regular_file_is_followed(tmp_path):
    (tmp_path / "real.json").write_text('{"a": [1, 2]}')
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "link.json").symlink_to(tmp_path / "real.json")
    assert reader.read_json(tmp_path / "elsewhere" / "link.json", reader.RECORD) == {"a": [1, 2]}


@pytest.mark.parametrize("kind", [reader.SPEC, reader.PROFILE, reader.RECORD], ids=lambda k: k.name)
def test_a_file_over_its_kind_s_limit_is_refused_before_it_is_read(tmp_path, kind, monkeypatch):
    huge = tmp_path / "huge"
    with open(huge, "wb") as f:  # sparse: nothing is written, nothing may be read
        f.truncate(kind.limit + 1)
    reads = []
    monkeypatch.setattr(reader.os, "fdopen", lambda *a, **k: reads.append(a))
    with pytest.raises(SpecError, match=f"a {kind.name} may be at most {kind.limit}"):
        reader.read_bytes(huge, kind)
    assert not reads
    huge.write_bytes(b" " * kind.limit)
    monkeypatch.undo()
    assert len(reader.read_bytes(huge, kind)) == kind.limit


def test_a_file_that_grows_while_read_stops_at_the_limit(tmp_path, monkeypatch):
    kind = reader.Kind("tiny", "tiny file", 100)
    path = tmp_path / "growing"
    path.write_bytes(b"x" * 210)
    real_fstat = os.fstat

    def small(fd):  # what fstat said before the file grew to 210 bytes
        info = list(real_fstat(fd))
        info[stat_size] = 10
        return os.stat_result(info)

    stat_size = 6
    monkeypatch.setattr(os, "fstat", small)
    with pytest.raises(SpecError, match="file is over 100 bytes"):
        reader.read_bytes(path, kind)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a":' * 60 + "1" + "}" * 60, "[" * 100_000])
def test_deep_json_is_refused_before_json_recurses(tmp_path, text):
    path = tmp_path / "deep.json"
    path.write_text(text)
    with pytest.raises(SpecError, match=f"JSON nested deeper than {MAX_DEPTH} levels"):
        reader.read_json(path, reader.PROFILE)


def test_json_at_the_depth_limit_and_brackets_inside_strings_are_read(tmp_path):
    path = tmp_path / "ok.json"
    deepest = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    path.write_text(json.dumps({"s": "[[[[" * 1000 + '\\"{'}))
    assert reader.read_json(path, reader.RECORD)["s"].startswith("[[[[")
    path.write_text(deepest)
    assert reader.read_json(path, reader.RECORD) == json.loads(deepest)


def _depth(text: str) -> int:
    """The reference: a character at a time, json's own string rules."""
    depth = peak = 0
    in_string = escaped = False
    for c in text:
        if in_string:
            in_string, escaped = (in_string, False) if escaped else (c != '"', c == "\\")
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            peak = max(peak, depth)
        elif c in "]}":
            depth -= 1
    return peak


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='[]{}"\\ a,é', max_size=80), st.integers(0, 12))
def test_json_depth_agrees_with_a_character_by_character_count(text, limit):
    assert reader.json_too_deep(text, limit) == (_depth(text) > limit)


def test_deep_and_aliased_yaml_is_bounded(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(SpecError, match="nesting is too deep"):
        reader.read_yaml(path, reader.RECIPE)
    bomb = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    path.write_text(bomb)
    with pytest.raises(SpecError, match="expands to more than"):
        reader.read_yaml(path, reader.SEARCH)


def test_directories_are_checked(tmp_path, hostile):
    assert reader.check_directory(tmp_path) == tmp_path
    (tmp_path / "to-dir").symlink_to(tmp_path / "dir")
    assert reader.check_directory(tmp_path / "to-dir") == tmp_path / "to-dir"
    for path, says in [
        ("/proc/self", "/proc is the kernel's"),
        ("/dev", "/dev is the kernel's"),
        (hostile["fifo"], "not a directory (a named pipe)"),
        (TINY, "not a directory (a file)"),
        (tmp_path / "absent", "no such directory"),
    ]:
        with pytest.raises(SpecError, match=r"\(?" + says.replace("(", r"\(").replace(")", r"\)")) as err:
            reader.check_directory(path, parameter="data")
        assert err.value.message.startswith(f"{path}: ") and err.value.parameter == "data"


# --------------------------------------------------------------------------------------------
# the write check and the writer


def _statvfs_with(monkeypatch, **fields):
    real = os.statvfs

    def fake(path):
        r = real(path)
        values = {name: getattr(r, name) for name in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail")}
        values |= {name: getattr(r, name) for name in ("f_files", "f_ffree", "f_favail", "f_flag", "f_namemax")}
        values |= fields
        return os.statvfs_result(tuple(values.values()))

    monkeypatch.setattr(os, "statvfs", fake)


@pytest.mark.parametrize("check", [check_writable, check_writable_dir], ids=["file", "directory"])
def test_the_write_check_refuses_where_nothing_can_be_written(tmp_path, monkeypatch, check):
    for place, says in [
        ("/proc/x", "/proc is the kernel's"),
        ("/sys/x", "/sys is the kernel's"),
        ("/dev/shm-not/x", "/dev is the kernel's"),
    ]:
        with pytest.raises(SpecError, match=says):
            check(Path(place), "out")
    assert check(tmp_path / "x", "out") == tmp_path / "x"
    _statvfs_with(monkeypatch, f_flag=os.ST_RDONLY)
    with pytest.raises(SpecError, match=f"{tmp_path} is on a read-only file system") as err:
        check(tmp_path / "x", "out")
    assert err.value.parameter == "out" and err.value.message.startswith(f"{tmp_path / 'x'}: ")
    monkeypatch.undo()
    _statvfs_with(monkeypatch, f_bavail=0)
    with pytest.raises(SpecError, match=r"the disk is full \(0 bytes free on the file system of"):
        check(tmp_path / "x", "out")


def test_a_full_disk_while_writing_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "out.yaml"
    write_text(target, "before\n")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiskFull) as err:
        write_text(target, "after\n" * 1000)
    assert str(err.value) == f"disk full: {target} (No space left on device)"
    assert target.read_text() == "before\n" and not list(tmp_path.glob(".*.tmp"))


def test_an_appended_record_is_whole_or_cut_back(tmp_path, monkeypatch):
    log = Appender(tmp_path / "metrics.csv")
    log.write("a,b\n")
    real_write = os.write

    def half(fd, data):  # half a record reaches the disk, then it is full
        if len(data) > 2:
            return real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", half)
    with pytest.raises(DiskFull, match=r"disk full: .*metrics\.csv"):
        log.write("1,2\n")
    monkeypatch.undo()
    log.close()
    assert (tmp_path / "metrics.csv").read_text() == "a,b\n"


@pytest.mark.timeout(30)
def test_a_log_is_never_opened_on_a_fifo_or_through_a_link(tmp_path):
    os.mkfifo(tmp_path / "fifo.csv")
    with pytest.raises(SpecError, match="not a regular file"):
        Appender(tmp_path / "fifo.csv")
    (tmp_path / "victim").write_text("keep")
    (tmp_path / "link.csv").symlink_to(tmp_path / "victim")
    with pytest.raises(SpecError, match="symbolic link"):
        Appender(tmp_path / "link.csv")
    assert (tmp_path / "victim").read_text() == "keep"


# --------------------------------------------------------------------------------------------
# no command reads a file except through the reader: the command line's options...

# what names a path on the command line, besides a Path annotation
PATH_METAVARS = {"SPEC", "FILE", "DIR", "RUN", "SOURCE", "FILE.json", "FILE.png"}


def _path_parameters() -> list[tuple[str, str, object, str]]:
    """(command, parameter, its parser, its metavar) of every argument and flag that names a path."""
    from archspec.cli.app import app

    functions = [("", app.registered_callback.callback)] + [
        (c.name or c.callback.__name__, c.callback) for c in app.registered_commands
    ]
    found = []
    for command, function in functions:
        for name, hint in typing.get_type_hints(function, include_extras=True).items():
            if typing.get_origin(hint) is not typing.Annotated:
                continue
            annotation, *extras = typing.get_args(hint)
            info = next(e for e in extras if isinstance(e, typer.models.ParameterInfo))
            paths = Path in {annotation, *typing.get_args(annotation)} or any(
                Path in typing.get_args(a) for a in typing.get_args(annotation)
            )
            if paths or info.metavar in PATH_METAVARS:
                found.append((command, name, info.parser, info.metavar))
    return found


def test_every_path_on_the_command_line_goes_through_the_reader_or_the_write_check():
    from archspec.cli.paths import Reads, Writes

    found = _path_parameters()
    names = {(c, n) for c, n, _, _ in found}
    assert {("stats", "profile"), ("search", "profile"), ("train", "recipe"), ("train", "data")} <= names
    assert {("", "spec_root"), ("eval", "run"), ("export", "source"), ("export", "out")} <= names
    bypassing = [(c, n, m) for c, n, parser, m in found if not isinstance(parser, (Reads, Writes))]
    assert not bypassing, f"these take a path but neither the reader nor the write check parses it: {bypassing}"


def test_every_file_read_on_the_command_line_has_hostile_file_tests():
    """tests/test_hostile_inputs.py tries hostile files on every flag that names one to read."""
    from test_hostile_inputs import READERS_COVERED

    from archspec.cli.paths import Reads

    readers = {(c, n) for c, n, parser, _ in _path_parameters() if isinstance(parser, Reads)}
    assert readers - READERS_COVERED == set()


@pytest.mark.timeout(60)
def test_a_flag_s_file_is_checked_as_it_is_parsed(cli, tmp_path, monkeypatch):
    """A FIFO given to any reading flag is refused at once, before the command would import torch
    or do any work; a thread stands by to free a reader that blocked on it."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    blocked = []

    def free_a_blocked_reader() -> None:
        while not stop.wait(2):
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                blocked.append(True)
            except OSError:
                pass

    stop = threading.Event()
    threading.Thread(target=free_a_blocked_reader, daemon=True).start()
    try:
        for args in (
            ("stats", TINY, "--profile", fifo),
            ("train", TINY, "--recipe", fifo, "--out", tmp_path / "run"),
            ("train", fifo, "--out", tmp_path / "run"),
            ("search", fifo, "--out", tmp_path / "s"),
            ("export", fifo, "--format", "onnx"),
        ):
            result = cli(*args)
            assert result.code == 2 and result.err == f"{fifo}: {_flag(args)}not a regular file (a named pipe)\n"
    finally:
        stop.set()
    assert not blocked and not (tmp_path / "run").exists() and not (tmp_path / "s").exists()


def _flag(args) -> str:
    for flag in ("--profile", "--recipe"):
        if flag in args:
            return f"{flag}: "
    return "SOURCE: " if args[0] == "export" else ""


# --------------------------------------------------------------------------------------------
# ... and the package's source: every call that opens or parses a file, outside the reader, is
# one of these (a writer, a system file, or bytes the reader read), each with its reason

ALLOWED = {
    ("archspec/atomic.py", "os.open"): (2, "the writer: a temp file (O_EXCL | O_NOFOLLOW) and logs appended to"),
    ("archspec/runner/rundir.py", "os.open"): (1, "the run's lock file, opened O_NOFOLLOW and checked regular"),
    ("archspec/runner/checkpoint.py", "torch.load"): (1, "bytes the reader read (io.BytesIO), weights only"),
    ("archspec/runner/data.py", "Image.open"): (1, "bytes the reader read (io.BytesIO)"),
    ("archspec/runner/worker.py", "json.loads"): (1, "the job in the environment a launcher set, not a file"),
    ("archspec/yaml_source.py", "json.loads"): (1, "json.loads(json.dumps(...)): a value, not a file"),
    ("archspec/search/store.py", "Path(f'/proc/{pid}/stat').read_text"): (1, "a system read: a process's start"),
    ("backends/torch/codegen.py", "(HERE / f'{module}.py').read_text"): (1, "archspec's own layer source"),
    ("backends/torch/codegen.py", "Path(found.origin).read_text"): (1, "an installed plug-in's layer source"),
    ("backends/torch/profile.py", "open"): (1, "a system read: /proc/cpuinfo, the machine a profile records"),
    ("backends/torch/export.py", "path.read_bytes"): (1, "torch's ONNX output in a temporary directory of ours"),
    ("backends/torch/export.py", "onnx.load"): (1, "the file just written, read back to check it"),
    ("backends/torch/export.py", "torch.jit.load"): (1, "the file just written, read back to check it"),
    ("backends/torch/export.py", "torch.export.load"): (1, "the file just written, read back to check it"),
    ("backends/torch/export.py", "onnxruntime.InferenceSession"): (1, "the file just written, run to check it"),
}
LOADERS = {"json", "yaml", "torch", "torch.jit", "torch.export", "onnx", "pickle", "np", "numpy", "Image", "os"}
READ_METHODS = {"read_text", "read_bytes"}
LOAD_FUNCTIONS = {"load", "loads", "safe_load", "full_load", "unsafe_load", "open", "InferenceSession"}


def _reads(path: Path) -> list[str]:
    """Calls in `path` that open or parse a file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id == "open":
            out.append("open")
        elif isinstance(f, ast.Attribute) and (
            f.attr in READ_METHODS or (f.attr in LOAD_FUNCTIONS and ast.unparse(f.value) in LOADERS | {"onnxruntime"})
        ):
            out.append(ast.unparse(f))
    return out


def test_no_file_is_read_outside_the_reader_but_the_allowed_ones():
    found: dict[tuple[str, str], int] = {}
    for folder in ("archspec", "backends", "cli"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative == "archspec/reader.py" or "templates" in path.parts:
                continue
            for call in _reads(path):
                found[(relative, call)] = found.get((relative, call), 0) + 1
    unexpected = {k: n for k, n in found.items() if ALLOWED.get(k, (0,))[0] != n}
    assert not unexpected, f"file reads outside archspec/reader.py (route them through it, or allow them): {unexpected}"
    assert not set(ALLOWED) - set(found), "allowed reads that are gone: drop them from ALLOWED"
