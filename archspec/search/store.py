"""Where a search lives: its output directory (whose files only this module names), the Optuna
storage (a journal file in the directory by default; a PostgreSQL database shared by several
machines with --storage), and the lock under which a worker claims its next trial.

Claiming under one lock (a file lock beside the journal, or a PostgreSQL advisory lock) is what
makes a trial budget exact and keeps two workers from evaluating one network at once; both kinds of
lock die with the process that holds them, so a killed worker never leaves one behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any, Optional

import optuna
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend

from ..atomic import open_append, write_files, write_text
from ..errors import SpecError
from ..reader import JOURNAL, RECORD, check_directory, read_json, regular_or_absent
from ..yaml_source import dump_yaml
from .space import Search

# a trial left running by a dead worker is retried this many times (then it stays failed)
MAX_RETRY = 2
# PostgreSQL: a trial whose worker has not beaten for GRACE seconds is failed and retried (Optuna's heartbeat)
HEARTBEAT_S = 10
GRACE_S = 60
CONNECT_TIMEOUT_S = 10
SCHEMA_LOCK = 0x61726368  # the advisory lock under which a new database gets Optuna's tables ("arch")
SCHEMES = ("postgresql://", "postgresql+")

optuna.logging.set_verbosity(optuna.logging.ERROR)  # a search reports through its own progress and files
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def retry_callback() -> RetryHeartbeatStaleTrialCallback:
    with warnings.catch_warnings():  # experimental since Optuna 2.8, and what Optuna's own docs use
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)


def _process_start(pid: int) -> str:
    """When process `pid` started (clock ticks since boot), so that a reused pid is not taken for
    the worker that died; '' where /proc cannot tell."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


WORKER = f"{socket.gethostname()}:{os.getpid()}:{_process_start(os.getpid())}"


def worker_alive(worker: str) -> Optional[bool]:
    """Whether the worker tag names a live process: None when it ran on another machine."""
    host, pid, started = worker.rsplit(":", 2)
    if host != socket.gethostname():
        return None
    try:
        with contextlib.suppress(PermissionError):  # a live process of another user: its start time decides
            os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    return started == _process_start(int(pid))


def public_url(url: str) -> str:
    """The storage URL without its password (which stays with the user: PGPASSWORD, ~/.pgpass or --storage)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(password=None).render_as_string(hide_password=False)


class SearchDir:
    """The output directory of a search."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.meta = self.path / "search.json"
        self.frozen = self.path / "search.yaml"  # the search as run, standalone: base.yaml beside it
        self.base = self.path / "base.yaml"
        self.recipe = self.path / "proxy-recipe.yaml"
        self.journal = self.path / "study.journal"
        self.lock = self.path / "claim.lock"
        self.trials_csv = self.path / "trials.csv"
        self.front_json = self.path / "front.json"
        self.front = self.path / "front"
        self.figure = self.path / "pareto.png"
        self.evaluations = self.path / "evaluations.jsonl"
        self.logs = self.path / "logs"
        self.trials = self.path / "trials"

    def read_meta(self, parameter: str = "out") -> dict[str, Any]:
        if self.path.exists():
            check_directory(self.path, parameter=parameter, what="search directory")
        if not os.path.lexists(self.meta):
            raise SpecError(f"{self.path}: not a search directory (no {self.meta.name})", parameter=parameter)
        data = read_json(self.meta, RECORD, parameter=parameter)
        if not isinstance(data, dict) or "fingerprint" not in data:
            raise SpecError(f"{self.meta}: not written by archspec search", parameter=parameter)
        return data

    def check(self, search: Search, fingerprint: str, resume: bool) -> Optional[dict[str, Any]]:
        """Refuse a directory this search may not use, before anything is written; its metadata
        when it holds this search (and --resume)."""
        if self.path.exists() and not self.path.is_dir():
            raise SpecError(f"{self.path}: not a directory", parameter="out")
        if self.meta.exists():
            meta = self.read_meta()
            if meta["fingerprint"] != fingerprint:
                raise SpecError(
                    f"{self.path} holds another search ({meta.get('name')!r}, started {meta.get('created')}); "
                    "choose another --out",
                    parameter="out",
                )
            if not resume:
                raise SpecError(f"{self.path} already holds this search: --resume continues it", parameter="out")
            return meta
        if resume:
            raise SpecError(f"{self.path}: no search to resume (no {self.meta.name})", parameter="resume")
        if self.path.is_dir() and any(self.path.iterdir()):
            raise SpecError(f"{self.path} is not empty and holds no search; choose another --out", parameter="out")
        return None

    def create(self, search: Search, fingerprint: str, study: str, storage: Optional[str]) -> dict[str, Any]:
        """Write the search as it runs: standalone (base.yaml and the proxy recipe beside it), so that
        `search show` and workers need nothing outside the directory."""
        data = search.file.model_dump(mode="json", exclude_none=True)
        data.update(base=self.base.name, fixed={})
        if search.dataset is not None:
            data["proxy"]["dataset"] = str(search.dataset)
        files = {self.base.name: dump_yaml(search.base.model_dump(mode="json", exclude_none=True, exclude={"base"}))}
        if search.recipe_text is not None:
            data["proxy"]["recipe"] = self.recipe.name
            files[self.recipe.name] = search.recipe_text
        files[self.frozen.name] = f"# {search.path} as `archspec search` runs it\n" + dump_yaml(data)
        meta = {
            "name": search.name,
            "fingerprint": fingerprint,
            "study": study,
            "storage": None if storage is None else public_url(storage),
            "source": str(search.path.resolve()),
            "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        write_files(self.path, files, parameter="out")
        write_text(self.meta, json.dumps(meta, indent=2) + "\n")
        return meta


def open_storage(url: Optional[str], journal: Path) -> optuna.storages.BaseStorage:
    """The journal file (several local processes share it through its lock) or a PostgreSQL database."""
    if url is None:  # Optuna opens the journal itself: a FIFO or a device in its place is refused first
        return JournalStorage(JournalFileBackend(str(regular_or_absent(journal, JOURNAL, parameter="out"))))
    if not url.startswith(SCHEMES):
        shown = url.split("://")[0] + "://..." if "://" in url else repr(url)
        raise SpecError(f"expected a postgresql://user@host/database URL, got {shown}", parameter="storage")
    # SQLAlchemy 2.1 would pick psycopg 3 for a bare postgresql://; the search extra ships psycopg2
    driver = "postgresql+psycopg2://" + url[len("postgresql://") :] if url.startswith("postgresql://") else url
    connect = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    try:
        return _rdb_storage(driver, connect)
    except Exception as exc:  # SQLAlchemy and the driver say why in many classes; the first line says it
        why = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise SpecError(f"cannot reach {public_url(url)}: {why}", parameter="storage") from None


def _rdb_storage(url: str, engine_kwargs: dict[str, Any]) -> RDBStorage:
    """Optuna's RDBStorage, created under an advisory lock: workers starting together on a new
    database would otherwise race to create its tables."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, connect_args=engine_kwargs["connect_args"], poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": SCHEMA_LOCK})
            try:
                with warnings.catch_warnings():  # heartbeat_interval is "experimental" since Optuna 2.9
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return RDBStorage(
                        url,
                        engine_kwargs=engine_kwargs,
                        heartbeat_interval=HEARTBEAT_S,
                        grace_period=GRACE_S,
                        heartbeat_stale_trial_callback=retry_callback(),
                    )
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SCHEMA_LOCK})
    finally:
        engine.dispose()


class ClaimLock:
    """One worker at a time claims a trial: a file lock on the machine, or a PostgreSQL advisory
    lock across machines. Re-entrant release; released by the OS if the process dies."""

    def __init__(self, storage: optuna.storages.BaseStorage, path: Path, key: str) -> None:
        self.storage, self.path, self.key = storage, path, int(key[:15], 16)
        self._held: Any = None

    def acquire(self) -> None:
        if isinstance(self.storage, RDBStorage):
            from sqlalchemy import text

            conn = self.storage.engine.connect()
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": self.key})
            self._held = conn
        else:
            handle = os.fdopen(open_append(self.path, parameter="out"), "a")  # held until release()
            fcntl.flock(handle, fcntl.LOCK_EX)
            self._held = handle

    def release(self) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        if isinstance(self.storage, RDBStorage):
            from sqlalchemy import text

            held.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            held.close()
        else:
            fcntl.flock(held, fcntl.LOCK_UN)
            held.close()

    def __enter__(self) -> ClaimLock:
        self.acquire()
        return self

    def __exit__(self, *_: Any) -> None:
        self.release()
