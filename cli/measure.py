"""`archspec bench` and `profile`: what the compiled model and its kernel classes measure on this
machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from archspec.api import as_resolved

from . import render
from .options import (
    SPEC,
    ChannelsLast,
    Compiled,
    Device,
    DeviceFlag,
    Dtype,
    Fold,
    Json,
    PlotPath,
    ResolutionFlag,
    SpecArg,
    UsageError,
)
from .paths import Reads, Writes
from .render import measure as shown

PerLayer = Annotated[
    bool,
    typer.Option("--per-layer", help="Time every IR node (forward; backward too with --train) under its IR name."),
]
Train = Annotated[bool, typer.Option("--train", help="Time forward + backward instead of inference.")]
Steps = Annotated[int, typer.Option(min=1, max=10_000, help="Timed batches (after warm-up).")]


def _per_layer(
    spec: str, device: Device, train: bool, batch: int, resolution: Optional[str], steps: int, vs_timm: bool
) -> dict:
    from archspec.backends.torch.bench import per_layer

    return per_layer(as_resolved(spec), device.value, batch, resolution, train, steps, vs_timm=vs_timm)


def bench(
    spec: SpecArg,
    device: DeviceFlag = Device.cpu,
    train: Train = False,
    compiled: Compiled = False,
    channels_last: ChannelsLast = False,
    fold: Fold = False,
    vs_timm: Annotated[
        bool, typer.Option("--vs-timm", help="Also time timm's equivalent EfficientNet, in turn, in the same mode.")
    ] = False,
    per_layer: PerLayer = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=1 << 16)] = 16,
    resolution: ResolutionFlag = None,
    steps: Steps = 10,
    plot: PlotPath = None,
    as_json: Json = False,
) -> None:
    """Measured throughput (images/s) of the compiled model on this machine; --per-layer: the time
    of every layer against its MACs and arithmetic intensity."""
    if per_layer and (compiled or fold or channels_last):
        raise UsageError("--per-layer times the eager model: it goes without --compile, --fold and --channels-last")
    if plot is not None and not per_layer:
        raise UsageError("--plot draws the per-layer roofline: it goes with --per-layer")
    if per_layer:
        payload = _per_layer(spec, device, train, batch_size, resolution, steps, vs_timm)
        shown.per_layer(payload, plot, as_json)
        return
    from archspec.backends.torch.bench import bench as measure
    from archspec.backends.torch.fast import FastPaths

    paths = FastPaths(channels_last=channels_last, compiled=compiled, fold=fold)
    payload = measure(as_resolved(spec), device.value, batch_size, resolution, train, paths, vs_timm, steps)
    if as_json:
        render.emit_json(payload)
    else:
        shown.bench_text(payload)


StepDtype = Annotated[
    Optional[Dtype],
    typer.Option("--dtype", help="What the networks compute in, as `bench` runs them: fp32 on a CPU, bf16 on a GPU."),
]


def profile(
    out: Annotated[
        Path, typer.Option("--out", metavar="FILE.json", help="Where to write the profile.", parser=Writes("out"))
    ],
    device: DeviceFlag = Device.cpu,
    dtype: StepDtype = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=1 << 12, help="The batch the networks are calibrated at (and 1).")
    ] = 16,
    calibrate: Annotated[
        Optional[list[str]],
        typer.Option(
            "--calibrate",
            metavar="SPEC",
            help="Also time this network's layers and steps (repeatable): your own designs, next to the default set.",
            parser=Reads(SPEC, "calibrate", missing_ok=True, text=True),
        ),
    ] = None,
    train: Annotated[
        bool, typer.Option("--train/--no-train", help="Also time forward + backward (training steps).")
    ] = True,
    as_json: Json = False,
) -> None:
    """Time every layer (grouped and 1x1 convs, norms, proxy norm, activations, SE, add, pool,
    linear) inside calibration networks, and their whole steps, into a profile that `stats
    --profile` predicts speed from."""
    from archspec.backends.torch.fast import require_device
    from archspec.backends.torch.profile import check_dtype
    from archspec.backends.torch.profile import profile as measure
    from archspec.calibration import default_specs

    require_device(device.value)  # before the progress bar, which would leave a blank line
    computes_in = check_dtype(device.value, dtype.value if dtype else None)
    networks = [("default", s) for s in default_specs()] + [(path, as_data(path)) for path in calibrate or []]
    with shown.progress("profiling") as tick:
        data = measure(device.value, computes_in, batch_size, train, out=out, progress=tick, networks=networks)
    shown.profile_summary(data, out, as_json)


def as_data(spec: str) -> dict:
    """A spec file or preset as the plain data a profile carries, to be rebuilt when it is read."""
    from archspec.spec import load_spec

    data = load_spec(spec).model_dump(mode="json", exclude_none=True, exclude={"base"})
    # the bases are merged in already; only a preset at the chain's end is named, not a file
    preset = as_resolved(spec).preset
    return {**data, "base": preset} if preset else data


def register(app: typer.Typer) -> None:
    app.command()(bench)
    app.command()(profile)
