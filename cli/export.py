"""`archspec export`: a spec's or a run's model as ONNX, TorchScript or a torch.export program,
checked against the eager model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from archspec.limits import MAX_BATCH
from archspec.reader import SPEC

from .options import ChannelsLast, ExportFormat, Json, OnnxExporter, ResolutionFlag, Weights
from .paths import Reads, Writes
from .render import emit_json, warn
from .render import export as shown

if TYPE_CHECKING:
    from archspec.backends.torch.export import Source as ModelSource

Source = Annotated[
    str,
    typer.Argument(
        metavar="SOURCE",
        help="A spec (YAML file or preset name), or a run directory written by `archspec train`.",
        show_default=False,
        parser=Reads(SPEC, "source", missing_ok=True, runs=True, text=True),
    ),
]
Format = Annotated[ExportFormat, typer.Option("--format", help="What to write.", show_default=False)]
Exporter = Annotated[
    Optional[OnnxExporter],
    typer.Option(help="--format onnx: torch.onnx.export with dynamo=True (default) or the legacy dynamo=False."),
]
DynamicBatch = Annotated[
    bool, typer.Option("--dynamic-batch", help="Any batch size (TorchScript always); else --batch-size alone.")
]
Out = Annotated[
    Optional[Path],
    typer.Option(metavar="FILE", help="Where to write (default: NAME-rR.onnx|.pt|.pt2 here).", parser=Writes("out")),
]
WeightsFlag = Annotated[
    Optional[Weights],
    typer.Option(help="A run's weights; auto (default): what `eval` uses at --resolution (its fine-tune, else ema)."),
]
BatchSize = Annotated[int, typer.Option(min=1, max=MAX_BATCH, help="The batch of the exported graph and the check.")]
Seed = Annotated[int, typer.Option(min=0, help="A spec's initial weights.")]
FoldFlag = Annotated[
    bool, typer.Option("--fold/--no-fold", help="Fold BN into the conv before it (the inference form).")
]
Tolerance = Annotated[
    Optional[float], typer.Option(min=0, metavar="X", help="Largest |exported - eager| on the logits (default 1e-4).")
]


def export(
    source: Source,
    fmt: Format,
    exporter: Exporter = None,
    dynamic_batch: DynamicBatch = False,
    out: Out = None,
    resolution: ResolutionFlag = None,
    weights: WeightsFlag = None,
    batch_size: BatchSize = 1,
    seed: Seed = 0,
    tolerance: Tolerance = None,
    fold: FoldFlag = True,
    channels_last: ChannelsLast = False,
    as_json: Json = False,
) -> None:
    """Write the model (a run's trained weights, or a spec's initial ones) as ONNX, TorchScript or an
    exported program, run the file beside the eager model on random batches and print the largest
    difference; exit 1 where it exceeds the tolerance."""
    from archspec.backends.torch.export import TOLERANCE, export_model

    payload = export_model(
        _model_source(source, resolution, weights.value if weights else None, seed),
        fmt.value,
        exporter=exporter.value if exporter else None,
        dynamic_batch=dynamic_batch,
        out=out,
        batch_size=batch_size,
        tolerance=TOLERANCE if tolerance is None else tolerance,
        fold=fold,
        channels_last=channels_last,
    )
    for message in payload["warnings"]:
        warn(message)
    emit_json(payload) if as_json else shown.export_summary(payload)
    if not payload["ok"]:
        shown.check_failed(payload)
        raise typer.Exit(1)


def _model_source(source: Path | str, resolution: str | None, weights: str | None, seed: int) -> ModelSource:
    """A run's model with its trained weights (the runner owns run directories), or a spec's."""
    if Path(source).is_dir():
        from archspec.runner.evaluate import run_source

        return run_source(Path(source), resolution, weights)
    from archspec.backends.torch.export import spec_source

    return spec_source(str(source), resolution, weights, seed)


def register(app: typer.Typer) -> None:
    app.command()(export)
