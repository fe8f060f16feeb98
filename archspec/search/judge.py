"""Where a candidate's accuracy is judged: where it will be deployed (`proxy.resolution`), not where
it trained. A candidate that trains at another resolution first gets the paper's fine-tune of its
last blocks there (section 3.4: the runner's `finetune`, from the proxy run's EMA weights), inside
its evaluation, so that the fine-tune's time is part of the candidate's cost. `best` follows the
paper's Table 5: every congruent resolution from the training one up to `proxy.best_up_to`, the best
kept. Which resolutions is pure (space.judged_resolutions); judging imports the runner on first use."""

from __future__ import annotations

import contextlib
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import open_append
from .space import Proxy


@dataclass(frozen=True)
class Judged:
    accuracy: float  # the mean over the proxy's seeds
    resolution: int  # pixels
    finetuned: bool
    by_seed: tuple[float, ...]


def judge(p: Proxy, runs: list[tuple[Path, dict[str, Any]]], train_px: int, at: list[int], log: Path) -> Judged:
    """The best mean accuracy over `at` of the proxy runs (one per seed, as (directory, summary)): at the
    training resolution as each run measured it, elsewhere after a fine-tune there (ties to the
    smaller, cheaper resolution)."""

    def at_resolution(r: int) -> Judged:
        if r == train_px:
            seeds = tuple(float(summary[f"val_top1_{p.weights}"]) for _, summary in runs)
        else:
            seeds = tuple(_finetuned(p, run, r, log) for run, _ in runs)
        return Judged(statistics.fmean(seeds), r, r != train_px, seeds)

    return max((at_resolution(r) for r in at), key=lambda j: (j.accuracy, -j.resolution))


def _finetuned(p: Proxy, run: Path, resolution: int, log: Path) -> float:
    """Top-1 after the proxy's fine-tune at `resolution`; one that finished (before a kill) is reused."""
    from ..runner.finetune import finetune
    from ..runner.options import FinetuneOptions
    from ..runner.rundir import RunDir

    done = RunDir(run)
    if done.finetune_info(resolution).is_file():
        return float(done.read_finetune_info(resolution)["val_top1"])
    blocks, steps = p.finetune_blocks, p.finetune_steps
    opts = FinetuneOptions(run=run, resolution=resolution, blocks=blocks, max_steps=steps, device=p.device, force=True)
    return float(quietly(log, lambda: finetune(opts))["val_top1"])


def quietly(log: Path, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The runner reports to stderr (a progress bar on a terminal): into the trial's log, not over ours."""
    with (
        os.fdopen(open_append(log, parameter="out"), "a") as f,
        contextlib.redirect_stdout(f),
        contextlib.redirect_stderr(f),
    ):
        return work()
