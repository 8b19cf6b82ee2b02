"""The note that lets a temporary Prefect server skip its migration check reads the database
wherever EVALFLOW_HOME is, whatever characters its path holds."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from evalflow.temporary_server import MIGRATE_VARS, migration_settings, record_migration


@pytest.mark.parametrize("folder", ["plain", "a?b#c%20 d"])
def test_a_noted_migration_is_read_back_under_any_folder_name(
    tmp_path: Path, folder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in MIGRATE_VARS:
        monkeypatch.delenv(var, raising=False)
    database = tmp_path / folder / "temporary-server.db"
    database.parent.mkdir()
    url = f"sqlite+aiosqlite:///{database}"
    assert migration_settings(url) == {}  # no database yet
    with closing(sqlite3.connect(database)) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num TEXT)")
        conn.execute("INSERT INTO alembic_version VALUES ('27d8f4e1a6c9')")
        conn.commit()
    assert migration_settings(url) == {}  # not noted yet
    record_migration(url)
    assert migration_settings(url) == {MIGRATE_VARS[0]: "false"}
    database.with_name("temporary-server.db.migrated").write_text("{not json")
    assert migration_settings(url) == {}
    assert migration_settings("postgresql+asyncpg://db/prefect") == {}
