"""`kind: python` scorers for the tests (loaded by path, as a user's would be), and a way to
build a run's collected frame by hand."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import weave

from evalflow.dataset import Row


@weave.op
def same_first_char(output: str | None, target: str) -> dict[str, Any]:
    """True when the answer starts like the target; also a number, to test the first field."""
    text = str(output or "")
    return {"same": text[:1] == str(target)[:1], "length": len(text)}


@weave.op
def what_it_received(output: str, row_id: str, target: str, question: str, topic: str) -> Any:
    """Returns what a Python scorer was given (the row's extra CSV column `topic` included)."""
    return {
        "ok": True,
        "row_id": row_id,
        "target": target,
        "question": question,
        "topic": topic,
        "output": output,
    }


@weave.op
def answer_length(output: str) -> int:
    """A plain number per row."""
    return len(output)


@weave.op
def wants_a_rationale(output: str, rationale: str) -> bool:
    """Asks for a field no dataset of the tests has."""
    return bool(rationale)


@weave.op
def no_output_argument(target: str) -> bool:
    """Cannot receive the model's answer."""
    return bool(target)


class CloseLength(weave.Scorer):
    """A weave.Scorer whose `expected` comes from the row's `answer` through column_map; no
    score for a row without an answer."""

    @weave.op
    def score(self, *, output: str | None, expected: str) -> dict[str, Any] | None:
        if output is None:
            return None
        return {"close": abs(len(output) - len(expected)) <= 1, "gap": len(output) - len(expected)}


close_length = CloseLength(column_map={"expected": "answer"})
close_length_unmapped = CloseLength()


def collected_frame(model: str, rows: list[Row], outputs: dict[str, str | None]) -> pd.DataFrame:
    """The frame the collect step builds for one model (as evalflow.results.collect does): a
    row whose output is None failed (an infrastructure error)."""
    records = [
        {
            "model": model,
            "row_id": row.id,
            "index": row.index,
            "input": json.dumps(row.inputs),
            "target": str(row.target),
            "output": outputs[row.id],
            "latency_s": 0.01 * (row.index + 1),
            "prompt_tokens": 10,
            "completion_tokens": 2,
            "attempts": 1,
            "error_class": None if outputs[row.id] is not None else "APITimeoutError",
            "error": None,
        }
        for row in rows
    ]
    return pd.DataFrame.from_records(records)
