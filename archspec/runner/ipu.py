"""`archspec train --backend poptorch`: the IPU program compiled into the run directory, then run
(where PopTorch is installed). Here, in the runner, which owns run directories: the poptorch
backend only writes the program."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

from ..api import as_resolved, compile_files
from ..atomic import write_files
from ..backends.poptorch.codegen import IpuOptions
from ..errors import ProcessFailed, SpecError
from ..graph import build_graph
from .options import TrainOptions
from .recipe import backend_options
from .rundir import RunDir


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
    options = {"ipu": IpuOptions(ipus=opts.stages), **backend_options(opts.recipe)}
    files = compile_files(g, backend="poptorch", options=options)
    files["run.json"] = json.dumps({"backend": "poptorch", "status": "compiled", "spec": opts.spec}) + "\n"
    write_files(run.path, files)
    args = [sys.executable, str(run.path / "ipu_train.py"), "--seed", str(opts.seed)]
    for flag, value in (("--data", opts.data), ("--epochs", opts.epochs), ("--max-steps", opts.max_steps)):
        if value is not None:
            args += [flag, str(value)]
    code = subprocess.run(args).returncode
    if code:
        raise ProcessFailed("ipu_train.py", code)
