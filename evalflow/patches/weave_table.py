"""A Weave dataset published chunk by chunk, without a list of every row (weave's own
`weave.Dataset(rows=[...])` holds every row, and its upload every row's JSON, at once).

Through the trace server's own API: `table_create` of each chunk of rows, then one
`table_create_from_digests` of their row digests, as weave's client does for a large table
(`WeaveClient._create_table_with_parallel_chunks`); before that, the table's digest is
computed from the rows (weave's `compute_row_digest`, `compute_table_digest`) and, when the
store has that table already (the suite's dataset of an earlier run, or of the run's first
model), nothing is uploaded. The dataset is then a `weave.Dataset` over a `WeaveTable` that
refers to the stored table (weave's `_save_table` keeps a table's ref as it is): published, it
is the same object, with the same digest, as weave's own upload of the same rows.

The internals this relies on are checked by `drift()`; outside the verified weave versions,
or when they changed, `publish_table` returns None and evalflow uploads the dataset weave's
own way (every row at once).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

from evalflow.patches._gate import stand_aside, version_problem

DISTRIBUTION = "weave"
VERIFIED = ">=0.54,<0.55"
TABLE_PATCH = "weave: a dataset published chunk by chunk"


class RowDigests(Sequence[str]):
    """Each row's digest in a stored table, in order, as weave writes them: kept as the bytes
    of their ASCII text, one after another (43 bytes a row for weave's sha256 digests), or as
    a list when they are not all ASCII of one length."""

    def __init__(self) -> None:
        self._packed = bytearray()
        self._width = 0
        self._listed: list[str] | None = None

    def append(self, digest: str) -> None:
        if self._listed is not None:
            self._listed.append(digest)
            return
        text = digest.encode("ascii", "replace")
        if not self._width:
            self._width = len(text)
        if len(text) != self._width or not digest.isascii():
            self._listed = [*self, digest]
            self._packed = bytearray()
            return
        self._packed += text

    def __len__(self) -> int:
        if self._listed is not None:
            return len(self._listed)
        return len(self._packed) // self._width if self._width else 0

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if self._listed is not None:
            return self._listed[index]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * self._width
        return self._packed[start : start + self._width].decode("ascii")


@dataclass
class StoredTable:
    """A table in the Weave store: its digest and its rows' digests."""

    digest: str
    row_digests: RowDigests
    columns: list[str]  # the first row's keys (weave.Dataset.columns_names)


def drift() -> list[str]:
    """What differs upstream from the internals publish_table relies on (empty: nothing)."""
    from weave.dataset.dataset import Dataset
    from weave.trace import weave_client
    from weave.trace.refs import TableRef
    from weave.trace.serialization import digest, serialize
    from weave.trace.vals import WeaveTable

    problems: list[str] = []
    if list(inspect.signature(serialize.to_json).parameters)[:3] != ["obj", "project_id", "client"]:
        problems.append("weave's to_json no longer takes (obj, project_id, client)")
    if digest.compute_table_digest(["ab", "cd"]) != hashlib.sha256(b"abcd").hexdigest():
        problems.append("weave's table digest is no longer sha256 over its row digests")
    if digest.compute_row_digest({"b": 1, "a": "x"}) != digest.compute_row_digest(
        {"a": "x", "b": 1}
    ):
        problems.append("weave's row digest depends on the order of a row's keys")
    fields = getattr(TableRef, "__dataclass_fields__", {})
    if list(fields)[:4] != ["entity", "project", "_digest", "_row_digests"]:
        problems.append("weave's TableRef fields are no longer entity, project, _digest, ...")
    if list(inspect.signature(WeaveTable.__init__).parameters)[1:3] != ["server", "table_ref"]:
        problems.append("WeaveTable() no longer takes (server, table_ref)")
    if "weave_isinstance(rows, WeaveTable)" not in inspect.getsource(Dataset.convert_to_table):
        problems.append("weave.Dataset no longer keeps a WeaveTable as its rows")
    for name in KNOWN_PROPERTIES:
        if not isinstance(inspect.getattr_static(Dataset, name, None), functools.cached_property):
            problems.append(f"weave.Dataset.{name} is no longer a cached_property")
    columns_names = inspect.getattr_static(Dataset, "columns_names", None)
    if "self.rows[0]" not in inspect.getsource(getattr(columns_names, "func", drift)):
        problems.append("weave.Dataset.columns_names no longer reads the first row")
    save_table = inspect.getsource(weave_client.WeaveClient._save_table)
    if "table.table_ref is not None" not in save_table:
        problems.append("WeaveClient._save_table no longer keeps a stored table's ref")
    return problems


@functools.cache
def _problems() -> tuple[str, ...]:
    problem = version_problem(DISTRIBUTION, VERIFIED)
    return (problem,) if problem else tuple(drift())


def publish_table(chunks: Callable[[], Iterable[list[dict[str, Any]]]]) -> StoredTable | None:
    """Store the rows `chunks()` gives (read once or twice, a chunk at a time) as one table of
    the current weave client's project; None when this patch stands aside (see the module)."""
    if problems := _problems():
        stand_aside(TABLE_PATCH, list(problems))
        return None
    from weave.trace.context.weave_client_context import require_weave_client

    client = require_weave_client()
    digest, digests, columns = _local_digests(client, chunks())
    if _stored_count(client, digest) == len(digests):
        return StoredTable(digest, digests, columns)
    del digests
    return _upload(client, chunks(), columns)


def _json_chunks(client: Any, chunks: Iterable[list[dict[str, Any]]]) -> Iterator[list[Any]]:
    """Each chunk of rows as weave sends a table's rows (its to_json)."""
    from weave.trace.serialization.serialize import to_json

    for chunk in chunks:
        yield to_json(chunk, client.project_id, client)


def _local_digests(
    client: Any, chunks: Iterable[list[dict[str, Any]]]
) -> tuple[str, RowDigests, list[str]]:
    """The table's digest, its rows' digests (as the store computes them) and the first
    row's keys."""
    from weave.trace.serialization.digest import compute_row_digest

    table = hashlib.sha256()
    digests = RowDigests()
    columns: list[str] = []
    for rows in _json_chunks(client, chunks):
        if rows and not columns and isinstance(rows[0], dict):
            columns = list(rows[0])
        for row in rows:
            row_digest = compute_row_digest(row)
            table.update(row_digest.encode())
            digests.append(row_digest)
    return table.hexdigest(), digests, columns


def _stored_count(client: Any, digest: str) -> int | None:
    """How many rows the store's table of this digest has (None: the store has none)."""
    try:
        found = client.server.table_query_stats({"project_id": client.project_id, "digest": digest})
    except Exception:  # not found (each store says so its own way): uploaded then
        return None
    return int(found.count)


def _upload(client: Any, chunks: Iterable[list[dict[str, Any]]], columns: list[str]) -> StoredTable:
    """table_create of each chunk, then table_create_from_digests of every row's digest."""
    server, project = client.server, client.project_id
    digests = RowDigests()
    for rows in _json_chunks(client, chunks):
        made = server.table_create(
            {"table": {"project_id": project, "rows": rows, "expected_digest": None}}
        )
        for row_digest in made.row_digests:
            digests.append(row_digest)
    # evalflow's local store reads the packed digests as they are; another server gets a list.
    packed = getattr(server, "TAKES_DIGEST_SEQUENCES", False)
    sent: Sequence[str] = digests if packed else list(digests)
    whole = server.table_create_from_digests(
        {"project_id": project, "row_digests": sent, "expected_digest": None}
    )
    return StoredTable(whole.digest, digests, columns)


# weave.Dataset's cached properties this module fills in: `columns_names` reads `rows[0]`,
# which on a stored table (a WeaveTable) reads every row into a list first; weave's publish
# reads every property of the object (500,000 rows: the whole table in memory at the end).
KNOWN_PROPERTIES = ("columns_names", "num_rows")


def known_shape(dataset: Any, columns: list[str], num_rows: int) -> Any:
    """`dataset` (a weave.Dataset over a stored table) with its column names and row count
    filled in, as weave's cached properties store them once computed: nothing is read."""
    dataset.__dict__["columns_names"] = list(columns)
    dataset.__dict__["num_rows"] = num_rows
    return dataset


def stored_dataset(name: str, table: StoredTable) -> Any:
    """A weave.Dataset named `name` whose rows are the stored `table` (nothing is read)."""
    import weave
    from weave.trace.context.weave_client_context import require_weave_client
    from weave.trace.refs import TableRef
    from weave.trace.vals import WeaveTable

    client = require_weave_client()
    ref = TableRef(entity=client.entity, project=client.project, _digest=table.digest)
    dataset = weave.Dataset(name=name, rows=WeaveTable(server=client.server, table_ref=ref))
    return known_shape(dataset, table.columns, len(table.row_digests))
