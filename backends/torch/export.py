"""`archspec export`: a spec's model, or a trained run's, written as ONNX, TorchScript or a torch.export
program, then read back from the file and run beside the eager model on random batches.

| format           | written by                                   | read back and run by                |
|------------------|----------------------------------------------|-------------------------------------|
| onnx             | torch.onnx.export (dynamo=True, torch's      | onnxruntime.InferenceSession (CPU)  |
|                  | default; exporter="legacy": dynamo=False)    |                                     |
| torchscript      | torch.jit.script + torch.jit.save            | torch.jit.load                      |
| exported-program | torch.export.export + torch.export.save      | torch.export.load(...).module()     |

The written model is the inference form: BN folded into the conv before it (`fold`, the default;
`export --no-fold` keeps the BN layers), optionally in channels_last memory; the check runs the
file against the eager model as it was, unfolded, so it proves the folding too.

ONNX and exported programs fix the input's height and width (the export resolution) and, unless
`dynamic_batch`, its batch; a scripted model takes any shape. A run's weights are the ones `archspec
eval` uses at the export resolution (`weights="auto"`: the fine-tune at that resolution if the run has
one, else the EMA weights), or those named; a spec's model has its initial weights (from `seed`).
"""

from __future__ import annotations

import contextlib
import copy
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from archspec.atomic import check_writable, write_atomically
from archspec.errors import SpecError
from archspec.limits import MAX_BATCH
from archspec.resolution import congruence_warnings
from archspec.resolve import resolve
from archspec.spec import ModelSpec, load_spec

from .fast import FastPaths, prepare

FORMATS = {"onnx": ".onnx", "torchscript": ".pt", "exported-program": ".pt2"}
EXPORTERS = ("dynamo", "legacy")
TOLERANCE = 1e-4  # largest |exported - eager| accepted, on logits
INPUT, OUTPUT = "images", "logits"  # the graph's input and output names (ONNX)


@dataclass(frozen=True)
class Source:
    """The eager model to export and what it is."""

    model: nn.Module
    spec: ModelSpec
    resolution: int
    train_resolution: int
    weights: str  # initial | ema | finetuned | raw
    weights_file: Optional[str]
    weights_are: str
    origin: str  # what was named: a spec (file or preset) or a run directory
    is_run: bool


def spec_source(source: str, resolution: Optional[str], weights: Optional[str], seed: int) -> Source:
    """A spec's model with its initial weights (a run's trained ones: runner.evaluate.run_source)."""
    from archspec.api import build_model

    if weights not in (None, "auto"):
        raise SpecError("a spec has no trained weights: export a run directory for those", parameter="weights")
    spec = load_spec(source)
    res = resolve(spec)
    model = build_model(spec, seed=seed)
    picked = res.resolution.pick(resolution)
    return Source(model, spec, picked, res.resolution.train, "initial", None, f"seed {seed}", source, False)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch's notices about itself, not about this model (the deprecation of torch.jit.script and
    of the legacy exporter; the tracer's note on a Python bool inside F.group_norm's own batch
    check), kept off the terminal; and stdout kept for --json."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="Converting a tensor to a Python boolean")
        yield


def _onnx(model: nn.Module, x: torch.Tensor, exporter: str, dynamic_batch: bool) -> bytes:
    if exporter == "legacy":
        axes = {INPUT: {0: "batch"}, OUTPUT: {0: "batch"}} if dynamic_batch else None
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "model.onnx"
            torch.onnx.export(
                model, (x,), path, dynamo=False, dynamic_axes=axes, input_names=[INPUT], output_names=[OUTPUT]
            )
            return path.read_bytes()
    shapes = ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},) if dynamic_batch else None
    program = torch.onnx.export(
        model, (x,), dynamo=True, dynamic_shapes=shapes, verbose=False, input_names=[INPUT], output_names=[OUTPUT]
    )
    assert program is not None  # dynamo=True without a file returns the program
    return bytes(program.model_proto.SerializeToString())


def _write(model: nn.Module, x: torch.Tensor, fmt: str, exporter: str, dynamic_batch: bool, out: Path) -> None:
    """The model in `fmt`, traced with the example batch `x`, written atomically to `out`."""
    with _quiet():
        if fmt == "onnx":
            data = _onnx(model, x, exporter, dynamic_batch)
            write_atomically(out, lambda f: f.write(data))
        elif fmt == "torchscript":
            scripted = torch.jit.script(model)
            write_atomically(out, lambda f: torch.jit.save(scripted, f))
        else:
            shapes = ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},) if dynamic_batch else None
            program = torch.export.export(model, (x,), dynamic_shapes=shapes)
            write_atomically(out, lambda f: torch.export.save(program, f))


def _runner(fmt: str, out: Path) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """The written file, read back: a function of a batch, and what runs it."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        run = session.run
        return lambda x: torch.from_numpy(
            run([OUTPUT], {INPUT: x.numpy()})[0]
        ), f"onnxruntime {onnxruntime.__version__}"
    if fmt == "torchscript":
        return torch.jit.load(str(out)), "torch.jit.load"
    return torch.export.load(str(out)).module(), "torch.export.load"


def _check(model: nn.Module, fmt: str, out: Path, batches: list[int], shape: tuple[int, ...]) -> dict[str, Any]:
    with _quiet():
        run, runner = _runner(fmt, out)
    checks = []
    for batch in batches:
        x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected, got = model(x), run(x)
        checks.append(
            {
                "batch": batch,
                "max_abs_diff": float((got - expected).abs().max()),
                "max_abs_logit": float(expected.abs().max()),
            }
        )
    return {"checked_by": runner, "checks": checks}


def _onnx_opset(out: Path) -> Optional[int]:
    import onnx

    proto = onnx.load(str(out), load_external_data=False)
    onnx.checker.check_model(proto)
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def _validate(fmt: str, exporter: Optional[str], batch_size: int, tolerance: float) -> str:
    if fmt not in FORMATS:
        raise SpecError(f"must be one of {', '.join(FORMATS)}, got {fmt!r}", parameter="fmt")
    if exporter is not None and fmt != "onnx":
        raise SpecError(f"picks the ONNX exporter; --format {fmt} has none", parameter="exporter")
    if (exporter or "dynamo") not in EXPORTERS:
        raise SpecError(f"must be one of {', '.join(EXPORTERS)}, got {exporter!r}", parameter="exporter")
    if not 1 <= batch_size <= MAX_BATCH:
        raise SpecError(f"must be from 1 to {MAX_BATCH}, got {batch_size}", parameter="batch_size")
    if not tolerance > 0:
        raise SpecError(f"must be positive, got {tolerance}", parameter="tolerance")
    return exporter or "dynamo"


def export_model(
    src: Source,
    fmt: str,
    *,
    exporter: Optional[str] = None,
    dynamic_batch: bool = False,
    out: Optional[Path] = None,
    batch_size: int = 1,
    tolerance: float = TOLERANCE,
    fold: bool = True,
    channels_last: bool = False,
) -> dict[str, Any]:
    """Write `src`'s model (a spec's, or a run's with its weights: the runner reads run directories)
    in `fmt` to `out`, read it back and compare its logits with the eager model's: at `batch_size`,
    and with `dynamic_batch` (always, for TorchScript) at a second batch size too."""
    exporter = _validate(fmt, exporter, batch_size, tolerance)
    if fmt == "onnx":  # a missing `export` extra is said before the slow part, not after it
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401

        if exporter == "dynamo":
            import onnxscript  # noqa: F401
    is_run = src.is_run
    dynamic = dynamic_batch or fmt == "torchscript"
    path = out if out is not None else Path(f"{src.spec.name}-r{src.resolution}{FORMATS[fmt]}")
    check_writable(path, "out")
    if fmt == "exported-program" and path.suffix != ".pt2":  # torch.export.load reads no other name
        raise SpecError(f"{path}: an exported program's file name must end in .pt2", parameter="out")
    model = src.model.eval()
    # the file holds the inference form; the check below runs it against `model`, unfolded
    written, _, folded = prepare(copy.deepcopy(model), FastPaths(channels_last=channels_last, fold=fold), "cpu")
    shape = (resolve(src.spec).in_channels, src.resolution, src.resolution)
    # torch.export specialises a batch of 1 (or 0) to a constant: trace a dynamic batch with 2
    example = torch.randn(
        max(batch_size, 2) if dynamic else batch_size, *shape, generator=torch.Generator().manual_seed(0)
    )
    started = time.perf_counter()
    if channels_last:
        example = example.contiguous(memory_format=torch.channels_last)
    _write(written, example, fmt, exporter, dynamic, path)
    exported = time.perf_counter()
    checked = _check(model, fmt, path, [batch_size, batch_size + 2] if dynamic else [batch_size], shape)
    largest = max(c["max_abs_diff"] for c in checked["checks"])
    n = resolve(src.spec).downsampling_layers
    return {
        "source": src.origin,
        "kind": "run" if is_run else "spec",
        "name": src.spec.name,
        "format": fmt,
        "exporter": exporter if fmt == "onnx" else None,
        "opset": _onnx_opset(path) if fmt == "onnx" else None,
        "out": str(path),
        "bytes": path.stat().st_size,
        "resolution": src.resolution,
        "input_shape": ["batch" if dynamic else batch_size, *shape],
        "dynamic_batch": dynamic,
        "folded_bn": folded if fold else None,  # None: --no-fold
        "channels_last": channels_last,
        "weights": src.weights,
        "weights_file": src.weights_file,
        "weights_are": src.weights_are,
        **checked,
        "max_abs_diff": largest,
        "tolerance": tolerance,
        "ok": largest <= tolerance,
        "seconds": {"export": round(exported - started, 2), "check": round(time.perf_counter() - exported, 2)},
        # trained weights lose accuracy where the stride-2 layers meet sizes training never did
        "warnings": congruence_warnings(src.train_resolution, [src.resolution], n) if is_run else [],
    }
