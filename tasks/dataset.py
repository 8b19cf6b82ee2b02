"""Task: load and validate a suite's rows."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from evalflow.config import Suite
from evalflow.dataset import Row, load_rows
from evalflow.prompting import check_prompt


@task(name="load-rows", cache_policy=NONE)
def load_suite_rows(suite: Suite, dataset: str | None, limit: int | None) -> list[Row]:
    check_prompt(suite.prompt, suite.dataset.input_fields)
    return load_rows(dataset or suite.dataset_path(), suite.dataset, limit)
