"""The PopTorch backend: DIR/ipu_train.py, a pipelined, replicated IPU training program.

It trains the standalone model of DIR/model.py with `poptorch.BeginBlock` at the boundaries of an
archspec plan (DIR/plan.json), `poptorch.recomputationCheckpoint` on every block output when the
plan recomputes, fp16 arithmetic with fp32 optimizer state, the TF variant of RMSProp, and from the
shared runner's recipe its learning rate, schedule, label smoothing, weight decay groups and data
pipeline (Mixup/CutMix and the weight average are not in the IPU program). Every option set is a
literal in the generated file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import jinja2
import networkx as nx

from archspec import __version__
from archspec.backends.torch.codegen import comment, literal
from archspec.graph import unit_module_paths
from archspec.plan import Plan

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("archspec.backends.poptorch", "templates"),
                          autoescape=False, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)


@dataclass(frozen=True)
class IpuOptions:
    ipus: int
    replicas: int = 1
    micro_batch: int = 8
    accumulation: int = 0  # 0: enough to fill the pipeline and reach the recipe's global batch
    device_iterations: int = 1
    available_memory_proportion: float = 0.15

    def as_dict(self, global_batch: int) -> dict[str, Any]:
        """The options as written to plan.json, with the accumulation actually used."""
        return {**asdict(self), "accumulation": self.gradient_accumulation(global_batch)}

    def gradient_accumulation(self, global_batch: int) -> int:
        """The recipe's global batch over micro-batch x replicas, at least the pipeline's depth
        (PopTorch needs gradientAccumulation >= 2 x stages - 1 when pipelining)."""
        if self.accumulation:
            return self.accumulation
        return max(global_batch // (self.micro_batch * self.replicas), 2 * self.ipus - 1, 1)


def generate_ipu_train(g: nx.DiGraph, plan: Plan, options: IpuOptions, recipe_global_batch: int) -> str:
    res = g.graph["resolved"]
    stages = [{"ipu": i, "module": unit_module_paths(g, s.units[0])[0], "unit": s.units[0]}
              for i, s in enumerate(plan.stages)]
    # pipelined training recomputes each stage's forward pass; the block outputs are what it keeps
    pipelined = len(plan.stages) > 1 and plan.costing.recompute
    checkpoints = [u for s in plan.stages for u in s.units if u.startswith("blocks.")] if pipelined else []
    accumulation = options.gradient_accumulation(recipe_global_batch)
    return _ENV.get_template("ipu_train.py.j2").render(
        title=comment(res.name), version=comment(__version__), sources=comment(" <- ".join(res.spec.source.chain)),
        ipus=options.ipus, replicas=options.replicas, micro_batch=options.micro_batch, accumulation=accumulation,
        device_iterations=options.device_iterations, amp=literal(options.available_memory_proportion),
        resolution=g.graph["resolution"][0], stages=literal(stages), checkpoints=literal(checkpoints),
        global_batch=options.micro_batch * options.replicas * accumulation,
    )
