"""The SQLite file under the local Weave store: schema, connections, one writer at a time.

WAL mode lets readers run while one writer writes; a process-wide lock keeps this process's
threads from queueing inside SQLite's busy handler (which sleeps), and busy_timeout covers
other processes.

A file that cannot be opened, read or written (missing folder, a directory, not a database,
damaged, disk full, read-only) raises WeaveStoreError naming the file. A failed write is also
remembered (`failure`): writes happen on a writer thread too, whose errors would otherwise be
seen by no one.
"""

from __future__ import annotations

import errno
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from evalflow.errors import WeaveStoreError

BUSY_TIMEOUT_S = 60  # how long a write waits for another process's write to end

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    project_id TEXT NOT NULL,
    id TEXT NOT NULL,
    trace_id TEXT,
    parent_id TEXT,
    op_name TEXT,
    display_name TEXT,
    thread_id TEXT,
    turn_id TEXT,
    wb_run_id TEXT,
    wb_user_id TEXT,
    started_at TEXT,
    ended_at TEXT,
    attributes TEXT,
    inputs TEXT,
    output TEXT,
    summary TEXT,
    exception TEXT,
    input_refs TEXT,
    output_refs TEXT,
    deleted_at TEXT,
    has_start INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (project_id, id)
);
CREATE INDEX IF NOT EXISTS calls_by_start ON calls (project_id, started_at);
CREATE INDEX IF NOT EXISTS calls_by_op ON calls (project_id, op_name);
CREATE INDEX IF NOT EXISTS calls_by_trace ON calls (project_id, trace_id);
CREATE INDEX IF NOT EXISTS calls_by_parent ON calls (project_id, parent_id);
CREATE TABLE IF NOT EXISTS objects (
    project_id TEXT NOT NULL,
    object_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    kind TEXT NOT NULL,
    base_object_class TEXT,
    leaf_object_class TEXT,
    val TEXT NOT NULL,
    created_at TEXT NOT NULL,
    version_index INTEGER NOT NULL,
    deleted_at TEXT,
    PRIMARY KEY (project_id, object_id, digest)
);
CREATE TABLE IF NOT EXISTS tables (
    project_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    row_digests TEXT NOT NULL,  -- a JSON array (new tables: its text as a BLOB)
    PRIMARY KEY (project_id, digest)
);
CREATE TABLE IF NOT EXISTS table_counts (
    project_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (project_id, digest)
);
CREATE TABLE IF NOT EXISTS table_rows (
    project_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    val TEXT NOT NULL,
    PRIMARY KEY (project_id, digest)
);
CREATE TABLE IF NOT EXISTS files (
    project_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    content BLOB NOT NULL,
    PRIMARY KEY (project_id, digest)
);
CREATE TABLE IF NOT EXISTS feedback (
    project_id TEXT NOT NULL,
    id TEXT NOT NULL,
    weave_ref TEXT NOT NULL,
    feedback_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (project_id, id)
);
CREATE INDEX IF NOT EXISTS feedback_by_ref ON feedback (project_id, weave_ref);
"""


PRAGMAS = f"""
PRAGMA journal_mode=WAL;
PRAGMA synchronous=NORMAL;
PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000};
"""


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def loads(text: str | bytes | None) -> Any:
    return None if text is None else json.loads(text)


def _cause(exc: BaseException) -> str:
    """An OS or SQLite error in a few words: `SQLITE_FULL: database or disk is full`."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} (errno {exc.errno})"
    code = getattr(exc, "sqlite_errorname", None)
    return f"{code}: {exc}" if code else f"{type(exc).__name__}: {exc}"


_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NOT_ALLOWED = {errno.EACCES, errno.EPERM, errno.EROFS}


def _advice(exc: BaseException, writing: bool) -> str:
    """What to do about the error, for its cause: a disk or a file's mode only when the error
    says so (a lock held by another process is neither)."""
    code = str(getattr(exc, "sqlite_errorname", ""))
    number = exc.errno if isinstance(exc, OSError) else None
    if code == "SQLITE_FULL" or number in _NO_SPACE:
        return "free some space, then run again"
    if code.startswith("SQLITE_READONLY") or number in _NOT_ALLOWED:
        return "make it (and its folder) writable, then run again"
    if code.startswith("SQLITE_BUSY") and "locked" in str(exc):
        return (
            f"another process kept it locked for over {BUSY_TIMEOUT_S} s (evalflow commands "
            "or workers on the same store); run again when it is done"
        )
    if code == "SQLITE_CANTOPEN":
        return "check that its folder exists and that the file and folder can be written"
    if code.startswith("SQLITE_IOERR"):
        return "check the disk (full, removed, or over a file size limit), then run again"
    if writing:
        return "run again; if it fails again, move the file away to start a new store"
    return "restore it, or move it away to start a new store"


class Database:
    """One SQLite file; a connection per thread; writes serialised in this process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.failure: str | None = None  # the first failed write, said in one line
        self._local = threading.local()
        self._write_lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self.error("cannot create its folder", exc) from None
        with self._write_lock:
            try:
                self.connection().executescript(SCHEMA)
            except sqlite3.Error as exc:
                raise self.error("cannot open it", exc) from None

    def error(self, what: str, exc: BaseException) -> WeaveStoreError:
        """One line naming the file, what failed, the OS or SQLite error and what to do."""
        advice = _advice(exc, writing=what.startswith("cannot write"))
        return WeaveStoreError(f"Weave store {self.path}: {what} ({_cause(exc)}); {advice}")

    def connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self.path.is_dir():
                raise WeaveStoreError(
                    f"Weave store {self.path}: a directory, not a SQLite file; move it away"
                )
            try:
                conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
                # Run to their end, not left for the cursor's release to reset: `journal_mode`
                # counts as a write, and while anything still held its cursor (a heap walk
                # such as gc.get_objects() in another thread), this thread's COMMIT failed
                # with "SQL statements in progress".
                conn.executescript(PRAGMAS)
            except sqlite3.Error as exc:
                raise self.error("cannot open it", exc) from None
            self._local.conn = conn
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE), committed on exit, rolled back on error. A
        failed write raises WeaveStoreError and is remembered in `failure`."""
        conn = self.connection()
        with self._write_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    _rollback(conn)
                    raise
                conn.execute("COMMIT")
            except (sqlite3.Error, OSError) as exc:
                _rollback(conn)
                error = self.error("cannot write to it", exc)
                self.failure = self.failure or str(error)
                raise error from None

    def read(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[sqlite3.Row]:
        conn = self.connection()
        conn.row_factory = sqlite3.Row
        try:
            return list(conn.execute(sql, params))
        except sqlite3.Error as exc:
            raise self.error("cannot read it", exc) from None


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back what is open (SQLite may have rolled back already, as on a full disk)."""
    if conn.in_transaction:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
