"""Checkpoints: written atomically (temp file + rename), read with `weights_only=True`, verified.

A checkpoint file holds the serialized payload as bytes beside their SHA-256: a flipped bit or a
truncated write is caught on load, before anything is used. Payloads hold only tensors and plain
containers, so loading one can never run code, and their shape is checked (a file with a valid
header but no model, an empty optimizer list or a step of "abc" is refused in one line).
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import write_atomically
from ..errors import DiskFull, SpecError
from ..reader import CHECKPOINT, read_bytes
from ..spec import ModelSpec
from .rundir import RunDir

FORMAT = 3  # 3: a hashed payload; optimizer and RNG state are lists, one entry per process holding its own


def _serialized(value: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def save(path: Path, payload: dict[str, Any]) -> None:
    data = _serialized(payload)
    # serialized in memory, then written: a failing disk raises the OSError it is, not torch's wrapper
    wrapped = _serialized({"format": FORMAT, "sha256": hashlib.sha256(data).hexdigest(), "payload": data})
    try:
        write_atomically(path, lambda f: f.write(wrapped), parameter="out")
    except DiskFull as exc:  # a full disk or a file-size limit: the previous file is still whole
        raise exc.keeping("the previous one is intact") from None


def _torch_load(data: bytes) -> Any:
    """torch.load of bytes the reader read (never of a path: torch would open anything)."""
    with warnings.catch_warnings():  # e.g. torch's note on old pickle protocols: not the user's concern
        warnings.simplefilter("ignore")
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def load(path: Path, what: str = "checkpoint") -> dict[str, Any]:
    """A saved payload, verified: its hash, and the fields every archspec file of this kind has."""
    if not os.path.lexists(path):
        raise SpecError(f"no {what} at {path}", parameter="run")
    data = read_bytes(path, CHECKPOINT, parameter="run")
    try:
        wrapped = _torch_load(data)
        ok = isinstance(wrapped, dict) and wrapped.get("format") == FORMAT and isinstance(wrapped.get("payload"), bytes)
        if ok and hashlib.sha256(wrapped["payload"]).hexdigest() != wrapped.get("sha256"):
            raise SpecError(f"{path}: damaged (its content does not match its hash)", parameter="run")
        payload = _torch_load(wrapped["payload"]) if ok else None
    except SpecError:
        raise
    except Exception as exc:  # truncated, not a torch file, or holding objects we refuse to unpickle
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpecError(f"{path}: not a readable {what} ({first[:160]})", parameter="run") from None
    if not isinstance(payload, dict):
        raise SpecError(f"{path}: not an archspec {what} (or one written by an older version)", parameter="run")
    problem = _problem(payload)
    if problem:
        raise SpecError(f"{path}: not a usable {what}: {problem}", parameter="run")
    return payload


def _state_dict_problem(value: Any) -> str | None:
    if not isinstance(value, dict) or not value:
        return "no weights"
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()):
        return "weights that are not named tensors"
    return None


def _problem(payload: dict[str, Any]) -> str | None:
    """What is wrong with a payload's fields, or None."""
    step = payload.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return f"the step must be a whole number >= 0, got {str(step)[:40]!r}"
    for key in ("model", "ema"):
        if key in payload or key == "model":
            problem = _state_dict_problem(payload.get(key))
            if problem:
                return f"{key}: {problem}"
    if "optimizer" in payload:  # a training checkpoint
        for key in ("optimizer", "rng"):
            value = payload.get(key)
            if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
                return f"{key}: must be a non-empty list of states"
        rng: list[dict[str, Any]] = payload["rng"]
        if not all(isinstance(r.get("torch"), torch.Tensor) and r["torch"].dtype == torch.uint8 for r in rng):
            return "rng: not a torch generator state"
        if not isinstance(payload.get("scheduler"), dict):
            return "scheduler: missing"
    return None


def ema_weights(run: RunDir) -> dict[str, Any]:
    """A run's EMA weights: ema.pt, unless a kill between the two writes of a save left it behind
    checkpoint.pt, whose own copy is then the newer."""
    ema = load(run.ema, "EMA weights") if run.ema.is_file() or not run.checkpoint.is_file() else None
    if run.checkpoint.is_file():
        state = load(run.checkpoint)
        if ema is None or state["step"] > ema["step"]:
            return {"step": state["step"], "model": state["ema"]}
    assert ema is not None
    return ema


def model_with_weights(spec: ModelSpec, path: Path, what: str, device: torch.device) -> nn.Module:
    """The spec's model holding a run's saved weights (a located error if they do not fit)."""
    from ..api import build_model

    run = RunDir(path.parent)
    state = ema_weights(run) if path == run.ema else load(path, what)  # every reader of ema.pt gets the newest
    model = build_model(spec).to(device)
    load_weights(model, state["model"], path)
    return model


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """`model.load_state_dict(state)`, or one line saying that they are of another network."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise SpecError(f"{path}: weights of another network than the run's spec ({first})", parameter="run") from None
