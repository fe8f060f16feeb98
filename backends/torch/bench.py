"""`archspec bench`: measured throughput of a compiled model (images/s), optionally against timm."""

from __future__ import annotations

import statistics
import time
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from archspec.errors import SpecError
from archspec.graph import build_graph
from archspec.resolve import ResolvedSpec


def measure(
    model: nn.Module,
    device: str,
    batch: int,
    resolution: int,
    train: bool,
    compiled: bool,
    steps: int,
    in_channels: int = 3,
    classes: int = 1000,
) -> dict[str, float]:
    """Median seconds per batch after warm-up (forward, or forward + backward with --train)."""
    gpu = device == "cuda"
    model = model.to(device).train(train)
    if gpu:
        model = model.to(memory_format=torch.channels_last)
    run = torch.compile(model) if compiled else model
    x = torch.randn(batch, in_channels, resolution, resolution, device=device)
    if gpu:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,), device=device)

    def once() -> float:
        if gpu:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=gpu), torch.set_grad_enabled(train):
            logits = run(x)
            if train:
                F.cross_entropy(logits.float(), y).backward()
        if train:
            model.zero_grad(set_to_none=True)
        if gpu:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    first = once()
    for _ in range(2):
        once()
    times = [once() for _ in range(steps)]
    median = statistics.median(times)
    return {"seconds_per_batch": median, "images_per_s": batch / median, "first_batch_s": first}


def timm_equivalent(res: ResolvedSpec, params: int) -> tuple[Optional[nn.Module], str]:
    """timm's EfficientNet for the spec's preset and group size, if it is the same network: BN,
    SiLU, the preset's expansion ratios, 3 inputs, and the same parameters."""
    base = res.preset
    if base is None:
        return None, "the spec has no EfficientNet preset base"
    import timm

    name = base.replace("-", "_")
    differs = [
        what
        for what, same in (
            ("norm", res.norm.type == "bn"),
            ("activation", res.activation == "silu"),
            ("expansion ratio", res.expansion_ratio in (None, 6)),
            ("input channels", res.in_channels == 3),
        )
        if not same
    ]
    if differs:
        return None, f"timm's {name} is not the same network ({', '.join(differs)} differ)"
    group_size = res.group_size
    model = timm.create_model(name, group_size=group_size if group_size > 1 else None, num_classes=res.num_classes)
    theirs = sum(p.numel() for p in model.parameters())
    if theirs != params:
        return None, (
            f"timm's {name} (group_size={group_size}) has {theirs:,} parameters, this spec {params:,}: "
            "not the same network (timm takes no expansion ratio or archspec's group-size rounding)"
        )
    return model, f"timm {name}, group_size={group_size}"


def bench(
    res: ResolvedSpec,
    device: str,
    batch: int,
    resolution: int | str | None,
    train: bool,
    compiled: bool,
    vs_timm: bool,
    steps: int,
) -> dict[str, Any]:
    """Images/s of the spec's model at `resolution` (pixels, native, half or train), and of timm's
    equivalent if asked."""
    from .model import model_from_graph

    if device == "cuda" and not torch.cuda.is_available():
        raise SpecError("CUDA is not available on this machine; use --device cpu", parameter="device")
    resolution = res.resolution.pick(resolution)
    model = model_from_graph(build_graph(res))
    params = sum(p.numel() for p in model.parameters())
    shape = dict(in_channels=res.in_channels, classes=res.num_classes)
    result: dict[str, Any] = {
        "name": res.name,
        "device": device,
        "batch_size": batch,
        "resolution": resolution,
        "mode": "train" if train else "inference",
        "compiled": compiled,
        "params": params,
        "archspec": measure(model, device, batch, resolution, train, compiled, steps, **shape),
    }
    if vs_timm:
        reference, note = timm_equivalent(res, params)
        result["timm_note"] = note
        if reference is not None:
            result["timm"] = measure(reference, device, batch, resolution, train, compiled, steps, **shape)
    return result
