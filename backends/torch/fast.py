"""The fast paths of a built model, in one place: channels_last memory, torch.compile, and for
inference BN folded into the conv before it. `bench`, the runner (`train`, `finetune`, `eval`) and
`export` all take them from here, so that a flag means the same everywhere, and a fast path that
cannot run here says so in one line instead of falling back to the slow one.

None of them changes a number: tests/test_fast.py holds each equal to the eager model.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn

from archspec.errors import SpecError

from .allocator import keep_freed_memory


@dataclass(frozen=True)
class FastPaths:
    """What a user asked for with --channels-last, --compile and --fold."""

    channels_last: bool = False
    compiled: bool = False
    fold: bool = False

    def describe(self) -> str:
        on = [n for n, v in (("channels_last", self.channels_last), ("torch.compile", self.compiled)) if v]
        return ", ".join([*on, *(["BN folded"] if self.fold else [])]) or "eager"


def require_device(device: str) -> None:
    """A located error, before any work, where the device asked for is not on this machine."""
    if device == "cuda" and not torch.cuda.is_available():
        raise SpecError("CUDA is not available on this machine; use --device cpu", parameter="device")


def require_compiler(device: str) -> None:
    """One located line, before any work, where torch.compile cannot run on `device`: Inductor
    needs a C++ compiler for CPU code and Triton for GPU code. (Without this check the first batch
    would fail minutes in, or torch would be asked to fall back to eager, which we never do.)"""
    if device == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            raise SpecError("torch.compile needs Triton on a GPU, and it is not installed", parameter="compile")
        return
    from torch._inductor import cpp_builder

    try:
        cpp_builder.get_cpp_compiler()
    except Exception as exc:  # InvalidCxxCompiler, or whatever the search met on the way
        raise SpecError(
            f"torch.compile needs a C++ compiler for {device} code and found none ({exc}); install g++ or set CXX",
            parameter="compile",
        ) from None


def check(paths: FastPaths, device: str, train: bool) -> None:
    """Flags that cannot go together, or cannot run here: one line each (exit 2)."""
    if paths.fold and train:
        raise SpecError("--fold folds BN for inference: it goes without --train", parameter="fold")
    if paths.compiled:
        require_compiler(device)


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, int]:
    """For inference: every conv followed by a BatchNorm2d becomes one conv with the BN folded into
    its weights and bias (torch.nn.utils.fusion); the BN layer becomes what it applied after the
    normalization (a norm+act layer's activation: archspec's and timm's keep it as `act`), or an
    nn.Identity that traced exports drop. Layers register their children in the order they run
    (archspec's and timm's alike), so a conv's BN is its next sibling. Returns the model (in eval
    mode, changed in place) and how many BN layers were folded."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    folded = 0
    for parent in list(model.modules()):
        for (conv_name, conv), (bn_name, bn) in itertools.pairwise(list(parent.named_children())):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                parent.add_module(conv_name, fuse_conv_bn_eval(conv, bn))
                parent.add_module(bn_name, _after_normalizing(bn))
                folded += 1
    return model, folded


def _after_normalizing(bn: nn.Module) -> nn.Module:
    """What a (norm+act) BN layer applies after normalizing: timm's `drop` and `act`, archspec's
    `act`, leaving out the identities."""
    kept = [m for m in (getattr(bn, "drop", None), getattr(bn, "act", None)) if m is not None]
    kept = [m for m in kept if not isinstance(m, nn.Identity)]
    return kept[0] if len(kept) == 1 else nn.Sequential(*kept) if kept else nn.Identity()


def prepare(model: nn.Module, paths: FastPaths, device: str) -> tuple[nn.Module, nn.Module, int]:
    """`model` with the fast paths applied, as (the module that owns the weights, the callable to
    run, BN layers folded). Compiling wraps the module, so checkpoints keep the plain parameter
    names; channels_last moves the weights (inputs follow with `to_memory_format`). On a CPU the
    process keeps freed memory (module allocator)."""
    if device == "cpu":
        keep_freed_memory()
    folded = 0
    if paths.fold:
        model, folded = fold_batchnorm(model)
    if paths.channels_last:
        model = model.to(memory_format=torch.channels_last)
    run: nn.Module = torch.compile(model) if paths.compiled else model  # type: ignore[assignment]
    return model, run, folded


def to_memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
