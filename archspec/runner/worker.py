"""A process started by `distributed.launch`: runs the job it finds in the environment. An error
that stops it (bad input, divergence) is reported to the launcher, which raises it as its own."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..errors import DiskFull, Diverged, Interrupted, SpecError
from .distributed import JOB_VARIABLE, error_report
from .options import FinetuneOptions, TrainOptions


def main() -> int:
    job = json.loads(os.environ[JOB_VARIABLE])
    try:
        if job["command"] == "train":
            from .train import train

            train(TrainOptions.from_dict(job["options"]))
        else:
            from .finetune import finetune

            finetune(FinetuneOptions(**{**job["options"], "run": Path(job["options"]["run"])}))
    except (SpecError, Diverged, DiskFull, Interrupted) as exc:
        report = Path(job["errors"]) / f"rank-{os.environ.get('RANK', '0')}.json"
        report.write_text(json.dumps(error_report(exc)))
        return 2 if isinstance(exc, SpecError) else 130 if isinstance(exc, Interrupted) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
