"""A run's answers, scored and kept on disk chunk by chunk, so that nothing holds every row.

Each finished chunk (one model's answers to a chunk of rows) is collected and scored at once
(evalflow.results.collect, evalflow.scorers.score_rows) and written to a Parquet file of its
own in a scratch folder. What stays in memory per row is a few numbers: the part's tally
(evalflow.results.tally: each answered row's latency, each scored row's mean per scorer, and
sums), from which the summary's figures are computed (evalflow.results.summarize_parts), and
with Python scorers their return values and the rows' positions, epochs and failures (a
Python scorer's summary, weave's or its own, is a function of every row's value, so its
headline is tallied once every part is in).

`write_results` streams the parts, in the order the whole frame had (model, row, epoch), into
one results.parquet with one schema (a row group per part). `frames(model)` reads a model's
parts back in dataset order, for the Weave evaluation.
"""

from __future__ import annotations

import math
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset  # read_parquet imports it at its first call, after the last answer
import pyarrow.parquet as pq

from evalflow.config import Suite
from evalflow.dataset import Row
from evalflow.inference import Answer
from evalflow.results import PartTally, collect, tally, tally_scores
from evalflow.scorers import (
    SCORE_PREFIX,
    make_scorer,
    python_headlines,
    score_rows,
)


@dataclass
class _Part:
    """One model's scored answers to one chunk: the file, and what is kept in memory."""

    model: str
    chunk_no: int
    path: Path
    tally: PartTally
    keys: pd.DataFrame | None = None  # with Python scorers (_keys)
    raw: dict[str, list[Any]] = field(default_factory=dict)  # Python scorer label -> values


def _keys(frame: pd.DataFrame) -> pd.DataFrame:
    """A part's rows as a Python scorer's headline tally needs them: position (one to one with
    the row's id), epoch, and whether it failed."""
    return pd.DataFrame(
        {
            "row_id": frame["index"].to_numpy(dtype="int64"),
            "epoch": frame["epoch"].to_numpy(dtype="int16"),
            "error_class": frame["error_class"].notna().map({True: True, False: None}),
        }
    )


def _typed(values: list[bool | float | None]) -> tuple[list[Any], pa.DataType]:
    """A Python scorer's headline values as its column holds them (evalflow.scorers._column):
    true/false if all are, else numbers (NaN where unscored); and their Parquet type."""
    if all(v is None for v in values):
        return list(values), pa.null()
    if all(v is None or isinstance(v, bool) for v in values):
        return list(values), pa.bool_()
    return [math.nan if v is None else float(v) for v in values], pa.float64()


@contextmanager
def open_spool(suite: Suite) -> Iterator[ResultSpool]:
    """A spool for one run, in a scratch folder of its own (TMPDIR), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="evalflow-spool-") as folder:
        yield ResultSpool(suite, Path(folder))


class ResultSpool:
    """A run's scored answers, a chunk at a time, in a scratch folder (see the module's
    docstring). `add` may be called from several threads at once."""

    def __init__(self, suite: Suite, folder: Path) -> None:
        self.suite = suite
        self.folder = folder
        self._parts: dict[tuple[str, int], _Part] = {}
        self._lock = threading.Lock()
        self._heads: dict[tuple[str, int], dict[str, list[Any]]] | None = None
        self._head_types: dict[str, pa.DataType] = {}
        self._python = [s for s in suite.scorers if s.kind == "python"]

    def add(
        self, chunk_no: int, rows: list[Row], answers: list[Answer], judgements: list[Any]
    ) -> None:
        """Score one model's answers to a chunk of rows and keep them."""
        if not answers:
            return
        model = answers[0].model
        raw: dict[str, list[Any]] = {}
        frame = score_rows(self.suite, rows, collect(rows, answers), judgements, raw)
        path = self.folder / f"{uuid.uuid4().hex}.parquet"
        frame.to_parquet(path, index=False)
        keys = _keys(frame) if self._python else None
        part = _Part(model, chunk_no, path, tally(frame), keys, raw)
        with self._lock:
            self._parts[(model, chunk_no)] = part
            self._heads = None

    def _ordered(self, model: str | None = None) -> list[_Part]:
        """The parts in the whole frame's order (model, then row: chunks are rows in order)."""
        with self._lock:
            parts = list(self._parts.values())
        parts.sort(key=lambda p: (p.model, p.chunk_no))
        return [p for p in parts if model is None or p.model == model]

    def count(self, model: str) -> int:
        """How many answers (rows x epochs) of the model the spool holds."""
        return sum(p.tally.rows for p in self._ordered(model))

    def _headlines(self) -> dict[tuple[str, int], dict[str, list[Any]]]:
        """Each part's Python scorer headlines, found over every row of the run (as scoring
        the whole frame at once would)."""
        if self._heads is not None:
            return self._heads
        parts = self._ordered()
        heads: dict[tuple[str, int], dict[str, list[Any]]] = {
            (p.model, p.chunk_no): {} for p in parts
        }
        for spec in self._python:
            every = [v for p in parts for v in p.raw[spec.label]]
            values, self._head_types[spec.label] = _typed(
                python_headlines(make_scorer(spec), every)
            )
            start = 0
            for p in parts:
                n = len(p.raw[spec.label])
                heads[(p.model, p.chunk_no)][spec.label] = values[start : start + n]
                start += n
        self._heads = heads
        return heads

    def _with_heads(self, part: _Part, frame: pd.DataFrame) -> pd.DataFrame:
        for label, values in self._headlines()[(part.model, part.chunk_no)].items():
            kind = self._head_types[label]
            frame[SCORE_PREFIX + label] = pd.Series(
                values, index=frame.index, dtype=float if kind == pa.float64() else object
            )
        return frame

    def tallies(self) -> list[tuple[str, PartTally]]:
        """Each part's tally (evalflow.results.summarize_parts), in the whole frame's order,
        its Python scorers' headlines tallied once every row's is known."""
        heads = self._headlines()  # empty for each part without Python scorers
        out = []
        for part in self._ordered():
            if heads[(part.model, part.chunk_no)]:
                assert part.keys is not None  # kept for Python scorers
                headed = tally_scores(self._with_heads(part, part.keys.copy()))
                scores = {**part.tally.scores, **headed}  # each in its column's place
                out.append((part.model, replace(part.tally, scores=scores)))
            else:
                out.append((part.model, part.tally))
        return out

    def frames(self, model: str | None = None) -> Iterator[pd.DataFrame]:
        """The scored parts (of one model, or all), as results.parquet holds them, in order."""
        for part in self._ordered(model):
            yield self._with_heads(part, pd.read_parquet(part.path))

    def raw(self, model: str, label: str) -> list[Any]:
        """A Python scorer's return values for a model's rows, in dataset order."""
        return [v for p in self._ordered(model) for v in p.raw[label]]

    def _schema(self) -> pa.Schema:
        """One schema for every part: each column's type where any part has values (a part
        whose column is all empty has Parquet's null type)."""
        parts = self._ordered()
        self._headlines()
        schemas = [pq.read_schema(p.path) for p in parts]
        fields = []
        for name in schemas[0].names:
            found: pa.DataType = pa.null()
            for schema in schemas:
                kind = schema.field(name).type
                if kind != pa.null():
                    found = kind
                    break
            label = name.removeprefix(SCORE_PREFIX)
            if name.startswith(SCORE_PREFIX) and label in self._head_types:
                found = self._head_types[label]
            fields.append(pa.field(name, found))
        return pa.schema(fields)

    def write_results(self, path: Path) -> None:
        """Write results.parquet at `path` (a temporary file evalflow.results.save_run moves
        into place): every part in order, one row group each."""
        if not self._ordered():
            score_rows(self.suite, [], collect([], [])).to_parquet(path, index=False)
            return
        schema = self._schema()
        writer: pq.ParquetWriter | None = None
        try:
            for frame in self.frames():
                table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
