"""Task: answer one chunk of rows with one model (rows run concurrently inside)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from evalflow.config import Suite
from evalflow.dataset import Row
from evalflow.inference import Answer, Journal, Target, answer_chunk
from evalflow.prompting import render_messages
from tasks.limits import take_shared_slots


@task(name="infer-chunk", cache_policy=NONE, task_run_name="infer-{target.spec.name}-{chunk_no}")
def infer_chunk(
    rows: list[Row],
    target: Target,
    suite: Suite,
    chunk_no: int,
    journal: Path,
    shared_limit: str | None = None,
) -> list[Answer]:
    take_shared_slots(shared_limit, len(rows))
    messages = [render_messages(suite.prompt, row.inputs) for row in rows]
    generation = suite.generation.merged(target.spec.generation)
    return asyncio.run(
        answer_chunk(rows, target, messages, generation, suite.name, Journal(journal))
    )
