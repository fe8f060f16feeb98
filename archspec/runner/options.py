"""The options of `archspec train` and `archspec finetune`, as the runner takes them (and as a
launcher hands them to the processes it starts)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Optional


@dataclass
class TrainOptions:
    spec: str
    out: Path
    data: Optional[Path] = None
    resolution: Optional[str] = None
    epochs: Optional[float] = None
    max_steps: Optional[int] = None
    batch_size: Optional[int] = None
    accum: Optional[int] = None  # micro-batches per global batch; default 1, or one per stage for a pipeline
    device: str = "cpu"
    recipe: Optional[Path] = None
    resume: bool = False
    seed: int = 0
    backend: str = "torch"
    stages: int = 2
    schedule: str = "gpipe"
    sync_bn: Optional[bool] = None  # BN statistics across processes; default: on where BN meets several
    # fast paths (backends/torch/fast.py): how this invocation runs, not what the run is; --resume may change them
    channels_last: Optional[bool] = None  # default: the recipe's (on a GPU)
    compile: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    @property
    def micro_batches(self) -> int:
        """Micro-batches per global batch: --accum, or 1 (data-parallel) or one per stage (a pipeline
        needs at least as many for 1F1B, and keeps every stage busy with them)."""
        if self.accum is not None:
            return self.accum
        return self.stages if self.backend == "torch-pipeline" else 1

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainOptions:
        known = {f.name for f in fields(cls)}
        opts = cls(**{k: v for k, v in data.items() if k in known})
        return replace(
            opts,
            out=Path(opts.out),
            data=Path(opts.data) if opts.data else None,
            recipe=Path(opts.recipe) if opts.recipe else None,
        )


@dataclass
class FinetuneOptions:
    run: Path
    resolution: int
    blocks: int
    epochs: Optional[float] = None
    max_steps: Optional[int] = None
    device: str = "cpu"
    force: bool = False  # replace an earlier fine-tune at the same resolution
    batch_size: Optional[int] = None  # the global batch; default: the recipe's (512, the paper's)
    channels_last: bool = False
    compile: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
