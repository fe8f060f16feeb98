"""Run under torch.distributed.run (2 processes, gloo): two data-parallel training steps of a BN
spec through the runner's own wrapping and step, each process on its half of a batch. Rank 0 writes
every rank's BN running statistics, and those of one process trained on the whole batch, to argv[1]."""

import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F

import archspec
from archspec.runner.distributed import setup
from archspec.runner.loop import DataParallel, data_parallel

SPEC = {"base": sys.argv[2], "norm": {"type": "bn"}, "head": {"dropout": 0.0}, "drop_path": 0.0}
SYNC = sys.argv[3] == "sync"


def batches():
    gen = torch.Generator().manual_seed(7)
    return [(torch.randn(8, 3, 32, 32, generator=gen), torch.randint(0, 10, (8,), generator=gen)) for _ in range(2)]


def train(model, ctx, wrap: bool, part: slice):
    wrapped = data_parallel(model, ctx, SYNC) if wrap else model
    step = DataParallel(ctx, wrapped, lambda logits, y: F.cross_entropy(logits, y)) if wrap else None
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for i, (x, y) in enumerate(batches()):
        if step is not None:
            step.step([(x[part], y[part], 0)], i)
        else:
            F.cross_entropy(model(x), y).backward()
        optimizer.step()
        optimizer.zero_grad()
    return {k: v.detach().clone() for k, v in wrapped.state_dict().items() if "running" in k}


def main() -> None:
    ctx = setup("cpu")
    half = slice(4 * ctx.rank, 4 * ctx.rank + 4)
    mine = train(archspec.build_model(SPEC, seed=0).train(), ctx, True, half)
    everyone = [None] * ctx.world
    dist.all_gather_object(everyone, {k.removeprefix("module."): v for k, v in mine.items()})
    if ctx.main:
        whole = train(archspec.build_model(SPEC, seed=0).train(), ctx, False, slice(None))
        torch.save({"ranks": everyone, "whole_batch": whole}, sys.argv[1])
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
