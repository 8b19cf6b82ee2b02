"""Task arguments Prefect passes as they are.

Prefect walks every task argument (lists, dicts, dataclasses, pydantic models) looking for
futures to resolve and inputs to record. A run's rows, answers and plan hold one object per
row: walking them cost 11% of a 10,000-row run's CPU (bench/RESULTS.md, Scale), for nothing.
"""

from __future__ import annotations

from typing import TypeVar, cast

from prefect.utilities.annotations import quote

T = TypeVar("T")


def unwalked(value: T) -> T:
    """`value`, passed to a task as is (Prefect's `quote`), typed as itself."""
    return cast(T, quote(value))
