"""The local Weave store's SQLite file: a write commits whatever else holds a reference to the
store's cursors, and a failed write's advice fits its cause (a lock is not a full disk)."""

from __future__ import annotations

import functools
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from evalflow.errors import WeaveStoreError
from evalflow.weave_local.db import Database
from evalflow.weave_local.server import LocalTraceServer

PROJECT = "local/db"


class _HeldCursors(sqlite3.Connection):
    """A connection whose cursors stay referenced, as a heap walk in another thread
    (gc.get_objects(), a memory profiler) holds every object alive while it looks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held: list[sqlite3.Cursor] = []

    def execute(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
        cursor = super().execute(*args, **kwargs)
        self.held.append(cursor)
        return cursor


def test_a_write_commits_while_something_holds_the_stores_cursors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen in a test whose watcher thread walked the heap while the store opened a thread's
    connection: the COMMIT failed with "SQL statements in progress", and every later flush
    of that store reported it."""
    monkeypatch.setattr(
        sqlite3, "connect", functools.partial(sqlite3.connect, factory=_HeldCursors)
    )
    server = LocalTraceServer(tmp_path / "store.db")
    made: list[str] = []

    def write() -> None:  # a thread of its own: a connection opened while cursors are held
        rows = [{"row_id": "r0", "q": "a question"}]
        made.append(server.table_create({"table": {"project_id": PROJECT, "rows": rows}}).digest)
        server.obj_create({"obj": {"project_id": PROJECT, "object_id": "o", "val": {"a": 1}}})

    worker = threading.Thread(target=write)
    worker.start()
    worker.join()
    server.flush()  # raises the first failed write, if any
    assert made and server.db.failure is None
    stats = server.table_query_stats({"project_id": PROJECT, "digest": made[0]})
    assert stats.count == 1


def _write_advice(db: Database, conn: sqlite3.Connection, sql: str) -> str:
    """The store's one line for the real SQLite error `sql` raises on `conn`."""
    with pytest.raises(sqlite3.Error) as caught:
        conn.execute(sql)
    return str(db.error("cannot write to it", caught.value))


def test_a_locked_store_is_not_blamed_on_the_disk(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    db = Database(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's write, never ending
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    message = _write_advice(db, other, "BEGIN IMMEDIATE")
    holder.execute("ROLLBACK")
    assert "SQLITE_BUSY" in message and "another process kept it locked" in message
    assert "space" not in message and "writable" not in message


def test_a_full_store_says_free_some_space(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    db = Database(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA max_page_count=1")  # as full as a disk with no room left
    message = _write_advice(db, conn, "INSERT INTO files VALUES ('p', 'd', zeroblob(100000))")
    assert "SQLITE_FULL" in message and "free some space" in message


def test_a_read_only_store_says_make_it_writable(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    db = Database(path)
    read_only = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    message = _write_advice(db, read_only, "INSERT INTO files VALUES ('p', 'd', x'00')")
    assert "SQLITE_READONLY" in message and "make it (and its folder) writable" in message


def test_a_damaged_store_says_restore_or_move_it(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(b"not a database, " * 512)
    with pytest.raises(WeaveStoreError) as caught:
        Database(path)
    assert str(path) in str(caught.value)
    assert "restore it, or move it away" in str(caught.value)


def test_a_statement_left_open_in_this_process_is_not_blamed_on_another(tmp_path: Path) -> None:
    """SQLITE_BUSY also says "SQL statements in progress": this process's own doing, which
    neither waiting for another process nor freeing space mends."""
    path = tmp_path / "store.db"
    db = Database(path)
    conn = sqlite3.connect(path, isolation_level=None)
    held = conn.execute("PRAGMA journal_mode=WAL")  # a write statement, stepped, not reset
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO files VALUES ('p', 'd', x'00')")
    message = _write_advice(db, conn, "COMMIT")
    held.close()
    assert "SQLITE_BUSY" in message and "statements in progress" in message
    assert "another process" not in message and "space" not in message
    assert "run again; if it fails again, move the file away" in message
