"""`archspec bench`: what the compiled model measures on this machine."""

from __future__ import annotations

from typing import Annotated

import typer

from archspec.api import as_resolved

from . import render
from .options import Device, DeviceFlag, Json, ResolutionFlag, SpecArg


def bench(
    spec: SpecArg,
    device: DeviceFlag = Device.cpu,
    train: Annotated[bool, typer.Option("--train", help="Time forward + backward instead of inference.")] = False,
    compiled: Annotated[bool, typer.Option("--compile", help="torch.compile the model first.")] = False,
    vs_timm: Annotated[bool, typer.Option("--vs-timm", help="Also time timm's equivalent EfficientNet.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=1 << 16)] = 16,
    resolution: ResolutionFlag = None,
    steps: Annotated[int, typer.Option(min=1, max=10_000, help="Timed batches (after warm-up).")] = 10,
    as_json: Json = False,
) -> None:
    """Measured throughput (images/s) of the compiled model on this machine."""
    from archspec.backends.torch.bench import bench as measure

    payload = measure(as_resolved(spec), device.value, batch_size, resolution, train, compiled, vs_timm, steps)
    if as_json:
        render.emit_json(payload)
    else:
        render.bench_text(payload)


def register(app: typer.Typer) -> None:
    app.command()(bench)
