"""Checkpoints: written atomically (temp file + rename), read with `weights_only=True`.

A checkpoint holds only tensors and plain containers, so loading one can never run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import write_atomically
from ..errors import SpecError
from ..spec import ModelSpec

FORMAT = 2  # 2: optimizer and RNG state are lists, one entry per process that holds its own


def save(path: Path, payload: dict[str, Any]) -> None:
    write_atomically(path, lambda f: torch.save({"format": FORMAT, **payload}, f))


def load(path: Path, what: str = "checkpoint") -> dict[str, Any]:
    if not path.is_file():
        raise SpecError(f"no {what} at {path}", parameter="run")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, or holding objects we refuse to unpickle
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpecError(f"{path}: not a readable {what} ({first[:160]})", parameter="run") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise SpecError(f"{path}: not an archspec {what} (or one written by an older version)", parameter="run")
    return payload


def model_with_weights(spec: ModelSpec, path: Path, what: str, device: torch.device) -> nn.Module:
    """The spec's model holding a run's saved weights (a located error if they do not fit)."""
    from ..api import build_model

    state = load(path, what)
    model = build_model(spec).to(device)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise SpecError(
            f"{path}: weights do not fit the run's spec ({str(exc).splitlines()[0]})", parameter="run"
        ) from None
    return model
