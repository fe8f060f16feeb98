"""The bounds of every number archspec accepts, in one place: the spec schema, the CLI's flags
and the functions of the core all read them from here. Every input is bounded before work is
done on it: sizes, counts and magnitudes are checked where they come in, so that no input, valid
or not, makes a command run for minutes or fill the memory.

Also the one rule every path archspec is given must pass before the file system sees it
(`checked_path`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

from .errors import SpecError

MIN_RESOLUTION: Final = 8  # pixels; smaller images vanish under EfficientNet's five stride-2 layers
MAX_RESOLUTION: Final = 4096
MAX_GROUP_SIZE: Final = 4096
MIN_EXPANSION: Final = 1.0
MAX_EXPANSION: Final = 16.0
MAX_CHANNELS: Final = 65536  # of any resolved layer
MAX_BLOCKS: Final = 1024  # of a resolved network
MAX_BATCH: Final = 1 << 20
MAX_SEED: Final = 2**63 - 1  # torch's generators take a signed 64-bit seed

# YAML documents (specs, recipes, search files): a spec has a few hundred values; the bound stops a
# megabyte-long flow list or tens of thousands of keys while it is being read, in a fraction of a second
MAX_FILE_BYTES: Final = 1 << 20
MAX_YAML_NODES: Final = 20_000  # as written
MAX_EXPANDED_NODES: Final = 50_000  # once aliases are expanded: a "billion laughs" stops here
MAX_DEPTH: Final = 50
# the other files archspec reads (archspec/reader.py), each bounded by its kind: a profile of 1,340
# measurements is about 330 KiB; run.json, search.json and the like a few KiB; a checkpoint of B7
# with its optimizer state about 1 GiB; an ImageNet photo at most a few MiB
MAX_PROFILE_BYTES: Final = 16 << 20
MAX_RECORD_BYTES: Final = 4 << 20
MAX_JOURNAL_BYTES: Final = 1 << 30  # a search's Optuna journal: every trial of a long search
MAX_METRICS_BYTES: Final = 256 << 20  # metrics.csv: a row per step of a long run
MAX_CHECKPOINT_BYTES: Final = 16 << 30
MAX_IMAGE_BYTES: Final = 64 << 20
MIN_FREE_BYTES: Final = 1 << 20  # free space an output needs at the least, checked before any work
MAX_ERRORS_LISTED: Final = 100  # by `validate --all-errors`; the count of the rest is given

MAX_LIST_ITEMS: Final = 64  # of a comma-separated flag (resolutions, group sizes, expansion ratios)
MAX_STAGES: Final = 64  # pipeline stages of a plan (as --ipus and train --stages)
# blocks costed by one FLOP match (distinct architectures x blocks): every preset over E in [1, 8]
# fits, a few seconds at most; channel_divisor 1 over a wide range does not
MAX_MATCH_WORK: Final = 320_000
MAX_SWEEP_WORK: Final = 5_000  # blocks lowered by one sweep (rows x blocks): about 5 s at most

# what Linux accepts, checked by us first so that the answer is one line rather than an OSError
MAX_PATH_BYTES: Final = 4096
MAX_NAME_BYTES: Final = 255


def check_resolution(pixels: int, parameter: str = "resolution") -> int:
    """`pixels`, if a network can be costed and run at it; else a SpecError about `parameter`."""
    if not MIN_RESOLUTION <= pixels <= MAX_RESOLUTION:
        raise SpecError(f"must be from {MIN_RESOLUTION} to {MAX_RESOLUTION}, got {pixels}", parameter=parameter)
    return pixels


def path_problem(path: str | os.PathLike[str]) -> str | None:
    """Why the file system cannot be asked about `path` at all, or None."""
    text = os.fspath(path)
    if "\x00" in text:
        return "the path holds a NUL byte"
    try:
        encoded = os.fsencode(text)
    except UnicodeError:
        return "the path holds characters this file system cannot name (a lone surrogate?)"
    if len(encoded) > MAX_PATH_BYTES:
        return f"the path is {len(encoded)} bytes long; the file system allows {MAX_PATH_BYTES}"
    longest = max((len(part) for part in encoded.split(b"/")), default=0)
    if longest > MAX_NAME_BYTES:
        return f"a name in the path is {longest} bytes long; the file system allows {MAX_NAME_BYTES}"
    return None


def checked_path(path: str | os.PathLike[str], **where: Any) -> Path:
    """`path`, once it is one the file system can be asked about: no NUL byte, nothing that cannot
    be encoded, within the OS's length limits, no symbolic-link loop on the way. Otherwise a
    SpecError (`where`: its parameter=, field=, location= or file=). Every path a command is given
    (spec files, `base:`, --out, --write, --plot, --spec-root) passes through here first."""
    problem = path_problem(path)
    if problem is None:
        try:
            Path(path).resolve()
        except RuntimeError:  # Python < 3.13 reports a loop this way
            problem = "the path runs into a loop of symbolic links"
        except OSError as exc:
            problem = f"the path cannot be followed ({exc.strerror or exc})"
    if problem is not None:
        raise SpecError(problem, **where)
    return Path(path)
