"""What a run reports: a progress bar (rich) or plain log lines, metrics.csv, and TensorBoard
events when tensorboard is installed. Only the main process reports."""

from __future__ import annotations

import csv
import io
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

from ..atomic import Appender, write_text
from ..reader import METRICS, read_text

COLUMNS = (
    "phase",
    "step",
    "epoch",
    "lr",
    "loss",
    "images_per_s",
    "weights",
    "resolution",
    "top1",
    "top5",
    "skipped_images",
    "time_s",
)


class Reporter:
    """Reports one phase of a run (train, or a fine-tune) from `start()` until closed."""

    def __init__(
        self,
        run_dir: Path,
        phase: str,
        total_steps: int,
        enabled: bool,
        log_every: int,
        log_every_seconds: float = 30.0,
    ) -> None:
        self.run_dir = run_dir
        self.enabled = enabled
        self.phase = phase
        self.total = total_steps
        # without a terminal (CI, nohup, a cluster's log): a line every log_every steps or
        # log_every_seconds, whichever comes first
        self.log_every, self.log_every_seconds = log_every, log_every_seconds
        self.last_line = 0.0
        self.first_step = 0
        self.started = self.window_start = time.perf_counter()
        self.window_images = 0
        self.rate = 0.0
        self.skipped = 0
        self._progress: Any = None
        self._tb: Any = None
        self._csv_file: Any = None

    def start(self, first_step: int) -> Reporter:
        """Open metrics.csv (forgetting steps after `first_step` that a resumed run does again),
        TensorBoard and the progress bar."""
        self.first_step = first_step
        self.started = self.window_start = time.perf_counter()
        if not self.enabled:
            return self
        path = self.run_dir / "metrics.csv"
        if os.path.lexists(path):
            _forget_after(path, self.phase, first_step)  # a resumed run logs those steps again
        new = not path.exists()
        self._csv_file = Appender(path, parameter="out")  # open until close(), across the run
        if new:
            self._csv_file.write(_csv_text(None))
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
        except ImportError:  # tensorboard is optional
            self._tb = None
        if sys.stderr.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("step {task.completed}/{task.total}"),
                TextColumn("{task.fields[status]}"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._task = self._progress.add_task(self.phase, total=self.total, completed=first_step, status="")
            self._progress.start()
        else:
            sys.stderr.write(
                f"{self.phase}: steps {first_step + 1} to {self.total} of {self.total}, in {self.run_dir}\n"
            )
            self.last_line = self.started
        return self

    def _write(self, row: dict[str, Any]) -> None:
        self._csv_file.write(_csv_text([{k: row.get(k, "") for k in COLUMNS}], header=False))

    def train_step(self, step: int, epoch: int, lr: float, loss: float, images: int, skipped: int) -> None:
        self.window_images += images
        self.skipped += skipped
        if not self.enabled:
            return
        now = time.perf_counter()
        if now > self.window_start:
            self.rate = self.window_images / (now - self.window_start)
        row = dict(
            phase=self.phase,
            step=step,
            epoch=epoch,
            lr=f"{lr:.6g}",
            loss=f"{loss:.6f}",
            images_per_s=f"{self.rate:.1f}",
            skipped_images=self.skipped,
            time_s=f"{now - self.started:.1f}",
        )
        self._write(row)
        if self._tb is not None:
            self._tb.add_scalar(f"{self.phase}/loss", loss, step)
            self._tb.add_scalar(f"{self.phase}/lr", lr, step)
        status = f"loss {loss:.4f}  {self.rate:.0f} img/s"
        if self._progress is not None:
            self._progress.update(self._task, completed=step, status=status)
        elif step % self.log_every == 0 or step == self.total or now - self.last_line >= self.log_every_seconds:
            remaining = (self.total - step) * (now - self.started) / max(step - self.first_step, 1)
            sys.stderr.write(f"{self.phase} step {step}/{self.total} epoch {epoch} {status} eta {_clock(remaining)}\n")
            self.last_line = now
        if now - self.window_start > 5:
            self.window_start, self.window_images = now, 0

    def evaluation(self, step: int, epoch: int, weights: str, resolution: int, top1: float, top5: float) -> None:
        if not self.enabled:
            return
        self._write(
            dict(
                phase=f"{self.phase}-eval",
                step=step,
                epoch=epoch,
                weights=weights,
                resolution=resolution,
                top1=f"{top1:.4f}",
                top5=f"{top5:.4f}",
                time_s=f"{time.perf_counter() - self.started:.1f}",
            )
        )
        if self._tb is not None:
            self._tb.add_scalar(f"{self.phase}/top1_{weights}_{resolution}", top1, step)
        self.message(
            f"{self.phase} eval at step {step}: {weights} weights, {resolution}px: top-1 {top1:.2%}, top-5 {top5:.2%}"
        )

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.console.print(text)
        else:
            sys.stderr.write(text + "\n")

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        if self._tb is not None:
            self._tb.close()
        if self._csv_file is not None:
            self._csv_file.close()


def _csv_text(rows: Optional[list[dict[str, Any]]], header: bool = True) -> str:
    """Rows of metrics.csv (with its header line), as text."""
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore")
    if header:
        writer.writeheader()
    writer.writerows(rows or [])
    return out.getvalue()


def _forget_after(path: Path, phase: str, step: int) -> None:
    """metrics.csv without the rows of `phase` past `step`: replaced whole (a full disk meanwhile
    leaves it as it was)."""
    text = read_text(path, METRICS, parameter="out")
    rows = csv.DictReader(io.StringIO(text, newline=""))
    write_text(path, _csv_text([r for r in rows if not (r.get("phase", "").startswith(phase) and _after(r, step))]))


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _after(row: dict[str, Any], step: int) -> bool:
    """Whether a logged row is past `step` (a row that says no step is dropped with them)."""
    try:
        return int(row.get("step") or "") > step
    except ValueError:
        return True
