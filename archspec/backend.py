"""The backend registry: every backend `compile --backend` and `train --backend` can name, each
declared once: how it builds the live model from the IR, what files it writes, and its training
entry. Entries are "module:function" references, imported only when used, so that reading the
registry imports no torch (and the core never imports a backend).

A backend's `train` entry takes the runner's TrainOptions and returns a summary, or None where the
program it wrote ran on its own; None as the entry means the shared runner's loop trains it
(torch: data-parallel; torch-pipeline: pipeline stages, one process each). Backends never import
the runner: a backend that trains on its own gets the options as data.

Built-ins are below; a user's package adds backends through the `archspec.backends` entry point
group (each entry point names a BackendKind), loaded the first time the registry is read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import import_module
from typing import Any

from .registry import by_name

ENTRY_POINTS = "archspec.backends"


@dataclass(frozen=True)
class BackendKind:
    name: str
    summary: str
    # (g, options) -> {file name: text}: what `compile --backend NAME --out DIR` writes besides
    # resolved.yaml and report.json
    files: str
    # (g, seed) -> the live model
    model: str = "archspec.backends.torch.model:model_from_graph"
    train: str | None = None  # (TrainOptions) -> summary or None; None: the shared runner's loop
    pipelined: bool = False  # the runner's loop runs it as pipeline stages, one process per stage

    def entry(self, what: str) -> Callable[..., Any]:
        """The function an entry ("files", "model", "train") names, imported now."""
        reference = getattr(self, what)
        if reference is None:
            raise ValueError(f"backend {self.name!r} has no {what} entry")
        module, _, function = reference.partition(":")
        found: Callable[..., Any] = getattr(import_module(module), function)
        return found


_TORCH_FILES = "archspec.backends.torch.codegen:model_files"
BUILT_IN = (
    BackendKind("torch", "PyTorch: the live module, and model.py (standalone)", _TORCH_FILES),
    BackendKind(
        "torch-pipeline",
        "PyTorch pipeline stages (torch.distributed.pipelining), one process per stage",
        _TORCH_FILES,
        pipelined=True,
    ),
    BackendKind(
        "poptorch",
        "Graphcore IPUs: a pipelined, replicated PopTorch program (plan.json, ipu_train.py)",
        "archspec.backends.poptorch.codegen:program_files",
        train="archspec.runner.ipu:run_ipu",
    ),
)


@cache
def registry() -> dict[str, BackendKind]:
    """Every backend by name: the built-ins, then those of installed plug-ins."""
    return by_name(BUILT_IN, ENTRY_POINTS, BackendKind)


def names() -> tuple[str, ...]:
    return tuple(registry())


def kind(name: str) -> BackendKind:
    return registry()[name]
