"""The checks of a suite's scorers that need no scorer built: a regex's pattern, a choice
scorer's choices field, a judge's template against the rows' fields. Weave is not imported
here: a suite whose scorers are all built-in or judges is checked, and its first rows asked,
before weave's import (evalflow/early_traces.py). A Python scorer is imported and checked
by evalflow/scorers.py (`check_scorers`), which runs these checks too."""

from __future__ import annotations

import re
from collections.abc import Iterable

from evalflow.config import ScorerSpec, Suite
from evalflow.dataset import Row
from evalflow.errors import ConfigError
from evalflow.grading import SPECIAL_FIELDS, template_fields


def row_fields(rows: Iterable[Row]) -> set[str]:
    """The names every row gives a scorer (fields all rows have, row_id, target)."""
    common: set[str] | None = None
    for row in rows:
        common = set(row.record) if common is None else common & set(row.record)
    return (common or set()) | {"row_id", "target"}


def needs_import(suite: Suite) -> bool:
    """Whether a scorer of the suite is user code, checked only once imported (with weave)."""
    return any(spec.kind == "python" for spec in suite.scorers)


def check_pattern(spec: ScorerSpec) -> None:
    """A regex scorer's pattern: given, and a valid regular expression."""
    if not spec.pattern:
        raise ConfigError(f"scorer {spec.label!r}: kind regex needs a pattern")
    try:
        re.compile(spec.pattern)
    except re.error as exc:
        raise ConfigError(f"scorer {spec.label!r}: bad regex {spec.pattern!r} ({exc})") from None


def check_settings(suite: Suite, fields: set[str]) -> None:
    """Check every built-in and judge scorer of the suite against its settings and the rows'
    `fields` (their common fields, `row_id` and `target`); ConfigError naming the scorer."""
    for spec in suite.scorers:
        if spec.kind == "regex":
            check_pattern(spec)
        if spec.kind == "choice" and suite.dataset.choices_field is None:
            raise ConfigError(
                f"scorer {spec.label!r}: kind choice needs the dataset's choices_field (the "
                f"field holding each row's list of choices)"
            )
        if spec.kind == "judge":
            unknown = template_fields(spec) - fields - set(SPECIAL_FIELDS)
            if unknown:
                raise ConfigError(
                    f"scorer {spec.label!r}: its template uses {', '.join(sorted(unknown))}, "
                    f"which the rows do not have; a judge's template may use "
                    f"{', '.join(SPECIAL_FIELDS)} and the rows' fields: "
                    f"{', '.join(sorted(fields))}"
                )
