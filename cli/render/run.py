"""What train, finetune and eval print."""

from __future__ import annotations

from typing import Any

from . import console


def train_summary(s: dict[str, Any], out: Any) -> None:
    if s.get("val_top1_ema") is not None:
        console().print(
            f"{out}: {s['steps']} steps at {s['resolution']}px; val top-1 {s['val_top1_ema']:.2%} "
            f"(EMA), {s['val_top1_raw']:.2%} (raw)"
        )


def finetune_summary(s: dict[str, Any]) -> None:
    if "val_top1" in s:
        console().print(
            f"{s['run']}: fine-tuned the last {s['blocks']} blocks ({s['trainable_parameters']:,} "
            f"parameters, from {s['first_trainable_layer']}) at {s['resolution']}px for {s['steps']} "
            f"steps; val top-1 {s['val_top1']:.2%}"
        )


def eval_results(p: dict[str, Any]) -> None:
    out = console(110)
    out.print(f"{p['run']}: trained at {p['train_resolution']} px; weights: {p['weights']}")
    for r in p["results"]:
        congruent = "" if r["congruent"] else "  (not congruent)"
        out.print(
            f"  {r['resolution']:>5} px  top-1 {r['top1']:7.2%}  top-5 {r['top5']:7.2%}  {r['weights_file']} "
            f"({r['weights_are']}){congruent}"
        )
