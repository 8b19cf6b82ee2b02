"""Load a suite's rows and validate them all before any request is sent."""

from __future__ import annotations

import array
import csv
import io
import json
import numbers
import os
import pickle
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from evalflow.choices import LETTERS, letter, render_choices, shuffled_order, target_index
from evalflow.config import DatasetSpec
from evalflow.errors import DatasetError
from evalflow.parquet import read_frame

MAX_FIELD_BYTES = 1_000_000  # a field larger than this is a mistake, not a question
MAX_LISTED = 10

HF_PREFIX = "hf://datasets/"
HF_MIRROR_ENV = "EVALFLOW_HF_MIRROR"  # a local folder standing in for hf://datasets/
# huggingface_hub reads these when it is imported; ours are defaults a user's setting overrides.
HF_TIMEOUTS = {"HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "10"}


@dataclass(frozen=True, slots=True)
class Row:
    """One dataset row: a stable id, its position, the prompt's fields and the target. (Slots,
    and field names shared between rows: a suite of 500,000 rows holds one each.)"""

    id: str
    index: int
    inputs: dict[str, Any]
    target: Any
    record: dict[str, Any] = field(repr=False, compare=False)
    choices: tuple[str, ...] = ()  # multiple choice: the choices as shown, in order


def _lines(data: bytes) -> Iterator[bytes]:
    """The file's lines, one at a time (no list of every line: a large file's rows would be
    held twice)."""
    start = 0
    while start <= len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end
        yield data[start:end]
        start = end + 1


def _file_lines(path: Path) -> Iterator[bytes]:
    """A file's lines as `_lines` gives them, read from disk a line at a time (the file's
    bytes are never held whole)."""
    with path.open("rb") as handle:
        for line in handle:
            yield line[:-1] if line.endswith(b"\n") else line


def _jsonl_records(lines: Iterable[bytes]) -> Iterator[tuple[str, dict[str, Any] | str]]:
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        where = f"line {lineno}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield where, f"not UTF-8 (byte {exc.start})"
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield where, f"not valid JSON ({exc.msg})"
            continue
        yield where, value if isinstance(value, dict) else "not a JSON object"


def _csv_records(data: bytes) -> Iterator[tuple[str, dict[str, Any] | str]]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        yield f"line {line}", f"not UTF-8 (byte {exc.start})"
        return
    csv.field_size_limit(64 * MAX_FIELD_BYTES)
    reader = csv.DictReader(io.StringIO(text))
    for record in reader:
        where = f"line {reader.line_num}"
        if None in record:
            yield where, "more cells than the header has columns"
            continue
        yield where, {k: v for k, v in record.items() if v is not None}


def _parquet_records(name: str, data: bytes) -> Iterator[tuple[str, dict[str, Any] | str]]:
    try:
        frame = read_frame(data)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"dataset {name}: not a readable Parquet file ({exc})") from None
    for i, record in enumerate(frame.to_dict("records"), start=1):
        yield f"row {i}", {str(k): v for k, v in record.items()}


def _weave_records(uri: str) -> Iterator[tuple[str, dict[str, Any] | str]]:
    import weave

    try:
        dataset = weave.ref(uri).get()
    except Exception as exc:  # weave raises many kinds; all mean "cannot read it"
        raise DatasetError(f"dataset {uri}: cannot read it from Weave ({exc})") from None
    for i, record in enumerate(dataset.rows, start=1):
        yield f"row {i}", dict(record)


def _one_line(exc: BaseException) -> str:
    """An exception as one short line: its class and the first line of its message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _hub_bytes(uri: str) -> bytes:
    """The file at `hf://datasets/...`: from the local copy EVALFLOW_HF_MIRROR names if set,
    else from the Hugging Face Hub (huggingface_hub's fsspec filesystem; HF_TOKEN if set)."""
    mirror = os.environ.get(HF_MIRROR_ENV)
    if mirror:
        local = Path(mirror) / uri.removeprefix(HF_PREFIX)
        if not local.is_file():
            raise DatasetError(
                f"dataset {uri}: not in the local copy {HF_MIRROR_ENV}={mirror} (no file "
                f"{local}); add it there, or unset {HF_MIRROR_ENV} to read from the Hub"
            )
        return local.read_bytes()
    for name, seconds in HF_TIMEOUTS.items():
        os.environ.setdefault(name, seconds)
    import fsspec

    try:
        with fsspec.open(uri, "rb") as handle:
            data: bytes = handle.read()
    except Exception as exc:  # network, HTTP (404, 401) and filesystem errors alike
        raise DatasetError(
            f"dataset {uri}: cannot read it from the Hugging Face Hub ({_one_line(exc)}); "
            f"set HF_TOKEN for a gated dataset, or {HF_MIRROR_ENV} to a local copy"
        ) from None
    return data


def _parsed(name: str, suffix: str, data: bytes) -> Iterator[tuple[str, dict[str, Any] | str]]:
    if suffix == ".parquet":
        return _parquet_records(name, data)
    if suffix in (".jsonl", ".json"):
        return _jsonl_records(_lines(data))
    return _csv_records(data)


def _format(name: str, suffix: str) -> str:
    """The file's suffix if evalflow reads that format; a DatasetError otherwise."""
    if suffix not in (".jsonl", ".json", ".csv", ".parquet"):
        raise DatasetError(
            f"dataset {name}: unknown format {suffix!r}; use .jsonl, .csv or .parquet"
        )
    return suffix


def _records(source: str) -> Iterator[tuple[str, dict[str, Any] | str]]:
    if source.startswith("weave:///"):
        return _weave_records(source)
    if source.startswith(HF_PREFIX):
        suffix = _format(source, PurePosixPath(source).suffix.lower())
        return _parsed(source, suffix, _hub_bytes(source))
    path = Path(source)
    if not path.is_file():
        raise DatasetError(f"dataset {path}: no such file")
    suffix = _format(str(path), path.suffix.lower())
    if suffix in (".jsonl", ".json"):
        return _jsonl_records(_file_lines(path))
    return _parsed(str(path), suffix, path.read_bytes())


def _field_problem(name: str, value: Any, target: bool) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return f"field {name!r} is empty"
    if target and (isinstance(value, bool) or not isinstance(value, str | numbers.Number)):
        return f"field {name!r} should be text or a number, not {type(value).__name__}"
    size = len(value.encode("utf-8", "replace")) if isinstance(value, str) else 0
    if size > MAX_FIELD_BYTES:
        return f"field {name!r} is {size / 1e6:.1f} MB (at most {MAX_FIELD_BYTES / 1e6:.0f} MB)"
    return None


def _choice_list(value: Any) -> list[str] | str:
    """A row's choices: a list (JSONL, Parquet) or a JSON list in a string (CSV)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return 'is not a list (in CSV: a JSON list such as ["red", "blue"])'
    if hasattr(value, "tolist"):  # a numpy array, from Parquet
        value = value.tolist()
    if not isinstance(value, list | tuple) or not 2 <= len(value) <= len(LETTERS):
        return f"should be a list of 2 to {len(LETTERS)} choices"
    texts = [str(v).strip() for v in value]
    if not all(texts):
        return "has an empty choice"
    return texts


def _choice_row(
    spec: DatasetSpec, row_id: str, index: int, inputs: dict[str, Any], record: dict[str, Any]
) -> Row | str:
    """A multiple-choice row: its choices (shuffled with `spec.shuffle`), the target as the
    letter of its choice in that order, `choices` for the prompt; or what is wrong."""
    name = spec.choices_field or ""
    choices = _choice_list(record.get(name))
    if isinstance(choices, str):
        return f"field {name!r} {choices}"
    right = target_index(record[spec.target_field], choices)
    if right is None:
        return (
            f"target {str(record[spec.target_field])[:60]!r} is neither a letter "
            f"A-{letter(len(choices) - 1)} nor the text of one choice"
        )
    order = list(range(len(choices)))
    if spec.shuffle is not None:
        order = shuffled_order(spec.shuffle, row_id, len(choices))
    shown = tuple(choices[i] for i in order)
    target = letter(order.index(right))
    inputs = {**inputs, "choices": render_choices(shown)}
    # What a Python scorer and the Weave dataset see: the choices as shown, the target letter.
    shown_record = {**record, name: list(shown), spec.target_field: target}
    return Row(row_id, index, inputs, target, shown_record, shown)


def load_rows(source: str, spec: DatasetSpec, limit: int | None = None) -> list[Row]:
    """Every row of the dataset, validated; one DatasetError naming every bad row otherwise."""
    return list(_valid_rows(source, spec, limit))


def store_rows(source: str, spec: DatasetSpec, limit: int | None = None) -> RowStore:
    """Every row of the dataset, validated (as load_rows), kept compactly (RowStore)."""
    return RowStore.of(_valid_rows(source, spec, limit))


def _valid_rows(source: str, spec: DatasetSpec, limit: int | None) -> Iterator[Row]:
    """The dataset's rows, validated, one at a time; once every row is read, one DatasetError
    naming every bad row (so rows already given are not to be used until the end)."""
    count = 0
    problems: list[tuple[int, str]] = []
    ids = _IdCheck()
    for index, (where, record) in enumerate(_records(source)):
        if limit is not None and count >= limit and not problems:
            break
        row = _valid_row(spec, index, count, record)
        if isinstance(row, str):
            problems.append((index, f"{where}: {row}"))
            continue
        ids.add(row.id, index)
        count += 1
        yield row
    problems += ids.repeats(source, spec)
    if problems:
        problems.sort()
        listed = "\n  ".join(text for _, text in problems[:MAX_LISTED])
        more = (
            f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        )
        raise DatasetError(
            f"dataset {source}: {len(problems)} bad row{'s' if len(problems) > 1 else ''}, "
            f"nothing was sent:\n  {listed}{more}"
        )
    if not count:
        raise DatasetError(f"dataset {source}: no rows (the file is empty)")


def _row_id(spec: DatasetSpec, index: int, record: dict[str, Any]) -> str:
    return str(record[spec.id_field]) if spec.id_field else str(index)


_id_hash = hash  # 64 bits; two ids sharing one are told apart by _IdCheck.repeats


# Up to this many rows, repeats are first looked for in a set of the id hashes (about 70 bytes
# a row, half a megabyte at most): a dataset without any is then checked without importing
# numpy (70 ms, before the run's first request). Past it, numpy's sort keeps the check at 16
# bytes a row (tests/unit/test_row_store.py measures a plan's bytes per row at 10,000 rows on).
SET_CHECK_ROWS = 8_000


class _IdCheck:
    """The rows' ids, checked for repeats with 16 bytes a row: each valid row's id hash and
    record index as it is read (a dict of every id and where it was took about 200 bytes a
    row). The records whose hashes repeat are read again at the end and their ids compared,
    so a repeat is reported exactly (a hash shared by two different ids is not one)."""

    def __init__(self) -> None:
        self._hashes = array.array("q")
        self._indexes = array.array("q")

    def add(self, row_id: str, index: int) -> None:
        self._hashes.append(_id_hash(row_id))
        self._indexes.append(index)

    def repeats(self, source: str, spec: DatasetSpec) -> list[tuple[int, str]]:
        """(record index, "where: id 'x' repeats where") for each row repeating an earlier
        row's id, reading again only the records whose id hash repeats."""
        if len(self._hashes) <= SET_CHECK_ROWS and len(set(self._hashes)) == len(self._hashes):
            return []  # no hash repeats: numpy's import (70 ms) is not waited for, here
        import numpy as np

        hashes = np.frombuffer(self._hashes, dtype=np.int64)
        ordered = np.sort(hashes)
        shared = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
        if not len(shared):
            return []
        wanted = set(np.frombuffer(self._indexes, dtype=np.int64)[np.isin(hashes, shared)].tolist())
        first: dict[str, str] = {}
        out = []
        for index, (where, record) in enumerate(_records(source)):
            if index not in wanted or isinstance(record, str):
                continue
            row_id = _row_id(spec, index, record)
            if row_id in first:
                out.append((index, f"{where}: id {row_id!r} repeats {first[row_id]}"))
            else:
                first[row_id] = where
        return out


def _valid_row(
    spec: DatasetSpec,
    index: int,
    position: int,
    record: dict[str, Any] | str,
) -> Row | str:
    """The record as the row at `position`, or what is wrong with it (its id is checked for
    repeats apart: _IdCheck)."""
    if isinstance(record, str):
        return record
    wanted = (*spec.input_fields, spec.target_field, *filter(None, [spec.choices_field]))
    missing = [f for f in wanted if f not in record]
    if spec.id_field and spec.id_field not in record:
        missing.append(spec.id_field)
    if missing:
        return f"missing field{'s' if len(missing) > 1 else ''} " + ", ".join(
            repr(m) for m in missing
        )
    found = [
        problem
        for name in spec.input_fields
        if (problem := _field_problem(name, record[name], target=False))
    ]
    if problem := _field_problem(spec.target_field, record[spec.target_field], target=True):
        found.append(problem)
    if found:
        return "; ".join(found)
    row_id = _row_id(spec, index, record)
    record = {sys.intern(str(k)): v for k, v in record.items()}
    inputs = {name: record[name] for name in spec.input_fields}
    if spec.choices_field is None:
        return Row(row_id, position, inputs, record[spec.target_field], record)
    return _choice_row(spec, row_id, position, inputs, record)


BLOCK_ROWS = 1000  # rows per block of a RowStore


class RowStore:
    """A dataset's rows, kept compactly: blocks of BLOCK_ROWS rows, each a zlib-compressed
    pickle (a block that cannot be pickled, as rows read from Weave may be, stays a list of
    rows). Rows are made again from a block when read, one block at a time, so that reading
    the rows holds one block's, not every row (a `Row` took 667 bytes with three short
    fields; a block's bytes take a few tens a row). Read it by `chunks(size)` or by
    iterating; the rows are equal to those it was made of, in the same order."""

    def __init__(self, blocks: list[bytes | list[Row]], count: int) -> None:
        self._blocks = blocks
        self._count = count

    @classmethod
    def of(cls, rows: Iterable[Row], block_rows: int = BLOCK_ROWS) -> RowStore:
        """Keep `rows` (read once, one block at a time)."""
        blocks: list[bytes | list[Row]] = []
        count = 0
        block: list[Row] = []
        for row in rows:
            block.append(row)
            if len(block) >= block_rows:
                blocks.append(_packed(block))
                count += len(block)
                block = []
        if block:
            blocks.append(_packed(block))
            count += len(block)
        return cls(blocks, count)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Row]:
        for block in self._blocks:
            yield from _unpacked(block)

    def chunks(self, size: int) -> Iterator[list[Row]]:
        """The rows in order, `size` at a time (the last chunk may be shorter)."""
        chunk: list[Row] = []
        for row in self:
            chunk.append(row)
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def _packed(block: list[Row]) -> bytes | list[Row]:
    """The rows' fields as tuples, pickled and compressed (a dataclass's own pickling calls
    `fields()` and sets each slot apart for every row: half the time of reading a block)."""
    fields = [(r.id, r.index, r.inputs, r.target, r.record, r.choices) for r in block]
    try:
        return zlib.compress(pickle.dumps(fields, protocol=pickle.HIGHEST_PROTOCOL), 1)
    except (pickle.PicklingError, TypeError, AttributeError):
        return block


def _unpacked(block: bytes | list[Row]) -> list[Row]:
    if isinstance(block, bytes):
        return [Row(*fields) for fields in pickle.loads(zlib.decompress(block))]
    return block
