"""`archspec train --backend poptorch`: the IPU program compiled into the run directory, then run
(where PopTorch is installed)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

from archspec.api import as_resolved, compile_files
from archspec.atomic import write_files
from archspec.errors import ProcessFailed, SpecError
from archspec.graph import build_graph
from archspec.runner.options import TrainOptions
from archspec.runner.rundir import RunDir

from .codegen import IpuOptions


def run_ipu(opts: TrainOptions) -> None:
    """Compile the IPU program (`compile --backend poptorch`'s defaults, one IPU per stage) into the
    run directory and run it."""
    if importlib.util.find_spec("poptorch") is None:
        raise SpecError("PopTorch is not installed (it ships with Graphcore's Poplar SDK)")
    unsupported = [
        name
        for name, given in (
            ("resume", opts.resume),
            ("batch_size", opts.batch_size is not None),
            ("accum", opts.accum is not None),
            ("device", opts.device != "cpu"),
        )
        if given
    ]
    if unsupported:
        raise SpecError(
            "not with --backend poptorch (the IPU program sets its own batch and device; compile it "
            "with `archspec compile --backend poptorch` to choose them)",
            parameter=unsupported[0],
        )
    run = RunDir(opts.out, "out")
    run.create()
    resolved = as_resolved(opts.spec)
    g = build_graph(resolved, resolved.resolution.pick(opts.resolution))
    files = compile_files(g, ipu=IpuOptions(ipus=opts.stages), recipe=opts.recipe)
    files["run.json"] = json.dumps({"backend": "poptorch", "status": "compiled", "spec": opts.spec}) + "\n"
    write_files(run.path, files)
    args = [sys.executable, str(run.path / "ipu_train.py"), "--seed", str(opts.seed)]
    for flag, value in (("--data", opts.data), ("--epochs", opts.epochs), ("--max-steps", opts.max_steps)):
        if value is not None:
            args += [flag, str(value)]
    code = subprocess.run(args).returncode
    if code:
        raise ProcessFailed("ipu_train.py", code)
