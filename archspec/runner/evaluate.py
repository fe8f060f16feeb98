"""`archspec eval`: top-1 / top-5 of a run's weights at several test resolutions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import SpecError
from ..graph import build_graph
from ..resolution import congruent, congruence_warnings
from ..resolve import resolve
from ..spec import load_spec
from . import checkpoint
from .data import open_splits
from .distributed import setup, teardown
from .finetune import FINETUNED
from .recipe import load_recipe
from .train import CHECKPOINT, EMA_WEIGHTS, evaluate, read_run

WEIGHTS = {"finetuned": FINETUNED, "ema": EMA_WEIGHTS, "raw": CHECKPOINT}


def evaluate_run(run: Path, resolutions: list[int], weights: str = "auto", device: str = "cpu",
                 batch_size: int = 100) -> tuple[dict[str, Any], list[str]]:
    """The results, and the congruence warnings for the resolutions asked for."""
    from ..backends.torch.model import build_model

    ctx = setup(device)
    try:
        info = read_run(run)
        spec = load_spec(run / "spec.yaml")
        recipe = load_recipe(run / "recipe.yaml")
        if weights == "auto":
            weights = "finetuned" if (run / FINETUNED).is_file() else "ema"
        if weights not in WEIGHTS:
            raise SpecError(f"must be auto, finetuned, ema or raw, got {weights!r}", field="--weights")
        state = checkpoint.load(run / WEIGHTS[weights], f"{weights} weights")
        model = build_model(spec).to(ctx.device)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise SpecError(f"{run / WEIGHTS[weights]}: weights do not fit the run's spec "
                            f"({str(exc).splitlines()[0]})", field="RUN") from None
        train_resolution = int(info["resolution"])
        n = build_graph(resolve(spec), train_resolution).graph["downsampling_layers"]
        data = Path(info["options"]["data"]) if info["options"]["data"] else None
        _, val_set, _ = open_splits(data, recipe.synthetic, int(info["options"]["seed"]))
        results = []
        for r in resolutions:
            top1, top5, count = evaluate(model, val_set, r, batch_size, ctx)
            results.append({"resolution": r, "top1": top1, "top5": top5, "images": count,
                            "congruent": congruent(r, train_resolution, n)})
        payload = {"run": str(run), "weights": weights, "train_resolution": train_resolution,
                   "finetuned_at": state.get("resolution") if weights == "finetuned" else None, "results": results}
        return payload, congruence_warnings(train_resolution, resolutions, n)
    finally:
        teardown()
