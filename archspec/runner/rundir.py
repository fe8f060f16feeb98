"""A run directory: the one place that knows its file names and the shape of its run.json.

spec.yaml      the spec trained (every field written out)
recipe.yaml    the recipe, with any flag overrides
resolved.yaml  the concrete layers
run.json       RunInfo: options, data, batch sizes, status and, when finished, the summary
metrics.csv    one row per step and per evaluation (and tensorboard/ when installed)
checkpoint.pt  model, optimizer, scheduler, EMA and RNG: what --resume continues from
ema.pt         the weight average alone, for eval and finetune
finetuned-rR.pt  after `archspec finetune --resolution R`: one per resolution (finetune-rR.json, its
               summary), and `eval` uses it at R
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..atomic import check_writable_dir, write_error, write_text
from ..errors import SpecError
from ..limits import checked_path
from ..reader import RECORD, check_directory, read_json
from ..report import resolved_yaml
from ..resolve import ResolvedSpec
from ..spec import ModelSpec, spec_yaml
from .recipe import Recipe, recipe_yaml


@dataclass
class RunInfo:
    """run.json: how a run was started and how it ended. Data-parallel and pipelined runs write
    the same fields; `plan` and `schedule` are set for pipelined ones."""

    options: dict[str, Any]
    backend: str
    resolution: int
    classes: list[str]
    world_size: int
    global_batch_size: int
    micro_batch_size: int
    accum: int
    steps_per_epoch: int
    total_steps: int
    status: str = "running"  # running | finished | diverged
    command: list[str] = field(default_factory=list)
    torch: str = ""
    schedule: Optional[str] = None
    plan: Optional[dict[str, Any]] = None
    sync_bn: bool = False
    summary: Optional[dict[str, Any]] = None
    error: Optional[str] = None


LOCK_HELD = "ARCHSPEC_RUN_LOCK"  # set by a launcher for the processes it starts: the run dir it holds


class RunDir:
    """The files of one run."""

    def __init__(self, path: Path | str, parameter: str = "run") -> None:
        self.path = checked_path(path, parameter=parameter)
        self.spec = self.path / "spec.yaml"
        self.recipe = self.path / "recipe.yaml"
        self.resolved = self.path / "resolved.yaml"
        self.info_file = self.path / "run.json"
        self.metrics = self.path / "metrics.csv"
        self.checkpoint = self.path / "checkpoint.pt"
        self.ema = self.path / "ema.pt"

    def __str__(self) -> str:
        return str(self.path)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """This process as the run directory's one writer, for as long as it runs: an OS lock on
        DIR/.lock, which the kernel releases when the process ends however it ends. Processes a
        launcher started write under their launcher's lock. A directory this made is removed again
        if the command fails before writing anything into it (bad input found late leaves nothing)."""
        if os.environ.get(LOCK_HELD) == str(self.path.resolve()):
            yield
            return
        made = not os.path.lexists(self.path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        except OSError as exc:
            raise write_error(self.path, exc, "out") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise SpecError(f"{self.path / '.lock'}: not a regular file", parameter="out")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise SpecError(
                f"{self.path} is being written by another archspec process (pid {holder}): wait for it "
                "to end, or choose another --out",
                parameter="out",
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        except OSError as exc:
            os.close(fd)
            raise write_error(self.path / ".lock", exc, "out") from None
        try:
            yield
        except BaseException:
            if made and {p.name for p in self.path.iterdir()} <= {".lock"}:
                with contextlib.suppress(OSError):
                    (self.path / ".lock").unlink()
                    self.path.rmdir()
            raise
        finally:
            os.close(fd)  # releases the lock

    def finetuned(self, resolution: int) -> Path:
        return self.path / f"finetuned-r{resolution}.pt"

    def finetune_info(self, resolution: int) -> Path:
        return self.path / f"finetune-r{resolution}.json"

    def read_finetune_info(self, resolution: int) -> dict[str, Any]:
        """finetune-rR.json: what the fine-tune at R was (its summary)."""
        data = read_json(self.finetune_info(resolution), RECORD, parameter="run")
        if not isinstance(data, dict):
            raise SpecError(f"{self.finetune_info(resolution)}: not a fine-tune's summary", parameter="run")
        return data

    def create(self, need: int = 0) -> None:
        """Claim the directory for a new run: it must not hold one already, and must be writable,
        with `need` bytes free (what the run's files will take)."""
        if os.path.lexists(self.info_file):
            raise SpecError(
                f"{self.path} already holds a run: pass --resume to continue it, or choose another --out",
                parameter="out",
            )
        check_writable_dir(self.path, "out", need)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(self.path, exc, "out") from None

    def require(self, parameter: str = "run") -> None:
        if self.path.exists():
            check_directory(self.path, parameter=parameter, what="run directory")
        if not os.path.lexists(self.info_file):  # what is there is the reader's to judge
            what = "no run to resume" if parameter == "out" else "not a run directory"
            raise SpecError(f"{self.path}: {what} (no {self.info_file.name})", parameter=parameter)

    def raw_info(self, parameter: str = "run") -> dict[str, Any]:
        """run.json as written (a run may be of another backend, or half-written by an older archspec)."""
        self.require(parameter)
        data = read_json(self.info_file, RECORD, parameter=parameter)
        if not isinstance(data, dict):
            raise SpecError(f"{self.info_file}: not a run.json", parameter=parameter)
        return data

    def info(self, parameter: str = "run") -> RunInfo:
        data = self.raw_info(parameter)
        try:
            return RunInfo(**data)
        except TypeError as exc:
            raise SpecError(f"{self.info_file}: not a run.json of this archspec ({exc})", parameter=parameter) from None

    def write_info(self, run_info: RunInfo) -> None:
        write_text(self.info_file, json.dumps(asdict(run_info), indent=2))

    def write_inputs(self, spec: ModelSpec, recipe: Recipe, resolved: ResolvedSpec) -> None:
        write_text(self.spec, spec_yaml(spec))
        write_text(self.resolved, resolved_yaml(resolved))
        self.write_recipe(recipe)

    def write_recipe(self, recipe: Recipe) -> None:
        write_text(self.recipe, recipe_yaml(recipe))
