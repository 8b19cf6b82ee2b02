"""A Weave trace server on a local SQLite file, for the real `weave` client.

Implements what the weave 0.54 client uses (see shared/notes/weave-local-store.md): calls,
objects with versions, content-addressed tables, refs with extra paths, files, feedback and
the service calls. Digests come from weave's own digest functions, so refs are the same in
every process.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import json
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any

from weave.trace.errors import NotFoundError
from weave.trace.serialization.digest import (
    bytes_digest,
    compute_object_digest_result,
    compute_row_digest,
    compute_table_digest,
)
from weave.trace_server_bindings.models import (
    CallsQueryRes,
    EnsureProjectExistsRes,
    FileContentReadRes,
)
from weave.vendor.weave_server_sdk.types import (
    CallDeleteResponse,
    CallQueryStatsResponse,
    CallReadResponse,
    CallStartResponse,
    FeedbackCreateResponse,
    FeedbackQueryResponse,
    FileCreateResponse,
    ObjectCreateResponse,
    ObjectDeleteResponse,
    ObjectQueryResponse,
    ObjectReadResponse,
    RefReadBatchResponse,
    ServerInfoRes,
    TableCreateFromDigestsResponse,
    TableCreateResponse,
    TableQueryResponse,
    TableQueryStatsBatchResponse,
    TableQueryStatsResponse,
    TableUpdateResponse,
)
from weave.vendor.weave_server_sdk.types.call_read_response import Call
from weave.vendor.weave_server_sdk.types.object_read_response import Obj
from weave.vendor.weave_server_sdk.types.table_query_response import Row

from evalflow.errors import WeaveStoreError
from evalflow.weave_local.db import Database, dumps, loads
from evalflow.weave_local.query import get_path, matches, sort_records
from evalflow.weave_local.redact import SECRET_KEYS, known_secrets, redact
from evalflow.weave_local.refs import PREFIX, op_base_name, parse_ref, refs_in

CHUNK = 500  # SQLite parameters per IN (...)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)


def _is_op(val: Any) -> bool:
    return (
        isinstance(val, dict)
        and val.get("_type") == "CustomWeaveType"
        and isinstance(val.get("weave_type"), dict)
        and val["weave_type"].get("type") == "Op"
    )


def _redact_exception(text: str | None, secrets: list[str]) -> str | None:
    """An exception as weave sends it (JSON: type, message, traceback) without secrets: an
    endpoint's error body may echo the key it was sent."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return str(redact(text, secrets))
    return json.dumps(redact(value, secrets))


# What a key-like field looks like in JSON text (`"api_key"`), lower-cased.
_QUOTED_SECRET_KEYS = tuple(f'"{key}"' for key in SECRET_KEYS)


def _stored(value: Any, secrets: list[str]) -> tuple[str, str]:
    """A call's JSON value as the store keeps it: `dumps(redact(value))`, and the weave refs
    in it (space-separated, sorted). Most values have nothing to redact and no ref, which
    their JSON text shows at once (no key-like field, no known secret, no escaped character
    that could hide one, no ref prefix): the text is then the value's own, found without
    walking the value three times in Python."""
    text = dumps(value)
    lowered = text.lower()
    if (
        "\\u" in text
        or any(key in lowered for key in _QUOTED_SECRET_KEYS)
        or any(json.dumps(secret)[1:-1] in text for secret in secrets)
    ):
        value = redact(value, secrets)
        text = dumps(value)
    if PREFIX not in text:
        return text, ""
    return text, " ".join(sorted(set(refs_in(value))))


def _start_values(start: Any, secrets: list[str], attributes: str | None = None) -> tuple[Any, ...]:
    """A call's start as the calls table keeps it, redacted (its id and trace id made when
    missing): project_id, id, trace_id ... inputs, input_refs. `attributes`: their stored
    JSON when already known."""
    inputs, input_refs = _stored(start.get("inputs") or {}, secrets)
    if attributes is None:
        attributes = _stored(start.get("attributes") or {}, secrets)[0]
    return (
        start["project_id"],
        start.get("id") or str(uuid.uuid4()),
        start.get("trace_id") or str(uuid.uuid4()),
        start.get("parent_id"),
        start["op_name"],
        redact(start.get("display_name"), secrets),
        start.get("thread_id"),
        start.get("turn_id"),
        start.get("wb_run_id"),
        start.get("wb_user_id"),
        _iso(start["started_at"]),
        attributes,
        inputs,
        input_refs,
    )


def _end_values(end: Any, secrets: list[str]) -> tuple[Any, ...]:
    """A call's end as the calls table keeps it, redacted: ended_at, output, summary,
    exception, output_refs."""
    output, output_refs = _stored(end.get("output"), secrets)
    return (
        _iso(end["ended_at"]),
        output,
        _stored(end.get("summary") or {}, secrets)[0],
        _redact_exception(end.get("exception"), secrets),
        output_refs,
    )


BACKLOG = 20  # batches queued before the caller writes itself (back-pressure)


DIGESTS_PIECE = 5000  # row digests written to the store at a time


def _digests_json(digests: Sequence[str]) -> Iterator[bytes]:
    """The JSON array of a table's row digests, as `dumps` writes a list of them, in pieces of
    DIGESTS_PIECE digests (500,000 rows: 23 MB of text, never built whole here)."""
    yield b"["
    for start in range(0, len(digests), DIGESTS_PIECE):
        piece = digests[start : start + DIGESTS_PIECE]
        text = b",".join(encode_basestring_ascii(d).encode("ascii") for d in piece)
        yield b"," + text if start else text
    yield b"]"


class LocalTraceServer:
    """The trace server interface the WeaveClient talks to, on one SQLite file."""

    # table_create_from_digests takes any sequence of digests (evalflow/patches/weave_table.py
    # passes its packed RowDigests: no list of every row's digest as strings).
    TAKES_DIGEST_SEQUENCES = True

    def __init__(self, path: Path, flush_every_s: float = 0.05, batch: int = 500) -> None:
        self.db = Database(path)
        # Call starts and ends are written behind, in batches (one transaction each): a traced
        # call costs two writes, too many for a transaction each. Reads drain the queue first.
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self._pending_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._batch = batch
        self._wake = threading.Event()
        self._flush_every_s = flush_every_s
        self._flusher = threading.Thread(target=self._flush_loop, daemon=True)
        self._flusher.start()
        atexit.register(self._flush_at_exit)

    def _enqueue(self, sql: str, values: tuple[Any, ...]) -> None:
        """Queue one write for the flusher thread (a traced call's start or end)."""
        with self._pending_lock:
            self._pending.append((sql, values))
            queued = len(self._pending)
        self._queued(queued)

    def _enqueue_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """Queue writes of one statement, each of `rows` its values."""
        with self._pending_lock:
            self._pending.extend((sql, values) for values in rows)
            queued = len(self._pending)
        self._queued(queued)

    def _queued(self, queued: int) -> None:
        """After queueing (`queued` writes now wait): wake the flusher once a batch waits. The
        caller (with weave's client_parallelism 0, the thread that makes the traced call: an
        event loop's) writes only when the queue is far behind (BACKLOG batches), as
        back-pressure: waiting on SQLite's lock, which other processes on the same store may
        hold, would stall every request of its loop."""
        if queued >= BACKLOG * self._batch:  # a failed write is kept in db.failure
            with contextlib.suppress(WeaveStoreError):
                self._write_pending()
        elif queued >= self._batch:
            self._wake.set()

    def _flush_loop(self) -> None:
        # A failed write is kept (db.failure) for flush() to raise; the loop goes on, slower,
        # so the queued calls are written if the disk has room again.
        while True:
            self._wake.wait(self._flush_every_s if self.db.failure is None else 1.0)
            self._wake.clear()
            with contextlib.suppress(WeaveStoreError):
                self._write_pending()

    def _flush_at_exit(self) -> None:
        try:
            self.flush()
        except WeaveStoreError as exc:
            sys.stderr.write(f"error: {exc}\n")

    def _write_pending(self) -> None:
        """Write every queued call start and end now; on failure they stay queued."""
        with self._flush_lock:
            with self._pending_lock:
                pending, self._pending = self._pending, []
            if not pending:
                return
            try:
                with self.db.write() as conn:
                    # One execute a write. executemany over runs of one statement failed
                    # with SQLITE_MISUSE in two CI runs (edf1af2, 0d130f5), in the test whose
                    # other thread walks the heap (gc.get_objects) while a flow traces: not
                    # understood, and no gain was measured for it.
                    for sql, values in pending:
                        conn.execute(sql, values)
            except WeaveStoreError:
                with self._pending_lock:
                    self._pending[:0] = pending
                raise

    def flush(self) -> None:
        """Write every queued call start and end now. WeaveStoreError (naming the file and the
        OS error) if this or any earlier write of this store failed: what was traced since may
        be lost."""
        with contextlib.suppress(WeaveStoreError):
            self._write_pending()
        if self.db.failure is not None:
            raise WeaveStoreError(self.db.failure)

    # ---- service -------------------------------------------------------------------------
    def server_info(self) -> ServerInfoRes:
        return ServerInfoRes(
            min_required_weave_python_version="0.0.0", trace_server_version="local"
        )

    def ensure_project_exists(self, entity: str, project: str) -> EnsureProjectExistsRes:
        return EnsureProjectExistsRes(project_name=project)

    # ---- calls -----------------------------------------------------------------------------
    def call_start(self, req: Any) -> CallStartResponse:
        values = _start_values(req["start"], known_secrets())
        self._enqueue(
            """INSERT INTO calls (project_id, id, trace_id, parent_id, op_name, display_name,
                thread_id, turn_id, wb_run_id, wb_user_id, started_at, attributes, inputs,
                input_refs, has_start) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,1)
                ON CONFLICT (project_id, id) DO UPDATE SET trace_id=excluded.trace_id,
                parent_id=excluded.parent_id, op_name=excluded.op_name,
                display_name=COALESCE(calls.display_name, excluded.display_name),
                thread_id=excluded.thread_id, turn_id=excluded.turn_id,
                wb_run_id=excluded.wb_run_id, wb_user_id=excluded.wb_user_id,
                started_at=excluded.started_at, attributes=excluded.attributes,
                inputs=excluded.inputs, input_refs=excluded.input_refs, has_start=1""",
            values,
        )
        return CallStartResponse(id=values[1], trace_id=values[2])

    def call_end(self, req: Any) -> None:
        end = req["end"]
        self._enqueue(
            """INSERT INTO calls (project_id, id, trace_id, ended_at, output, summary,
                exception, output_refs) VALUES (?,?,?,?,?,?,?,?)
                ON CONFLICT (project_id, id) DO UPDATE SET ended_at=excluded.ended_at,
                output=excluded.output, summary=excluded.summary, exception=excluded.exception,
                output_refs=excluded.output_refs""",
            (end["project_id"], end["id"], end.get("trace_id"), *_end_values(end, known_secrets())),
        )

    def calls_complete(self, req: Any) -> dict[str, Any]:
        """Calls already finished when sent, start and end together (weave's calls_complete:
        `{"batch": [...]}`, each item its v2 call-complete shape): one write per call where
        call_start and call_end take two, redacted as they are. Items sharing one attributes
        object (a run's rows) have it written to JSON once."""
        secrets = known_secrets()
        shared: tuple[Any, str] | None = None
        rows = []
        for item in req["batch"]:
            given = item.get("attributes") or {}
            if shared is None or shared[0] is not given:
                shared = (given, _stored(given, secrets)[0])
            start = _start_values(item, secrets, attributes=shared[1])
            rows.append((*start, *_end_values(item, secrets)))
        self._enqueue_many(
            """INSERT OR REPLACE INTO calls (project_id, id, trace_id, parent_id, op_name,
                display_name, thread_id, turn_id, wb_run_id, wb_user_id, started_at, attributes,
                inputs, input_refs, ended_at, output, summary, exception, output_refs,
                has_start) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,1)""",
            rows,
        )
        return {}

    def _call_dict(self, row: Any) -> dict[str, Any]:
        summary = loads(row["summary"]) or {}
        started, ended = row["started_at"], row["ended_at"]
        status = "error" if row["exception"] else "success" if ended else "running"
        latency = None
        if started and ended:
            delta = dt.datetime.fromisoformat(ended) - dt.datetime.fromisoformat(started)
            latency = int(delta.total_seconds() * 1000)
        summary["weave"] = {
            **(summary.get("weave") or {}),
            "status": status,
            "latency_ms": latency,
            "trace_name": row["display_name"] or op_base_name(row["op_name"] or ""),
            "display_name": row["display_name"],
        }
        return {
            "project_id": row["project_id"],
            "id": row["id"],
            "trace_id": row["trace_id"],
            "parent_id": row["parent_id"],
            "op_name": row["op_name"],
            "display_name": row["display_name"],
            "thread_id": row["thread_id"],
            "turn_id": row["turn_id"],
            "wb_run_id": row["wb_run_id"],
            "wb_user_id": row["wb_user_id"],
            "started_at": started,
            "ended_at": ended,
            "attributes": loads(row["attributes"]) or {},
            "inputs": loads(row["inputs"]) or {},
            "output": loads(row["output"]),
            "summary": summary,
            "exception": row["exception"],
            "deleted_at": row["deleted_at"],
        }

    def _matching_calls(self, req: Any) -> list[dict[str, Any]]:
        project_id = req["project_id"]
        flt = req.get("filter") or {}
        sql = ["SELECT * FROM calls WHERE project_id=? AND has_start=1 AND deleted_at IS NULL"]
        params: list[Any] = [project_id]
        for column, key in (
            ("id", "call_ids"),
            ("trace_id", "trace_ids"),
            ("parent_id", "parent_ids"),
            ("thread_id", "thread_ids"),
            ("turn_id", "turn_ids"),
            ("wb_run_id", "wb_run_ids"),
            ("wb_user_id", "wb_user_ids"),
        ):
            wanted = flt.get(key)
            if wanted is not None:
                sql.append(f"AND {column} IN ({','.join('?' * len(wanted))})")
                params.extend(wanted)
        if flt.get("trace_roots_only"):
            sql.append("AND parent_id IS NULL")
        op_names = flt.get("op_names")
        if op_names:
            clauses = []
            for name in op_names:
                if name.endswith(":*"):
                    clauses.append("op_name LIKE ? ESCAPE '\\'")
                    escaped = name[:-1].replace("\\", "\\\\").replace("%", "\\%")
                    params.append(escaped.replace("_", "\\_") + "%")
                else:
                    clauses.append("op_name = ?")
                    params.append(name)
            sql.append(f"AND ({' OR '.join(clauses)})")
        sql.append("ORDER BY started_at, rowid")
        self._write_pending()
        rows = self.db.read(" ".join(sql), params)
        input_refs = set(flt.get("input_refs") or [])
        output_refs = set(flt.get("output_refs") or [])
        calls = []
        for row in rows:
            if input_refs and not input_refs & set((row["input_refs"] or "").split()):
                continue
            if output_refs and not output_refs & set((row["output_refs"] or "").split()):
                continue
            call = self._call_dict(row)
            if matches(req.get("query"), call):
                calls.append(call)
        sort_records(calls, req.get("sort_by"))
        offset = req.get("offset") or 0
        limit = req.get("limit")
        return calls[offset : offset + limit if limit is not None else None]

    def calls_query_stream(self, req: Any) -> Iterator[Call]:
        for call in self._matching_calls(req):
            yield Call.model_validate(call)

    def calls_query(self, req: Any) -> CallsQueryRes:
        return CallsQueryRes(calls=list(self.calls_query_stream(req)))

    def calls_query_stats(self, req: Any) -> CallQueryStatsResponse:
        return CallQueryStatsResponse(count=len(self._matching_calls(req)))

    def call_read(self, req: Any) -> CallReadResponse:
        calls = self._matching_calls(
            {"project_id": req["project_id"], "filter": {"call_ids": [req["id"]]}}
        )
        return CallReadResponse(call=Call.model_validate(calls[0]) if calls else None)

    def call_update(self, req: Any) -> None:
        self._write_pending()
        with self.db.write() as conn:
            if "display_name" in req:
                conn.execute(
                    "UPDATE calls SET display_name=? WHERE project_id=? AND id=?",
                    (redact(req["display_name"]), req["project_id"], req["call_id"]),
                )

    def calls_delete(self, req: Any) -> CallDeleteResponse:
        ids = list(req["call_ids"])
        project_id = req["project_id"]
        self._write_pending()
        # A deleted call takes its descendants with it.
        frontier, every = ids, set(ids)
        while frontier:
            marks = ",".join("?" * len(frontier))
            children = self.db.read(
                f"SELECT id FROM calls WHERE project_id=? AND parent_id IN ({marks})",
                [project_id, *frontier],
            )
            frontier = [r["id"] for r in children if r["id"] not in every]
            every.update(frontier)
        now = _now()
        with self.db.write() as conn:
            conn.executemany(
                "UPDATE calls SET deleted_at=? WHERE project_id=? AND id=? AND deleted_at IS NULL",
                [(now, project_id, call_id) for call_id in every],
            )
        return CallDeleteResponse(num_deleted=len(every))

    # ---- objects ---------------------------------------------------------------------------
    def obj_create(self, req: Any) -> ObjectCreateResponse:
        obj = req["obj"]
        project_id, object_id = obj["project_id"], obj["object_id"]
        result = compute_object_digest_result(obj["val"], obj.get("builtin_object_class"))
        processed = redact(result.processed_val)
        with self.db.write() as conn:
            existing = conn.execute(
                "SELECT deleted_at FROM objects WHERE project_id=? AND object_id=? AND digest=?",
                (project_id, object_id, result.digest),
            ).fetchone()
            if existing is None:
                (count,) = conn.execute(
                    "SELECT COUNT(*) FROM objects WHERE project_id=? AND object_id=?",
                    (project_id, object_id),
                ).fetchone()
                conn.execute(
                    "INSERT INTO objects VALUES (?,?,?,?,?,?,?,?,?,NULL)",
                    (
                        project_id,
                        object_id,
                        result.digest,
                        "op" if _is_op(processed) else "object",
                        result.base_object_class,
                        result.leaf_object_class,
                        dumps(processed),
                        _now(),
                        count,
                    ),
                )
            elif existing[0] is not None:
                conn.execute(
                    "UPDATE objects SET deleted_at=NULL WHERE project_id=? AND object_id=? "
                    "AND digest=?",
                    (project_id, object_id, result.digest),
                )
        return ObjectCreateResponse(digest=result.digest, object_id=object_id)

    def _objects(
        self, project_id: str, where: str = "", params: tuple[Any, ...] = (), with_val: bool = True
    ) -> list[dict[str, Any]]:
        rows = self.db.read(
            "SELECT *, (version_index = (SELECT MAX(o2.version_index) FROM objects o2 WHERE "
            "o2.project_id=objects.project_id AND o2.object_id=objects.object_id AND "
            "o2.deleted_at IS NULL)) AS is_latest FROM objects WHERE project_id=? "
            f"AND deleted_at IS NULL {where} ORDER BY created_at, version_index",
            (project_id, *params),
        )
        return [
            {
                "project_id": r["project_id"],
                "object_id": r["object_id"],
                "digest": r["digest"],
                "kind": r["kind"],
                "base_object_class": r["base_object_class"],
                "leaf_object_class": r["leaf_object_class"],
                "val": loads(r["val"]) if with_val else {},
                "created_at": r["created_at"],
                "version_index": r["version_index"],
                "is_latest": int(r["is_latest"] or 0),
            }
            for r in rows
        ]

    def _find_object(self, project_id: str, object_id: str, digest: str) -> dict[str, Any]:
        if digest == "latest":
            found = self._objects(project_id, "AND object_id=?", (object_id,))
            found = [o for o in found if o["is_latest"]]
        elif digest.startswith("v") and digest[1:].isdigit():
            found = self._objects(
                project_id, "AND object_id=? AND version_index=?", (object_id, int(digest[1:]))
            )
        else:
            found = self._objects(project_id, "AND object_id=? AND digest=?", (object_id, digest))
        if not found:
            raise NotFoundError(f"Object {object_id}:{digest} not found in {project_id}")
        return found[0]

    def obj_read(self, req: Any) -> ObjectReadResponse:
        obj = self._find_object(req["project_id"], req["object_id"], req["digest"])
        return ObjectReadResponse(obj=Obj.model_validate(obj))

    def objs_query(self, req: Any) -> ObjectQueryResponse:
        flt = req.get("filter") or {}
        objs = self._objects(req["project_id"], with_val=not req.get("metadata_only"))
        if flt.get("object_ids") is not None:
            objs = [o for o in objs if o["object_id"] in set(flt["object_ids"])]
        if flt.get("is_op") is not None:
            objs = [o for o in objs if (o["kind"] == "op") == flt["is_op"]]
        if flt.get("latest_only"):
            objs = [o for o in objs if o["is_latest"]]
        if flt.get("base_object_classes") is not None:
            objs = [o for o in objs if o["base_object_class"] in set(flt["base_object_classes"])]
        if flt.get("leaf_object_classes") is not None:
            objs = [o for o in objs if o["leaf_object_class"] in set(flt["leaf_object_classes"])]
        if flt.get("exclude_base_object_classes"):
            excluded = set(flt["exclude_base_object_classes"])
            objs = [o for o in objs if o["base_object_class"] not in excluded]
        sort_records(objs, req.get("sort_by"))
        offset, limit = req.get("offset") or 0, req.get("limit")
        objs = objs[offset : offset + limit if limit is not None else None]
        return ObjectQueryResponse.model_validate({"objs": objs})

    def obj_delete(self, req: Any) -> ObjectDeleteResponse:
        digests = req.get("digests")
        where = "project_id=? AND object_id=? AND deleted_at IS NULL"
        params: list[Any] = [req["project_id"], req["object_id"]]
        if digests:
            where += f" AND digest IN ({','.join('?' * len(digests))})"
            params.extend(digests)
        with self.db.write() as conn:
            count = conn.execute(
                f"UPDATE objects SET deleted_at=? WHERE {where}", [_now(), *params]
            ).rowcount
        if count == 0:
            raise NotFoundError(f"Object {req['object_id']} not found")
        return ObjectDeleteResponse(num_deleted=count)

    # ---- tables ----------------------------------------------------------------------------
    def _store_table(
        self, project_id: str, row_digests: Sequence[str], rows: list[tuple[str, str]]
    ) -> str:
        """Store a table: its rows not stored yet, and its digests' JSON array, written in place
        a piece at a time (SQLite's incremental BLOB I/O: neither this process nor SQLite holds
        the whole text; a table stored before this holds it as TEXT, read the same way)."""
        digest = compute_table_digest(row_digests)  # type: ignore[arg-type]  # reads them in order
        size = sum(len(piece) for piece in _digests_json(row_digests))
        with self.db.write() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO table_rows VALUES (?,?,?)",
                [(project_id, d, v) for d, v in rows],
            )
            made = conn.execute(
                "INSERT OR IGNORE INTO tables VALUES (?,?,zeroblob(?))", (project_id, digest, size)
            )
            if made.rowcount == 1:
                assert made.lastrowid is not None  # the row just inserted
                with conn.blobopen("tables", "row_digests", made.lastrowid) as blob:
                    for piece in _digests_json(row_digests):
                        blob.write(piece)
                conn.execute(
                    "INSERT OR IGNORE INTO table_counts VALUES (?,?,?)",
                    (project_id, digest, len(row_digests)),
                )
        return digest

    def table_create(self, req: Any) -> TableCreateResponse:
        table = req["table"]
        secrets = known_secrets()
        rows = [redact(r, secrets) for r in table["rows"]]
        digests = [compute_row_digest(r) for r in rows]
        digest = self._store_table(
            table["project_id"],
            digests,
            [(d, dumps(r)) for d, r in zip(digests, rows, strict=True)],
        )
        return TableCreateResponse(digest=digest, row_digests=digests)

    def table_create_from_digests(self, req: Any) -> TableCreateFromDigestsResponse:
        """A table of rows already stored, from their digests: a list, or any sequence of
        them (TAKES_DIGEST_SEQUENCES), which is read without a list of every digest."""
        return TableCreateFromDigestsResponse(
            digest=self._store_table(req["project_id"], req["row_digests"], [])
        )

    def _row_digests(self, project_id: str, digest: str) -> list[str]:
        found = self.db.read(
            "SELECT row_digests FROM tables WHERE project_id=? AND digest=?", (project_id, digest)
        )
        if not found:
            raise NotFoundError(f"Table {digest} not found in {project_id}")
        return list(loads(found[0]["row_digests"]))

    def _row_values(self, project_id: str, digests: list[str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        unique = list(dict.fromkeys(digests))
        for i in range(0, len(unique), CHUNK):
            part = unique[i : i + CHUNK]
            for r in self.db.read(
                f"SELECT digest, val FROM table_rows WHERE project_id=? AND digest IN "
                f"({','.join('?' * len(part))})",
                [project_id, *part],
            ):
                values[r["digest"]] = loads(r["val"])
        return values

    def table_update(self, req: Any) -> TableUpdateResponse:
        project_id = req["project_id"]
        digests = self._row_digests(project_id, req["base_digest"])
        new_rows: list[tuple[str, str]] = []
        secrets = known_secrets()
        for update in req["updates"]:
            if "append" in update:
                row = redact(update["append"]["row"], secrets)
                digests.append(compute_row_digest(row))
                new_rows.append((digests[-1], dumps(row)))
            elif "pop" in update:
                digests.pop(update["pop"]["index"])
            elif "insert" in update:
                row = redact(update["insert"]["row"], secrets)
                d = compute_row_digest(row)
                digests.insert(update["insert"]["index"], d)
                new_rows.append((d, dumps(row)))
        digest = self._store_table(project_id, digests, new_rows)
        return TableUpdateResponse(digest=digest, updated_row_digests=[d for d, _ in new_rows])

    def table_query_stream(self, req: Any) -> Iterator[Row]:
        project_id = req["project_id"]
        digests = self._row_digests(project_id, req["digest"])
        indexed = list(enumerate(digests))
        wanted = (req.get("filter") or {}).get("row_digests")
        if wanted is not None:
            keep = set(wanted)
            indexed = [(i, d) for i, d in indexed if d in keep]
        sort_by = req.get("sort_by")
        offset, limit = req.get("offset") or 0, req.get("limit")
        if sort_by:
            values = self._row_values(project_id, [d for _, d in indexed])
            records = [{"i": i, "d": d, "val": values.get(d)} for i, d in indexed]
            records = sort_records(records, [{**s, "field": f"val.{s['field']}"} for s in sort_by])
            indexed = [(r["i"], r["d"]) for r in records]
        indexed = indexed[offset : offset + limit if limit is not None else None]
        values = self._row_values(project_id, [d for _, d in indexed])
        for i, d in indexed:
            yield Row(digest=d, val=values.get(d), original_index=i)

    def table_query(self, req: Any) -> TableQueryResponse:
        return TableQueryResponse(rows=list(self.table_query_stream(req)))

    def _row_count(self, project_id: str, digest: str) -> int:
        """How many rows a table has (kept when it is stored; a table stored before that is
        counted by SQLite): its digests are not read here."""
        found = self.db.read(
            "SELECT n FROM table_counts WHERE project_id=? AND digest=?", (project_id, digest)
        ) or self.db.read(
            "SELECT json_array_length(CAST(row_digests AS TEXT)) AS n FROM tables WHERE "
            "project_id=? AND digest=?",
            (project_id, digest),
        )
        if not found:
            raise NotFoundError(f"Table {digest} not found in {project_id}")
        return int(found[0]["n"])

    def table_query_stats(self, req: Any) -> TableQueryStatsResponse:
        return TableQueryStatsResponse(count=self._row_count(req["project_id"], req["digest"]))

    def table_query_stats_batch(self, req: Any) -> TableQueryStatsBatchResponse:
        tables = [
            {"digest": d, "count": self._row_count(req["project_id"], d)}
            for d in req.get("digests") or []
        ]
        return TableQueryStatsBatchResponse.model_validate({"tables": tables})

    # ---- refs ------------------------------------------------------------------------------
    def _resolve(self, uri: str) -> Any:
        ref = parse_ref(uri)
        value: Any
        if ref.kind == "table":
            value = {"__table__": (ref.project_id, ref.digest)}
        elif ref.kind == "call":
            calls = self._matching_calls(
                {"project_id": ref.project_id, "filter": {"call_ids": [ref.name or ref.digest]}}
            )
            value = calls[0] if calls else None
        else:
            value = self._find_object(ref.project_id, ref.name, ref.digest)["val"]
        for edge, key in ref.extra:
            if isinstance(value, str) and value.startswith(PREFIX):
                value = self._resolve(value)
            if edge == "id" or (
                edge == "index" and isinstance(value, dict) and "__table__" in value
            ):
                project_id, digest = value["__table__"]
                digests = self._row_digests(project_id, digest)
                row_digest = key if edge == "id" else digests[int(key)]
                value = self._row_values(project_id, [row_digest]).get(row_digest)
            elif edge in ("attr", "key"):
                value = value.get(key) if isinstance(value, dict) else None
            elif edge == "index":
                value = value[int(key)] if isinstance(value, list) else None
        if isinstance(value, dict) and "__table__" in value:
            project_id, digest = value["__table__"]
            digests = self._row_digests(project_id, digest)
            values = self._row_values(project_id, digests)
            value = [values.get(d) for d in digests]
        return value

    def refs_read_batch(self, req: Any) -> RefReadBatchResponse:
        return RefReadBatchResponse(vals=[self._resolve(uri) for uri in req["refs"]])

    # ---- files -----------------------------------------------------------------------------
    def file_create(self, req: Any) -> FileCreateResponse:
        file = req["file"]
        content = file[1] if isinstance(file, tuple) else file
        if hasattr(content, "read"):
            content = content.read()
        if isinstance(content, str):
            content = content.encode("utf-8")
        digest = bytes_digest(content)
        with self.db.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO files VALUES (?,?,?)", (req["project_id"], digest, content)
            )
        return FileCreateResponse(digest=digest)

    def file_content_read(self, req: Any) -> FileContentReadRes:
        rows = self.db.read(
            "SELECT content FROM files WHERE project_id=? AND digest=?",
            (req["project_id"], req["digest"]),
        )
        if not rows:
            raise NotFoundError(f"File {req['digest']} not found")
        return FileContentReadRes(content=bytes(rows[0]["content"]))

    # ---- feedback --------------------------------------------------------------------------
    def feedback_create(self, req: Any) -> FeedbackCreateResponse:
        feedback_id = req.get("id") or str(uuid.uuid4())
        created = _now()
        body = {k: v for k, v in dict(req).items() if v is not None}
        body.update(id=feedback_id, created_at=created, wb_user_id=req.get("wb_user_id") or "")
        with self.db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO feedback VALUES (?,?,?,?,?,?,?)",
                (
                    req["project_id"],
                    feedback_id,
                    req["weave_ref"],
                    req["feedback_type"],
                    dumps(req.get("payload") or {}),
                    dumps(redact(body)),
                    created,
                ),
            )
        return FeedbackCreateResponse(
            id=feedback_id,
            created_at=dt.datetime.fromisoformat(created),
            payload=req.get("payload") or {},
            wb_user_id="",
        )

    def feedback_query(self, req: Any) -> FeedbackQueryResponse:
        rows = [
            loads(r["body"])
            for r in self.db.read(
                "SELECT body FROM feedback WHERE project_id=? ORDER BY created_at",
                (req["project_id"],),
            )
        ]
        rows = [r for r in rows if matches(req.get("query"), r)]
        sort_records(rows, req.get("sort_by"))
        total = len(rows)
        offset, limit = req.get("offset") or 0, req.get("limit")
        rows = rows[offset : offset + limit if limit is not None else None]
        if req.get("fields"):
            rows = [{f: get_path(r, f) for f in req["fields"]} for r in rows]
        return FeedbackQueryResponse(result=rows, total_count=total)

    def feedback_purge(self, req: Any) -> None:
        doomed = [
            loads(r["body"])
            for r in self.db.read(
                "SELECT body FROM feedback WHERE project_id=?", (req["project_id"],)
            )
        ]
        ids = [r["id"] for r in doomed if matches(req.get("query"), r)]
        with self.db.write() as conn:
            conn.executemany(
                "DELETE FROM feedback WHERE project_id=? AND id=?",
                [(req["project_id"], i) for i in ids],
            )
