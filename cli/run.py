"""`archspec train`, `finetune` and `eval`: the shared runner."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from archspec.limits import MAX_BATCH

from .options import (
    BACKENDS,
    ChannelsLast,
    Compiled,
    Dataset,
    Device,
    DeviceFlag,
    Epochs,
    Fold,
    Json,
    MaxSteps,
    Nproc,
    RecipePath,
    RunArg,
    Schedule,
    SpecArg,
    UsageError,
    Weights,
    ints,
)
from .paths import Reads, Writes
from .render import emit_json, warn
from .render import run as render

Data = Annotated[
    Optional[Path],
    typer.Option(metavar="DIR", help="ImageFolder tree with train/ and val/.", parser=Reads(None, "data")),
]
DatasetFlag = Annotated[Optional[Dataset], typer.Option(help="The built-in set (the default without --data).")]
TrainResolution = Annotated[Optional[str], typer.Option(metavar="PX|native|half", help="Default: the spec's train.")]
GlobalBatch = Annotated[
    Optional[int], typer.Option(min=1, max=MAX_BATCH, metavar="B", help="The global batch (default: the recipe's).")
]
Accum = Annotated[
    Optional[int],
    typer.Option(
        min=1, max=4096, metavar="N", help="Micro-batches per global batch (default 1; a pipeline: --stages)."
    ),
]
Out = Annotated[
    Optional[Path],
    typer.Option(
        metavar="RUN", help="The run directory (default: runs/<spec name>).", parser=Writes("out", directory=True)
    ),
]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")]
Seed = Annotated[int, typer.Option(min=0, max=2**63 - 1, help="Seed of weights, data order and augmentation.")]
BackendFlag = Annotated[
    str,
    typer.Option(parser=BACKENDS, metavar=BACKENDS.metavar, help="torch-pipeline: --stages processes; poptorch: IPUs."),
]
Stages = Annotated[int, typer.Option(min=2, max=64, help="torch-pipeline / poptorch: pipeline stages.")]
ScheduleFlag = Annotated[Schedule, typer.Option(help="torch-pipeline: the pipeline schedule.")]
SyncBn = Annotated[
    Optional[bool],
    typer.Option(
        "--sync-bn/--no-sync-bn", help="BN statistics across processes (default: on where a BN spec meets --nproc > 1)."
    ),
]
TestResolution = Annotated[int, typer.Option(metavar="PX", help="Fine-tune (and test) at this resolution.")]
Blocks = Annotated[int, typer.Option(help="How many blocks from the end train (1 = the head).")]
Resolutions = Annotated[Any, typer.Option(parser=ints, metavar="R,...", help="Comma-separated, e.g. 224,256,288.")]
WeightsFlag = Annotated[Weights, typer.Option(help="auto: at each resolution its fine-tune if any, else ema.")]
Force = Annotated[bool, typer.Option("--force", help="Replace an earlier fine-tune at this resolution.")]


def train(
    spec: SpecArg,
    data: Data = None,
    dataset: DatasetFlag = None,
    resolution: TrainResolution = None,
    epochs: Epochs = None,
    max_steps: MaxSteps = None,
    batch_size: GlobalBatch = None,
    accum: Accum = None,
    device: DeviceFlag = Device.cpu,
    nproc: Nproc = 1,
    recipe: RecipePath = None,
    out: Out = None,
    resume: Resume = False,
    seed: Seed = 0,
    backend: BackendFlag = "torch",
    stages: Stages = 2,
    schedule: ScheduleFlag = Schedule.gpipe,
    sync_bn: SyncBn = None,
    channels_last: ChannelsLast = False,
    compiled: Compiled = False,
) -> None:
    """Train SPEC with the paper's recipe (RMSProp-TF, EMA, Mixup+CutMix) on --data or synthetic images."""
    from archspec.runner.options import TrainOptions
    from archspec.runner.train import run as run_training
    from archspec.spec import load_spec

    if dataset is not None and data is not None:
        raise UsageError("--data and --dataset synthetic exclude each other")
    out = out if out is not None else Path("runs") / load_spec(spec).name
    given = (data, resolution, epochs, max_steps, batch_size, accum, device.value, recipe, resume, seed, backend)
    # without --channels-last, the recipe's default (channels_last on a GPU)
    options = TrainOptions(spec, out, *given, stages, schedule.value, sync_bn, channels_last or None, compiled)
    summary = run_training(options, nproc)
    if summary is not None:
        render.train_summary(summary, out)


def finetune(
    run: RunArg,
    resolution: TestResolution,
    blocks: Blocks,
    epochs: Epochs = None,
    max_steps: MaxSteps = None,
    device: DeviceFlag = Device.cpu,
    nproc: Nproc = 1,
    force: Force = False,
    batch_size: GlobalBatch = None,
    channels_last: ChannelsLast = False,
    compiled: Compiled = False,
) -> None:
    """Fine-tune the last blocks of a run at a test resolution, from its EMA weights (SGD, cosine from 0.25)."""
    from archspec.runner.finetune import run as run_finetune
    from archspec.runner.options import FinetuneOptions

    options = FinetuneOptions(
        run, resolution, blocks, epochs, max_steps, device.value, force, batch_size, channels_last, compiled
    )
    render.finetune_summary(run_finetune(options, nproc))


def eval_(
    run: RunArg,
    resolutions: Resolutions,
    weights: WeightsFlag = Weights.auto,
    device: DeviceFlag = Device.cpu,
    channels_last: ChannelsLast = False,
    compiled: Compiled = False,
    fold: Fold = False,
    as_json: Json = False,
) -> None:
    """Top-1 and top-5 of a run at each test resolution (warns where r_test != r_train mod 2^n)."""
    from archspec.backends.torch.fast import FastPaths
    from archspec.runner.evaluate import evaluate_run

    paths = FastPaths(channels_last=channels_last, compiled=compiled, fold=fold)
    payload, warnings = evaluate_run(run, resolutions, weights.value, device.value, paths=paths)
    for message in warnings:
        warn(message)
    if as_json:
        emit_json(payload)
    else:
        render.eval_results(payload)


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command()(finetune)
    app.command("eval")(eval_)
