"""The PopTorch backend: DIR/ipu_train.py, a pipelined, replicated IPU training program.

It trains the standalone model of DIR/model.py with `poptorch.BeginBlock` at the boundaries of an
archspec plan (DIR/plan.json), `poptorch.recomputationCheckpoint` on every block output when the
plan recomputes, fp16 arithmetic with fp32 optimizer state, the TF variant of RMSProp, and from the
shared runner's recipe its learning rate, schedule, label smoothing, weight decay groups and data
pipeline (Mixup/CutMix and the weight average are not in the IPU program). Every option set is a
literal in the generated file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import jinja2
import networkx as nx

from archspec._version import __version__
from archspec.backends.torch.codegen import comment, generate_model_source, literal
from archspec.errors import SpecError
from archspec.graph import info, unit_module_paths
from archspec.plan import PipelinePlan, costing, plan_pipeline

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("archspec.backends.poptorch", "templates"),
    autoescape=False,
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)


@dataclass(frozen=True)
class IpuOptions:
    ipus: int
    replicas: int = 1
    micro_batch: int = 8
    accumulation: int = 0  # 0: enough to fill the pipeline and reach the recipe's global batch
    device_iterations: int = 1
    available_memory_proportion: float = 0.15  # temporary memory for convolutions, per IPU
    memory_fraction: float = 0.5  # the usable share of an IPU's 900 MB, for the plan

    def __post_init__(self) -> None:
        if not 0 < self.available_memory_proportion <= 1:
            raise SpecError(
                f"must be in (0, 1], got {self.available_memory_proportion}", parameter="available_memory_proportion"
            )

    def as_dict(self, global_batch: int) -> dict[str, Any]:
        """The options as written to plan.json, with the accumulation actually used."""
        options = asdict(self)
        del options["memory_fraction"]  # a planning input: plan.json records its budget
        return {**options, "accumulation": self.gradient_accumulation(global_batch)}

    def gradient_accumulation(self, global_batch: int) -> int:
        """The recipe's global batch over micro-batch x replicas, at least the pipeline's depth
        (PopTorch needs gradientAccumulation >= 2 x stages - 1 when pipelining)."""
        if self.accumulation:
            return self.accumulation
        return max(global_batch // (self.micro_batch * self.replicas), 2 * self.ipus - 1, 1)


def program_files(g: nx.DiGraph[str], options: Mapping[str, Any]) -> dict[str, str]:
    """The poptorch backend's files (archspec.backend): model.py, and the IPU program for
    `options` (ipu: IpuOptions; recipe_text and global_batch: the runner's recipe, as data)."""
    ipu_options = options["ipu"]
    return {
        "model.py": generate_model_source(g),
        **ipu_files(g, ipu_options, options["recipe_text"], options["global_batch"]),
    }


def ipu_files(g: nx.DiGraph[str], options: IpuOptions, recipe_text: str, global_batch: int) -> dict[str, str]:
    """plan.json, recipe.yaml (`recipe_text`, the runner's recipe with its `global_batch`) and
    ipu_train.py for `g`, pipelined over `options.ipus` IPUs."""
    plan = plan_pipeline(g, options.ipus, costing(options.micro_batch, None, options.memory_fraction, True))
    plan_json = {
        "spec": info(g)["name"],
        "resolution": info(g)["resolution"][0],
        **plan.as_dict(),
        "ipu": options.as_dict(global_batch),
    }
    return {
        "plan.json": json.dumps(plan_json, indent=2) + "\n",
        "recipe.yaml": recipe_text,
        "ipu_train.py": generate_ipu_train(g, plan, options, global_batch),
    }


def generate_ipu_train(g: nx.DiGraph[str], plan: PipelinePlan, options: IpuOptions, recipe_global_batch: int) -> str:
    res = info(g)["resolved"]
    stages = [
        {"ipu": i, "module": unit_module_paths(g, s.units[0])[0], "unit": s.units[0]} for i, s in enumerate(plan.stages)
    ]
    # pipelined training recomputes each stage's forward pass; the block outputs are what it keeps
    pipelined = len(plan.stages) > 1 and plan.costing.recompute
    checkpoints = [u for s in plan.stages for u in s.units if u.startswith("blocks.")] if pipelined else []
    accumulation = options.gradient_accumulation(recipe_global_batch)
    return _ENV.get_template("ipu_train.py.j2").render(
        title=comment(res.name),
        version=comment(__version__),
        sources=comment(" <- ".join(res.sources)),
        ipus=options.ipus,
        replicas=options.replicas,
        micro_batch=options.micro_batch,
        accumulation=accumulation,
        device_iterations=options.device_iterations,
        amp=literal(options.available_memory_proportion),
        resolution=info(g)["resolution"][0],
        stages=literal(stages),
        checkpoints=literal(checkpoints),
        global_batch=options.micro_batch * options.replicas * accumulation,
    )
