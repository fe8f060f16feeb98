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
    accum: int = 1
    device: str = "cpu"
    recipe: Optional[Path] = None
    resume: bool = False
    seed: int = 0
    backend: str = "torch"
    stages: int = 2
    schedule: str = "gpipe"

    def as_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

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

    def as_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
