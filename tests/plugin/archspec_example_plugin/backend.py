"""The `layer-list` backend: its files and its training entry (it reads no run directory: the
options come as data)."""

import json
from typing import Any

import torch

import archspec
from archspec.graph import layers


def files(g, options) -> dict[str, str]:
    rows = [f"{name}\t{d['op']}\t{d['params']}\t{d['macs']}" for name, d in layers(g)]
    return {"layers.txt": "\n".join(rows) + "\n"}


def train(opts: Any) -> None:
    """One SGD step on random images, its loss written to OUT/layer-list.json."""
    torch.manual_seed(opts.seed)
    model = archspec.build_model(opts.spec, seed=opts.seed)
    size = archspec.as_resolved(opts.spec).resolution.train
    x, y = torch.randn(2, 3, size, size), torch.tensor([0, 1])
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / "layer-list.json").write_text(json.dumps({"loss": loss.item()}) + "\n")
