"""`archspec eval`: top-1 / top-5 of a run's weights at several test resolutions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import SpecError
from ..resolution import congruent, congruence_warnings
from ..resolve import resolve
from ..spec import load_spec
from .data import open_splits
from .distributed import session
from .finetune import FINETUNED
from .recipe import load_recipe
from .train import CHECKPOINT, EMA_WEIGHTS, evaluate, model_with_weights, read_run

WEIGHTS = {"finetuned": FINETUNED, "ema": EMA_WEIGHTS, "raw": CHECKPOINT}


def evaluate_run(run: Path, resolutions: list[int], weights: str = "auto", device: str = "cpu",
                 batch_size: int = 100) -> tuple[dict[str, Any], list[str]]:
    """The results, and the congruence warnings for the resolutions asked for."""
    with session(device) as ctx:
        info = read_run(run)
        spec = load_spec(run / "spec.yaml")
        recipe = load_recipe(run / "recipe.yaml")
        if weights == "auto":
            weights = "finetuned" if (run / FINETUNED).is_file() else "ema"
        if weights not in WEIGHTS:
            raise SpecError(f"must be auto, finetuned, ema or raw, got {weights!r}", field="--weights")
        model = model_with_weights(spec, run / WEIGHTS[weights], f"{weights} weights", ctx.device)
        train_resolution = int(info["resolution"])
        n = resolve(spec).downsampling_layers
        data = Path(info["options"]["data"]) if info["options"]["data"] else None
        _, val_set, _ = open_splits(data, recipe.synthetic, int(info["options"]["seed"]))
        results = []
        for r in resolutions:
            top1, top5, count = evaluate(model, val_set, r, batch_size, ctx)
            results.append({"resolution": r, "top1": top1, "top5": top5, "images": count,
                            "congruent": congruent(r, train_resolution, n)})
        finetuned_at = json.loads((run / "finetune.json").read_text())["resolution"] \
            if weights == "finetuned" and (run / "finetune.json").is_file() else None
        payload = {"run": str(run), "weights": weights, "train_resolution": train_resolution,
                   "finetuned_at": finetuned_at, "results": results}
        return payload, congruence_warnings(train_resolution, resolutions, n)
