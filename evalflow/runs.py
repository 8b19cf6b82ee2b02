"""A run's identity and folder: its id, its saved parameters, and the lock one process holds.

A run id is the suite, the UTC day and a digest of what defines the run (suite, the rows' ids,
dataset, models, limit, Weave project), so the same command started again the same day finds
its saved answers. The day is today's (UTC) unless `EVALFLOW_RUN_DAY` (YYYYMMDD) names another:
tests and replays make distinct nights with it. Which answers it reuses is decided row by row,
by the request each row sends (evalflow/inference.py, request_digest): an edited row is asked
again.
Every path made from a name (a run id, a model name) stays inside the runs' storage:
EVALFLOW_HOME/runs, or EVALFLOW_STORAGE (evalflow/storage.py) when set.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import hashlib
import json
import os
import re
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from evalflow import storage
from evalflow.errors import ConfigError, RunInProgressError, RunNotFoundError
from evalflow.lease import hold_lease, holder_text
from evalflow.storage import Location

PARAMETERS = "parameters.json"
LOCK = "run.lock"
LEASE = "run.lease"  # the lock's counterpart on remote storage (evalflow/lease.py)
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
RUN_DAY_ENV = "EVALFLOW_RUN_DAY"


def safe_name(name: str, limit: int = 40) -> str:
    """A file name for any text: its safe characters, plus a digest of the whole text when
    anything was changed or cut (so two names never share a folder), never '.' or '..'."""
    cleaned = _SAFE.sub("_", name).strip("._")[:limit]
    if cleaned == name:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{cleaned or 'x'}-{digest}"


def runs_root() -> Location:
    """Where runs live: EVALFLOW_STORAGE when set, else EVALFLOW_HOME/runs."""
    return storage.runs_root()


def run_dir(run_id: str) -> Location:
    """The run's folder (created, when local), for a run id evalflow made or a user typed."""
    return storage.make_folder(run_path(run_id))


def run_path(run_id: str) -> Location:
    """Where a run id's folder is, checked to be a run id (so it stays inside the home)."""
    if not _RUN_ID.match(run_id) or ".." in run_id:
        raise RunNotFoundError(f"{run_id!r} is not a run id (runs: {_known_runs(run_id)})")
    return runs_root() / run_id


def run_day() -> dt.date:
    """The day runs started now belong to: `EVALFLOW_RUN_DAY` (YYYYMMDD) when set, else today
    (UTC)."""
    text = os.environ.get(RUN_DAY_ENV, "").strip()
    if not text:
        return dt.datetime.now(dt.UTC).date()
    try:
        return dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        raise ConfigError(
            f"{RUN_DAY_ENV}={text!r} is not a day: give it as YYYYMMDD (e.g. 20250131), or unset "
            f"it to use today's date"
        ) from None


def make_run_id(suite: str, parts: dict[str, Any], row_ids: Iterable[str] | None = None) -> str:
    """The suite, the run's day (run_day) and a digest of everything that defines the run:
    `parts` and the rows' ids if given (as `parts["rows"]`, read one at a time)."""
    streamed = {"rows": row_ids} if row_ids is not None else {}
    digest = json_sha256(parts, streamed, sort_keys=True, default=str)
    day = run_day().strftime("%Y%m%d")
    return f"{safe_name(suite)}-{day}-{digest[:10]}"


def json_sha256(value: dict[str, Any], streamed: dict[str, Iterable[Any]], **options: Any) -> str:
    """sha256 (hex) of `json.dumps(value | {key: list(items)}, **options)` for each key and
    items of `streamed`, written item by item: no list of the items is made. `options` are
    json.dumps's, with its default separators."""
    marks = {key: f"evalflow-streamed-{uuid.uuid4().hex}" for key in streamed}
    text = json.dumps({**value, **marks}, **options)
    hasher = hashlib.sha256()
    for key, mark in sorted(marks.items(), key=lambda item: text.index(json.dumps(item[1]))):
        quoted = json.dumps(mark)
        before, text = text.split(quoted, 1)
        hasher.update(before.encode())
        hasher.update(b"[")
        for n, item in enumerate(streamed[key]):
            hasher.update((", " if n else "").encode() + json.dumps(item, **options).encode())
        hasher.update(b"]")
    hasher.update(text.encode())
    return hasher.hexdigest()


def same_definition(run_id: str, other: str) -> bool:
    """Whether two run ids have the same digest (the same suite, rows, models...)."""
    return run_id.rsplit("-", 1)[-1] == other.rsplit("-", 1)[-1]


class RunParameters(BaseModel):
    """What defines a run's rows and requests; saved with it so its failed rows can be re-run
    alone later."""

    suite: str
    models: list[str] | None = None
    limit: int | None = None
    dataset: str | None = None
    base_url: str | None = None
    weave_project: str | None = None
    chunk_size: int
    concurrency: int | None = None
    epochs: int | None = None  # the suite's own when None


def _known_runs(asked: str = "") -> str:
    """The runs here, those of the suite `asked` names first, then the newest."""
    suite = asked.rsplit("-", 2)[0]
    saved = [e for e in storage.listing(runs_root(), f"*/{PARAMETERS}")]
    saved.sort(key=lambda e: (not e.where.parent.name.startswith(f"{suite}-"), -e.modified))
    return ", ".join(e.where.parent.name for e in saved[:10]) or "none yet"


def save_parameters(run_id: str, parameters: RunParameters) -> None:
    write_atomic(run_dir(run_id) / PARAMETERS, parameters.model_dump_json(indent=2).encode())


def load_parameters(run_id: str) -> RunParameters:
    """The parameters a run was started with; a clear error for an unknown run id."""
    path = run_path(run_id) / PARAMETERS
    try:
        text = storage.read_bytes(path)
    except FileNotFoundError:
        known = _known_runs(run_id)
        raise RunNotFoundError(f"no run {run_id!r} under {runs_root()} (runs: {known})") from None
    except OSError as exc:
        raise RunNotFoundError(f"{path}: cannot read the run's parameters ({exc})") from None
    try:
        return RunParameters.model_validate_json(text)
    except ValidationError as exc:
        raise RunNotFoundError(f"{path}: cannot read the run's parameters ({exc})") from None


def write_atomic(path: Location, data: bytes) -> None:
    """Write a file (or object) whole or not at all (evalflow/storage.py, write_bytes)."""
    storage.write_bytes(path, data)


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, json.JSONDecodeError):
        info = {}
    return holder_text(info)


def _refusal(run_id: str, holder: str) -> RunInProgressError:
    return RunInProgressError(
        f"run {run_id} is already running ({holder}): nothing was sent. Wait for it to "
        f"finish; started again then, this run reuses its answers."
    )


@dataclass
class RunHold:
    """This process's hold on a run id. On remote storage the lease can be lost (its renewal
    stalled past its time to live, and another process took the run over): `on_lost` is then
    called with why."""

    on_lost: Callable[[str], None] | None = None

    def lost(self, reason: str) -> None:
        if self.on_lost is not None:
            self.on_lost(reason)


@contextmanager
def run_lock(run_id: str) -> Iterator[RunHold]:
    """Hold the run id for this process while the body runs; a second holder is refused with
    one line naming the first. On local storage the lock is the operating system's (flock): a
    process that dies releases it. On remote storage it is a lease (evalflow/lease.py): one
    that is not renewed expires, and is then taken over."""
    folder = run_dir(run_id)
    if isinstance(folder, storage.Remote):
        with _leased(run_id, folder / LEASE) as hold:
            yield hold
        return
    with _locked(run_id, folder / LOCK) as hold:
        yield hold


@contextmanager
def _leased(run_id: str, where: storage.Remote) -> Iterator[RunHold]:
    hold = RunHold()

    def refused(holder: dict[str, Any]) -> RunInProgressError:
        return _refusal(run_id, holder_text(holder))

    with hold_lease(where, refused, on_lost=hold.lost):
        yield hold


@contextmanager
def _locked(run_id: str, path: Path) -> Iterator[RunHold]:
    handle = path.open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise _refusal(run_id, _holder(path)) from None
        handle.seek(0)
        handle.truncate()
        since = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}))
        handle.flush()
        yield RunHold()
    finally:
        handle.close()  # releases the lock


def check_not_running(run_id: str) -> None:
    """Refuse at once if another process holds the run (the lock is taken again by the run)."""
    with run_lock(run_id):
        pass
