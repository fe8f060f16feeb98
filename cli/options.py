"""Flags shared by several commands, declared once, and the parsers of list and count flags.

A fixed choice is an Enum, so typer itself refuses a bad value (one line, exit 2); a choice the
core declares (backends, conventions, rounding rules: plug-ins may add backends) is read from the
core's registry or Literal and parsed with `parser=`, as list and count flags are, whose errors
typer reports the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional, get_args

import typer

from archspec import backend
from archspec.conventions import NAMES as CONVENTIONS
from archspec.limits import MAX_BATCH, MAX_LIST_ITEMS
from archspec.reader import PROFILE, RECIPE, SPEC
from archspec.spec import ModelSpec

from .paths import Reads, Writes

SPEC_HELP = "A spec file (YAML) or a preset name (efficientnet-b0 ... b7)."
RESOLUTION_HELP = "Pixels, or native, half or train (default: train)."


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


class Dtype(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Schedule(str, Enum):
    gpipe = "gpipe"
    one_f_one_b = "1f1b"


class Metric(str, Enum):
    macs = "macs"
    params = "params"


def _literal(field: str) -> tuple[Any, ...]:
    """The values a spec field's Literal allows (the core's declaration, not restated here)."""
    return get_args(ModelSpec.model_fields[field].annotation)


class OneOf:
    """A parser (and its metavar) for a choice the core declares: one of `names`."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.metavar = "|".join(names)

    def __call__(self, value: str) -> str:
        if value not in self.names:
            raise typer.BadParameter(f"must be one of {', '.join(self.names)}, got {value!r}")
        return value


BACKENDS = OneOf(backend.names())  # archspec.backend's registry, plug-ins included
CONVENTIONS_CHOICE = OneOf(CONVENTIONS)
GROUP_ROUNDINGS = OneOf(_literal("group_rounding"))
MID_CHANNEL_ROUNDINGS = OneOf(_literal("mid_channel_rounding"))


class Weights(str, Enum):
    auto = "auto"
    finetuned = "finetuned"
    ema = "ema"
    raw = "raw"


class Dataset(str, Enum):
    synthetic = "synthetic"


class ExportFormat(str, Enum):
    onnx = "onnx"
    torchscript = "torchscript"
    exported_program = "exported-program"


class OnnxExporter(str, Enum):
    """torch.onnx.export's two exporters: dynamo=True (torch.export-based) or False (TorchScript-based)."""

    dynamo = "dynamo"
    legacy = "legacy"


ChannelsLast = Annotated[
    bool, typer.Option("--channels-last", help="Run the model and its inputs in channels_last memory format.")
]
Compiled = Annotated[bool, typer.Option("--compile", help="torch.compile the model first (exit 2 where it cannot).")]
Fold = Annotated[bool, typer.Option("--fold", help="Inference: fold BN into the conv before it.")]


class UsageError(Exception):
    """Flags that do not go together: one line naming the command, exit 2."""


_SUFFIX = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "B": 1e9, "T": 1e12}


def count(value: str) -> int:
    """'390M', '0.39G', '5.3e6' or '390,000,000' -> an integer count."""
    text = value.strip().replace(",", "").replace("_", "")
    scale = _SUFFIX.get(text[-1:], 1.0)
    try:
        number = float(text[:-1] if scale != 1.0 else text) * scale
    except ValueError:
        raise typer.BadParameter(f"expected a count such as 390000000, 390M or 0.39G, got {_quoted(value)}") from None
    if not 0 < number < 1e18:
        raise typer.BadParameter(f"must be a positive count, got {_quoted(value)}")
    return round(number)


def _quoted(value: str) -> str:
    """A flag's value as an error quotes it: short (it may be anything)."""
    return repr(value) if len(value) <= 40 else repr(value[:36]) + "..."


def listing(kind: Callable[[str], object], words: str) -> Callable[[str], list[object]]:
    def parse(value: str) -> list[object]:
        if value.count(",") >= MAX_LIST_ITEMS:  # counted before any item is parsed
            raise typer.BadParameter(f"at most {MAX_LIST_ITEMS} items, got {value.count(',') + 1}")
        items = [v.strip() for v in value.split(",") if v.strip()]
        if not items:
            raise typer.BadParameter(f"give a comma-separated list, got {_quoted(value)}")
        try:
            return [kind(v) for v in items]
        except ValueError:
            raise typer.BadParameter(f"expected comma-separated {words}, got {_quoted(value)}") from None

    return parse


ints = listing(int, "integers")
numbers = listing(float, "numbers")

SpecArg = Annotated[
    str,
    typer.Argument(
        help=SPEC_HELP, metavar="SPEC", show_default=False, parser=Reads(SPEC, None, missing_ok=True, text=True)
    ),
]
RunArg = Annotated[
    Path,
    typer.Argument(
        help="A run directory written by `archspec train`.",
        metavar="RUN",
        show_default=False,
        parser=Reads(None, "run", missing_ok=True),
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
ResolutionFlag = Annotated[
    Optional[str], typer.Option("--resolution", help=RESOLUTION_HELP, metavar="PX|native|half|train")
]
CostBatch = Annotated[
    int,
    typer.Option(
        "--batch-size", min=1, max=MAX_BATCH, help="Batch size for activation memory and arithmetic intensity."
    ),
]
DeviceFlag = Annotated[Device, typer.Option("--device", help="Where to run.")]
Nproc = Annotated[int, typer.Option("--nproc", min=1, max=1024, help="Processes on this machine (torch.distributed).")]
MaxSteps = Annotated[
    Optional[int], typer.Option("--max-steps", min=1, help="Stop after this many optimizer steps.", metavar="N")
]
Epochs = Annotated[Optional[float], typer.Option("--epochs", help="Epochs (default: the recipe's).", metavar="N")]
MicroBatch = Annotated[int, typer.Option("--micro-batch", min=1, max=1 << 16, help="Images per micro-batch.")]
MemoryFraction = Annotated[float, typer.Option("--memory-fraction", help="Usable share of an IPU's 900 MB.")]
WritePath = Annotated[
    Optional[Path],
    typer.Option("--write", help="Save the result here (YAML).", metavar="FILE", parser=Writes("write")),
]
ProfilePath = Annotated[
    Optional[Path],
    typer.Option(
        "--profile",
        help="A device profile (archspec profile): predict speed from it.",
        metavar="FILE.json",
        parser=Reads(PROFILE, "profile"),
    ),
]
PlotPath = Annotated[
    Optional[Path],
    typer.Option("--plot", parser=Writes("plot", png=True), help="Write a PNG figure here.", metavar="FILE.png"),
]
RecipePath = Annotated[
    Optional[Path],
    typer.Option(
        "--recipe", help="A recipe YAML overriding the paper's.", metavar="FILE", parser=Reads(RECIPE, "recipe")
    ),
]
