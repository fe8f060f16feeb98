"""Run under torch.distributed.run (2 processes): one pipelined forward/backward of a fixed batch
through archspec's torch-pipeline backend; rank 0 writes the loss and every gradient to argv[1]."""

import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F

import archspec
from archspec.runner.distributed import setup
from archspec.runner.pipeline import PipelineRunner, pipeline_plan

SPEC = {"base": sys.argv[2], "head": {"dropout": 0.0}, "drop_path": 0.0}
MICRO, N_MICRO, RESOLUTION = 4, 2, 48


def main() -> None:
    ctx = setup("cpu")
    spec = archspec.load_spec(SPEC)
    g, plan = pipeline_plan(spec, RESOLUTION, ctx.world, MICRO)
    model = archspec.build_model(spec, seed=0).train()
    runner = PipelineRunner(
        model,
        g,
        plan,
        ctx,
        N_MICRO,
        MICRO,
        lambda logits, y: F.cross_entropy(logits, y),
        sys.argv[3] if len(sys.argv) > 3 else "gpipe",
    )
    x = torch.randn(MICRO * N_MICRO, 3, RESOLUTION, RESOLUTION, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 10, (MICRO * N_MICRO,), generator=torch.Generator().manual_seed(2))
    loss = runner.step(x if runner.first else None, y if runner.last else None)
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    gathered = [None] * ctx.world
    dist.all_gather_object(gathered, {"loss": loss, "grads": grads, "boundaries": plan.boundaries})
    if ctx.main:
        merged = {
            "loss": next(p["loss"] for p in gathered if p["loss"] is not None),
            "grads": {},
            "boundaries": plan.boundaries,
        }
        for part in gathered:
            merged["grads"].update(part["grads"])
        torch.save(merged, sys.argv[1])
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
