"""Evaluation, in one place: top-1 / top-5 of a model over a validation split, and `archspec eval`
(a run's weights at several test resolutions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader

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


def weights_file(run: RunDir, weights: str) -> Path:
    files = {"finetuned": run.finetuned, "ema": run.ema, "raw": run.checkpoint}
    if weights not in files:
        raise SpecError(f"must be auto, finetuned, ema or raw, got {weights!r}", parameter="weights")
    return files[weights]


def evaluate_run(
    path: Path, resolutions: list[int], weights: str = "auto", device: str = "cpu", batch_size: int = 100
) -> tuple[dict[str, Any], list[str]]:
    """The results, and the congruence warnings for the resolutions asked for."""
    run = RunDir(path)
    for r in resolutions:
        check_resolution(r, "resolutions")
    with session(device) as ctx:
        info = run.raw_info()
        spec = load_spec(run.spec)
        recipe = load_recipe(run.recipe)
        if weights == "auto":
            weights = "finetuned" if run.finetuned.is_file() else "ema"
        model = model_with_weights(spec, weights_file(run, weights), f"{weights} weights", ctx.device)
        train_resolution = int(info["resolution"])
        n = resolve(spec).downsampling_layers
        data = Path(info["options"]["data"]) if info["options"]["data"] else None
        _, val_set, _ = open_splits(data, recipe.synthetic, int(info["options"]["seed"]))
        results = []
        for r in resolutions:
            top1, top5, count = evaluate(model, val_set, r, batch_size, ctx.device)
            results.append(
                {
                    "resolution": r,
                    "top1": top1,
                    "top5": top5,
                    "images": count,
                    "congruent": congruent(r, train_resolution, n),
                }
            )
        finetuned_at = (
            json.loads(run.finetune_info.read_text())["resolution"]
            if weights == "finetuned" and run.finetune_info.is_file()
            else None
        )
        payload = {
            "run": str(path),
            "weights": weights,
            "train_resolution": train_resolution,
            "finetuned_at": finetuned_at,
            "results": results,
        }
        return payload, congruence_warnings(train_resolution, resolutions, n)
