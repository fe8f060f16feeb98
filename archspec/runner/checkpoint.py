"""Checkpoints: written atomically (temp file + rename), read with `weights_only=True`.

A checkpoint holds only tensors and plain containers, so loading one can never run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..atomic import write_atomically
from ..errors import SpecError

FORMAT = 1


def save(path: Path, payload: dict[str, Any]) -> None:
    write_atomically(path, lambda f: torch.save({"format": FORMAT, **payload}, f))


def load(path: Path, what: str = "checkpoint") -> dict[str, Any]:
    if not path.is_file():
        raise SpecError(f"no {what} at {path}", field="RUN")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, or holding objects we refuse to unpickle
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpecError(f"{path}: not a readable {what} ({first[:160]})", field="RUN") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise SpecError(f"{path}: not an archspec {what}", field="RUN")
    return payload
