"""Evaluation, in one place: top-1 / top-5 of a model over a validation split, and `archspec eval`
(a run's weights at several test resolutions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..backends.torch.export import Source
from ..backends.torch.fast import FastPaths, check, prepare
from ..errors import SpecError
from ..limits import check_resolution
from ..resolution import congruence_warnings, congruent
from ..resolve import resolve
from ..spec import load_spec
from .checkpoint import model_with_weights
from .data import Transformed, collate, eval_batches, open_splits, val_transform
from .distributed import autocast, session, to_device
from .recipe import load_recipe
from .rundir import RunDir


@torch.no_grad()
def evaluate(
    model: nn.Module,
    source: Any,
    resolution: int,
    batch: int,
    device: torch.device,
    channels_last: bool = False,
    precision: Optional[torch.dtype] = None,
) -> tuple[float, float, int]:
    """Top-1 and top-5 over the whole split, with validation preprocessing at `resolution`."""
    data = Transformed(source, val_transform(resolution), seed=0)
    was_training = model.training
    model.eval()
    correct1 = correct5 = total = 0
    loader = DataLoader(data, batch_sampler=eval_batches(len(data), batch), collate_fn=collate, num_workers=0)
    for x, y, _ in loader:
        x, y = to_device(x, device, channels_last), y.to(device)
        with autocast(device, precision):
            logits = model(x).float()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += (top[:, 0] == y).sum().item()
        correct5 += (top == y[:, None]).any(dim=1).sum().item()
        total += len(y)
    model.train(was_training)
    return correct1 / total, correct5 / total, total


def run_source(path: Path, resolution: Optional[str], weights: Optional[str]) -> Source:
    """A run's model with the weights `export RUN` asks for (see weights_for), at `resolution`
    (default: the one it was trained at)."""
    run = RunDir(path)
    try:
        train_resolution = int(run.raw_info("source")["resolution"])
        spec = load_spec(run.spec)
        picked = train_resolution if resolution in (None, "train") else resolve(spec).resolution.pick(resolution)
        kind, file = weights_for(run, picked, weights or "auto")
        model = model_with_weights(spec, file, f"{kind} weights", torch.device("cpu"))
    except SpecError as exc:
        if exc.parameter != "run":
            raise
        # the run is this function's `source`
        raise SpecError(exc.message, parameter="source", file=exc.file, location=exc.location) from None
    trained = f"trained at {train_resolution} px"
    are = {"ema": f"EMA, {trained}", "raw": f"raw (last step), {trained}", "finetuned": f"fine-tuned at {picked} px"}
    return Source(model, spec, picked, train_resolution, kind, file.name, are[kind], str(path), True)


def weights_for(run: RunDir, resolution: int, weights: str) -> tuple[str, Path]:
    """The weights to test at `resolution`: with `auto`, the fine-tune at that resolution if the run
    has one, else the EMA weights; or the ones asked for."""
    if weights == "auto":
        weights = "finetuned" if run.finetuned(resolution).is_file() else "ema"
    if weights == "finetuned":
        if not run.finetuned(resolution).is_file():
            have = sorted(p.name for p in run.path.glob("finetuned-r*.pt")) or ["none"]
            raise SpecError(
                f"{run} has no fine-tune at {resolution} px (fine-tunes: {', '.join(have)})", parameter="weights"
            )
        return weights, run.finetuned(resolution)
    files = {"ema": run.ema, "raw": run.checkpoint}
    if weights not in files:
        raise SpecError(f"must be auto, finetuned, ema or raw, got {weights!r}", parameter="weights")
    return weights, files[weights]


def _described(run: RunDir, kind: str, resolution: int, train_resolution: int) -> str:
    """What the weights used at `resolution` are, in words, for the output."""
    if kind == "finetuned":
        info = run.read_finetune_info(resolution)
        return f"fine-tuned at {info['resolution']} px, last {info['blocks']} blocks, {info['steps']} steps"
    return {"ema": f"EMA, trained at {train_resolution} px", "raw": f"raw, trained at {train_resolution} px"}[kind]


def evaluate_run(
    path: Path,
    resolutions: list[int],
    weights: str = "auto",
    device: str = "cpu",
    batch_size: int = 100,
    paths: Optional[FastPaths] = None,
) -> tuple[dict[str, Any], list[str]]:
    """Top-1/top-5 at each resolution, each with the weights that belong to it (see weights_for),
    and the congruence warnings for the resolutions asked for; `paths`: channels_last, compile
    and BN folding (inference only, so all three apply)."""
    paths = paths or FastPaths()
    check(paths, device, train=False)
    run = RunDir(path)
    for r in resolutions:
        check_resolution(r, "resolutions")
    info = run.raw_info()
    chosen = {r: weights_for(run, r, weights) for r in resolutions}
    with session(device) as ctx:
        spec = load_spec(run.spec)
        recipe = load_recipe(run.recipe)
        train_resolution = int(info["resolution"])
        n = resolve(spec).downsampling_layers
        data = Path(info["options"]["data"]) if info["options"]["data"] else None
        _, val_set, _ = open_splits(data, recipe.synthetic, int(info["options"]["seed"]))
        models: dict[Path, nn.Module] = {}
        results = []
        for r, (kind, file) in chosen.items():
            if file not in models:
                loaded = model_with_weights(spec, file, f"{kind} weights", ctx.device)
                models[file] = prepare(loaded, paths, device)[1]
            top1, top5, count = evaluate(models[file], val_set, r, batch_size, ctx.device, paths.channels_last)
            results.append(
                {
                    "resolution": r,
                    "top1": top1,
                    "top5": top5,
                    "images": count,
                    "congruent": congruent(r, train_resolution, n),
                    "weights": kind,
                    "weights_file": file.name,
                    "weights_are": _described(run, kind, r, train_resolution),
                }
            )
        payload = {"run": str(path), "weights": weights, "train_resolution": train_resolution, "results": results}
        return payload, congruence_warnings(train_resolution, resolutions, n)
