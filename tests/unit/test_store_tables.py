"""The local Weave store keeps a table's row digests as the JSON text of their list, written
to SQLite a piece at a time; a table stored as TEXT by an earlier version reads and counts
the same."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from evalflow.weave_local import server as store
from evalflow.weave_local.server import LocalTraceServer

PROJECT = "local/tables"


def _rows(n: int) -> list[dict[str, str]]:
    return [{"row_id": f"r{i}", "q": f'{i} "quoted" + \\ é'} for i in range(n)]


def test_a_table_is_read_and_counted_as_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "DIGESTS_PIECE", 7)  # several pieces, the last one short
    server = LocalTraceServer(tmp_path / "store.db")
    made = server.table_create({"table": {"project_id": PROJECT, "rows": _rows(23)}})
    whole = server.table_create_from_digests(
        {"project_id": PROJECT, "row_digests": made.row_digests}
    )
    assert whole.digest == made.digest  # the same table, stored once
    stats = server.table_query_stats({"project_id": PROJECT, "digest": made.digest})
    assert stats.count == 23
    read = server.table_query({"project_id": PROJECT, "digest": made.digest})
    assert [r.digest for r in read.rows] == made.row_digests
    assert [r.val for r in read.rows] == _rows(23)
    with sqlite3.connect(tmp_path / "store.db") as conn:
        (text,) = conn.execute("SELECT row_digests FROM tables").fetchone()
    assert json.loads(text) == made.row_digests  # the text `dumps` writes of the list
    assert bytes(text) == json.dumps(made.row_digests, separators=(",", ":")).encode()

    empty = server.table_create({"table": {"project_id": PROJECT, "rows": []}})
    assert server.table_query_stats({"project_id": PROJECT, "digest": empty.digest}).count == 0


def test_a_table_stored_as_text_before_reads_and_counts_the_same(tmp_path: Path) -> None:
    server = LocalTraceServer(tmp_path / "store.db")
    made = server.table_create({"table": {"project_id": PROJECT, "rows": _rows(5)}})
    with sqlite3.connect(tmp_path / "store.db") as conn:  # as an earlier version stored it
        conn.execute("DELETE FROM table_counts")
        conn.execute(
            "UPDATE tables SET row_digests=?",
            (json.dumps(made.row_digests, separators=(",", ":")),),
        )
        assert conn.execute("SELECT typeof(row_digests) FROM tables").fetchone() == ("text",)
    assert server.table_query_stats({"project_id": PROJECT, "digest": made.digest}).count == 5
    read = server.table_query({"project_id": PROJECT, "digest": made.digest})
    assert [r.val for r in read.rows] == _rows(5)
