"""Scorers: the built-in ones, any weave op or weave.Scorer by dotted path, checked against the
rows' fields before any request, and run by evalflow on every answered row.

A Python scorer (`kind: python`) receives, by argument name, the model's answer as `output`,
every field of the dataset row (extra columns the prompt does not use included), the row's id
as `row_id` and its target field's value as `target` (these two win over same-named fields).
A weave.Scorer may rename them with `column_map`, as in weave.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import json
import math
import re
import string
import warnings
from collections.abc import Callable, Iterable
from numbers import Number
from typing import TYPE_CHECKING, Any

import weave
from pydantic import BaseModel
from weave.flow.scorer import auto_summarize, get_scorer_attributes, prepare_scorer_op_args
from weave.trace.op_protocol import Op

from evalflow.choices import extract_choice
from evalflow.config import ScorerSpec, Suite
from evalflow.dataset import Row
from evalflow.errors import ConfigError
from evalflow.scorer_checks import check_pattern, check_settings

if TYPE_CHECKING:  # pandas is imported when rows are scored, not when a run is planned
    import pandas as pd

# weave.Scorer's pydantic schema meets a lock inside weave itself; the warning is weave's, and
# says nothing about a user's scorer.
warnings.filterwarnings("ignore", message=r".*allocate_lock.*", category=UserWarning)

_PUNCT = str.maketrans("", "", string.punctuation)
_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?|[-+]?\.\d+")


def normalize(text: Any) -> str:
    """Lower case, no punctuation, single spaces."""
    return " ".join(str(text).lower().translate(_PUNCT).split())


def first_number(text: Any) -> float | None:
    match = _NUMBER.search(str(text))
    if match is None:
        return None
    try:
        return float(match.group().replace(",", ""))
    except ValueError:
        return None


def exact_match_value(target: Any, output: Any) -> bool:
    return str(output).strip().rstrip(".").strip().lower() == str(target).strip().lower()


def contains_value(target: Any, output: Any) -> bool:
    wanted = normalize(target)
    return bool(wanted) and f" {wanted} " in f" {normalize(output)} "


def numeric_value(target: Any, output: Any, tolerance: float) -> bool:
    got, want = first_number(output), first_number(target)
    if got is None or want is None:
        return False
    return math.isclose(got, want, abs_tol=tolerance, rel_tol=0.0)


def stats(values: list[bool | float]) -> dict[str, float | int]:
    """Mean, standard error and count of the scored rows."""
    n = len(values)
    if n == 0:
        return {"mean": float("nan"), "stderr": float("nan"), "count": 0}
    mean = sum(float(v) for v in values) / n
    var = sum((float(v) - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return {"mean": mean, "stderr": math.sqrt(var / n), "count": n}


def _check(
    kind: str,
    tolerance: float,
    pattern: str | None,
    target: Any,
    output: str,
    choices: tuple[str, ...] = (),
) -> bool:
    """A built-in scorer's check of one answer."""
    if kind == "choice":
        # Without the row's choices (weave's own scoring path), a letter is still read.
        picked = extract_choice(output, choices or tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
        return picked is not None and picked == str(target).strip().upper()
    if kind == "exact_match":
        return exact_match_value(target, output)
    if kind == "normalized_contains":
        return contains_value(target, output)
    if kind == "numeric_match":
        return numeric_value(target, output, tolerance)
    return re.search(pattern or "", output) is not None


class RowScorer(weave.Scorer):
    """A built-in scorer. A row with no output (an infrastructure error) gets no score and
    stays out of the mean, its standard error and its count; `excluded` counts such rows."""

    kind: str
    tolerance: float = 0.0
    pattern: str | None = None

    def checker(self) -> Callable[[Any, str, tuple[str, ...]], bool]:
        """`check` with the scorer's fields read once, for many rows: a read of a weave
        object's field costs about 16 us (weave's attribute access), the check itself 0.2 us."""
        return functools.partial(_check, self.kind, self.tolerance, self.pattern)

    def check(self, target: Any, output: str, choices: tuple[str, ...] = ()) -> bool:
        return self.checker()(target, output, choices)

    @weave.op
    def score(self, *, output: Any, target: Any) -> dict[str, bool | None]:  # type: ignore[override]
        return {"correct": None if output is None else self.check(target, str(output))}

    @weave.op
    def summarize(self, score_rows: list) -> dict | None:
        return correct_summary([r.get("correct") if r else None for r in score_rows])


def correct_summary(values: list[bool | None]) -> dict[str, Any]:
    """A built-in scorer's summary: stats of the scored rows, and how many had no score."""
    scored: list[bool | float] = [v for v in values if v is not None]
    return {"correct": {**stats(scored), "excluded": len(values) - len(scored)}}


class JudgeScorer(weave.Scorer):
    """A judge scorer as Weave knows it: the judge model and how it is asked to grade. The
    grading itself is done by evalflow before the evaluation is recorded (evalflow/judge.py):
    the per-row value weave records is the judgement, {grade, score, explanation} (or its
    error); `score` here only gives back that value, it never asks the judge again."""

    model: str
    mode: str = "pass_fail"
    scale: int | None = None
    partial: bool = False
    template: str | None = None

    @weave.op
    def score(self, *, output: Any) -> dict[str, Any] | None:  # type: ignore[override]
        return None  # judged by evalflow beforehand; see the class docstring

    @weave.op
    def summarize(self, score_rows: list) -> dict | None:
        return judge_summary(score_rows)


def judge_summary(values: Iterable[Any]) -> dict[str, Any]:
    """A judge scorer's summary: stats of the graded rows' scores (0..1), how many answers had
    no grade (`errors`), and how many rows were not judged (no answer: `excluded`)."""
    scores: list[bool | float] = []
    errors = excluded = 0
    for value in values:
        if not isinstance(value, dict):
            excluded += 1
        elif value.get("score") is None:
            errors += 1
        else:
            scores.append(float(value["score"]))
    return {"score": {**stats(scores), "errors": errors, "excluded": excluded}}


def leaderboard_path(spec: ScorerSpec) -> str | None:
    """Where a built-in or judge scorer's figure is in its evaluation summary (None for a
    Python scorer: found in the summaries, metric_path)."""
    if spec.kind == "judge":
        return "score.mean"
    return None if spec.kind == "python" else "correct.mean"


Scorer = Op[Any, Any] | weave.Scorer
OUTPUT_PREFIX = "scorer_output:"  # results.parquet: a Python scorer's return value, as JSON
SCORE_PREFIX = "score:"  # results.parquet: a scorer's headline value (number or true/false)
ERROR_PREFIX = "scorer_error:"  # results.parquet: why a judge gave the row no grade
TOKENS_PREFIX = "scorer_tokens:"  # results.parquet: the tokens a judge spent on the row


def make_scorer(spec: ScorerSpec) -> Scorer:
    """The weave scorer a suite's scorer spec names, named by its label (weave keys its scores
    and its summary by that name)."""
    if spec.kind == "python":
        return _labelled(load_python_scorer(spec), spec.label)
    if spec.kind == "judge":
        return JudgeScorer(
            name=spec.label,
            model=spec.model or "",
            mode=spec.mode or "pass_fail",
            scale=spec.scale,
            partial=spec.partial,
            template=spec.template,
        )
    if spec.kind == "regex":
        check_pattern(spec)
    return RowScorer(
        name=spec.label, kind=spec.kind, tolerance=spec.tolerance, pattern=spec.pattern
    )


def load_python_scorer(spec: ScorerSpec) -> Scorer:
    """The weave op, function or weave.Scorer (class or instance) at `spec.path`."""
    if not spec.path or "." not in spec.path:
        raise ConfigError(f"scorer {spec.label!r}: kind python needs path: module.attribute")
    module_name, _, attribute = spec.path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"scorer {spec.path!r}: cannot import it ({exc})") from None
    try:
        if isinstance(found, type) and issubclass(found, weave.Scorer):
            return found()
    except Exception as exc:  # a user's class whose construction fails
        raise ConfigError(f"scorer {spec.path!r}: cannot build it ({exc})") from None
    if isinstance(found, weave.Scorer):
        return found
    if callable(found):
        return found if hasattr(found, "resolve_fn") else weave.op(found)
    raise ConfigError(f"scorer {spec.path!r}: not a weave op, function or weave.Scorer")


def _skips_unanswered(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn`, giving no score (None) to a row without an answer, as evalflow's own scoring
    does: an infrastructure error is not the model's mistake."""

    @functools.wraps(fn)
    def scored(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("output", kwargs.get("model_output")) is None:
            return None
        return fn(*args, **kwargs)

    return scored


def _labelled(scorer: Scorer, label: str) -> Scorer:
    """The scorer under the name `label`: for an op, a new op over its function; for a
    weave.Scorer, a copy with that name."""
    if isinstance(scorer, weave.Scorer):
        return scorer if scorer.name == label else scorer.model_copy(update={"name": label})
    fn = getattr(scorer, "resolve_fn", scorer)
    return weave.op(name=label)(_skips_unanswered(fn))


def scorer_key(spec: ScorerSpec) -> str:
    """The name weave gives the scorer's scores and summary (its label, made a valid name)."""
    from weave.trace.weave_client import sanitize_object_name

    return sanitize_object_name(spec.label)


# ---- what a Python scorer receives, checked before any request -----------------------------


def _plain(value: Any) -> Any:
    """A dataset value as a JSON value (numpy scalars from Parquet become Python ones)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, str | bytes):
        try:
            return item()
        except (TypeError, ValueError):
            return value
    return value


def scorer_example(row: Row) -> dict[str, Any]:
    """What a Python scorer receives from a row (besides `output`): every field of the row,
    `row_id` and `target`. Also the row of the suite's Weave dataset."""
    return {**_plain(dict(row.record)), "row_id": row.id, "target": _plain(row.target)}


def _score_parameters(scorer: Scorer) -> list[inspect.Parameter]:
    if isinstance(scorer, weave.Scorer):
        fn = getattr(type(scorer).score, "resolve_fn", type(scorer).score)
    else:
        fn = getattr(scorer, "resolve_fn", scorer)
    return [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]


def _missing_argument(scorer: Scorer, fields: set[str]) -> tuple[str, str] | None:
    """The first argument the rows cannot give the scorer, and how to fix it (None if all
    can be given), with weave's rules of argument matching."""
    params = _score_parameters(scorer)
    names = {p.name for p in params}
    if not names & {"output", "model_output"}:
        return ("output", "it takes no `output` argument to receive the model's answer")
    column_map = scorer.column_map if isinstance(scorer, weave.Scorer) else None
    if column_map is not None:
        for arg, column in column_map.items():
            if arg not in names:
                return (arg, f"its column_map maps {arg!r}, which `score` does not take")
            if column not in fields:
                return (arg, f"its column_map maps it to {column!r}, not a field")
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in ("output", "model_output"):
            continue
        if column_map is None and p.default is not p.empty:
            continue
        if p.name in fields or (column_map is not None and p.name in column_map):
            continue
        fix = "give it a default, rename it to a field"
        if isinstance(scorer, weave.Scorer):
            fix += " or map it to a field with column_map"
        return (p.name, fix)
    return None


def check_scorers(suite: Suite, fields: set[str]) -> None:
    """Check, before any request, that every scorer of the suite can be built (importable,
    valid settings) and that each Python scorer's arguments can all be given from `fields`
    (the dataset rows' fields, `row_id` and `target`); ConfigError naming the scorer, the
    argument and the fields otherwise."""
    check_settings(suite, fields)
    for spec in suite.scorers:
        scorer = make_scorer(spec)
        if spec.kind != "python":
            continue
        try:
            get_scorer_attributes(scorer)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"scorer {spec.label!r} ({spec.path}): {exc}") from None
        missing = _missing_argument(scorer, fields)
        if missing is not None:
            arg, why = missing
            raise ConfigError(
                f"scorer {spec.label!r} ({spec.path}): argument {arg!r} cannot be given: {why}. "
                f"A Python scorer receives output and these fields: {', '.join(sorted(fields))}"
            )


# ---- scoring the collected rows ------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def _run_scorer(scorer: Scorer, example: dict[str, Any], output: Any) -> Any:
    """The scorer's return value for one row, given its arguments as weave would; its own op
    is not traced (calls it makes, to a judge model say, are)."""
    op, args = prepare_scorer_op_args(scorer, example, output)
    fn = getattr(op, "resolve_fn", op)
    result = fn(scorer, **args) if isinstance(scorer, weave.Scorer) else fn(**args)
    if inspect.isawaitable(result):
        result = asyncio.run(_awaited(result))
    return _jsonable(result)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _first_field(value: Any) -> bool | float | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, Number):
        return None if isinstance(value, float) and math.isnan(value) else float(value)  # type: ignore[arg-type]
    if isinstance(value, dict):
        for item in value.values():
            if isinstance(item, bool | Number):
                return _first_field(item)
    return None


def _headline_field(summary: Any) -> list[str] | None:
    """The path, inside a row's score, of the value the leaderboard's figure is made of."""
    path = metric_path(summary)
    return None if path is None else path.split(".")[:-1]


def headline(value: Any, field: list[str] | None) -> bool | float | None:
    """A Python scorer's number (or true/false) for one row: its return value if it is one,
    else the field the summary's figure comes from, else its first number or true/false."""
    if field:
        for part in field:
            value = value.get(part) if isinstance(value, dict) else None
        return _first_field(value) if isinstance(value, bool | Number) else None
    return _first_field(value)


def _column(values: list[bool | float | None], index: pd.Index) -> pd.Series:
    """One score column: true/false (None where unscored) stays so; any number among them
    makes a column of numbers (NaN where unscored)."""
    import pandas as pd

    if all(v is None or isinstance(v, bool) for v in values):
        return pd.Series(values, index=index, dtype=object)
    return pd.Series([math.nan if v is None else float(v) for v in values], index=index)


def summarize_scores(scorer: Scorer, values: list[Any]) -> Any:
    """A Python scorer's summary of its per-row values, as weave.Evaluation makes it: the
    scorer's own summarize for a weave.Scorer, weave's auto_summarize for an op."""
    if isinstance(scorer, weave.Scorer):
        summarize = get_scorer_attributes(scorer).summarize_fn
        fn = getattr(summarize, "resolve_fn", None)
        return fn(scorer, values) if fn is not None else summarize(values)
    return auto_summarize(values)


def score_rows(
    suite: Suite,
    rows: list[Row],
    frame: pd.DataFrame,
    judgements: list[Any] | None = None,
    python_raw: dict[str, list[Any]] | None = None,
) -> pd.DataFrame:
    """The collected frame with a `score:<label>` column per scorer: per answered row a number
    or true/false (a failed row gets none), the built-in check, a Python scorer's headline or
    a judge's score (0..1; none where it gave no grade); for a Python scorer and a judge a
    `scorer_output:<label>` column with its return value (a judge's grade, score and
    explanation) as JSON, and for a judge `scorer_error:<label>` (why no grade) and
    `scorer_tokens:<label>`. `judgements` are the judges' (evalflow.judge.Judgement).

    With `python_raw` (a part of the rows, scored chunk by chunk), a Python scorer's headline
    needs every row's value (python_headlines): its `score:<label>` column is left empty
    (None) and its return values are put in `python_raw[label]` instead."""
    import pandas as pd

    frame = frame.copy()
    examples: list[dict[str, Any]] = []
    by_id = {row.id: row for row in rows}
    if any(spec.kind == "python" for spec in suite.scorers):  # built-ins need no example
        examples = [scorer_example(by_id[str(r)]) for r in frame["row_id"]]
    outputs = [None if pd.isna(o) else str(o) for o in frame["output"]]
    for spec in suite.scorers:
        scorer = make_scorer(spec)
        if isinstance(scorer, RowScorer):
            check = scorer.checker()
            checks = [
                None if out is None else check(target, out, by_id[str(r)].choices)
                for target, out, r in zip(frame["target"], outputs, frame["row_id"], strict=True)
            ]
            frame[SCORE_PREFIX + spec.label] = pd.Series(checks, index=frame.index, dtype=object)
            continue
        if isinstance(scorer, JudgeScorer):
            _judge_columns(frame, spec, judgements or [])
            continue
        raw = [
            None if out is None else _python_score(spec, scorer, example, out)
            for example, out in zip(examples, outputs, strict=True)
        ]
        if python_raw is not None:
            python_raw[spec.label] = raw
            frame[SCORE_PREFIX + spec.label] = pd.Series(None, index=frame.index, dtype=object)
        else:
            heads = python_headlines(scorer, raw)
            frame[SCORE_PREFIX + spec.label] = _column(heads, frame.index)
        frame[OUTPUT_PREFIX + spec.label] = pd.Series(
            [None if v is None else json.dumps(v, default=str) for v in raw],
            index=frame.index,
            dtype=object,
        )
    return frame


def python_headlines(scorer: Scorer, raw: list[Any]) -> list[bool | float | None]:
    """A Python scorer's per-row numbers (or true/false) from its return values over every
    row: the field its summary's figure comes from, in each value."""
    field = _headline_field(summarize_scores(scorer, raw))
    return [headline(value, field) for value in raw]


def _judge_columns(frame: pd.DataFrame, spec: ScorerSpec, judgements: list[Any]) -> None:
    """A judge scorer's columns, from its judgements of each (model, row, epoch)."""
    import pandas as pd

    mine = {(j.model, j.row_id, j.epoch): j for j in judgements if j.scorer == spec.label}
    epochs = frame["epoch"] if "epoch" in frame.columns else pd.Series(0, index=frame.index)
    found = [
        mine.get((str(m), str(r), int(e)))
        for m, r, e in zip(frame["model"], frame["row_id"], epochs, strict=True)
    ]
    frame[SCORE_PREFIX + spec.label] = pd.Series(
        [math.nan if j is None or j.score is None else float(j.score) for j in found],
        index=frame.index,
        dtype=float,
    )
    frame[OUTPUT_PREFIX + spec.label] = pd.Series(
        [None if j is None else json.dumps(j.output()) for j in found],
        index=frame.index,
        dtype=object,
    )
    frame[ERROR_PREFIX + spec.label] = pd.Series(
        [None if j is None else j.error for j in found], index=frame.index, dtype=object
    )
    frame[TOKENS_PREFIX + spec.label] = pd.Series(
        [0 if j is None else int(j.tokens) for j in found], index=frame.index, dtype="int64"
    )


def _python_score(spec: ScorerSpec, scorer: Scorer, example: dict[str, Any], output: str) -> Any:
    try:
        return _run_scorer(scorer, example, output)
    except Exception as exc:
        raise ConfigError(
            f"scorer {spec.label!r} ({spec.path}) failed on row {example['row_id']!r}: "
            f"{type(exc).__name__}: {exc}. Fix the scorer and run again (answers are kept)"
        ) from None


def _headline_leaf(summary: dict[str, Any]) -> str | None:
    for leaf in ("mean", "true_fraction"):
        if isinstance(summary.get(leaf), int | float):
            return leaf
    return None


def metric_path(summary: Any) -> str | None:
    """The path of a scorer's headline figure in its evaluation summary: the mean of a
    numeric score, else the fraction of a boolean one (weave's own summary of a Python
    scorer), for the score itself or for its first field that has one."""
    if not isinstance(summary, dict):
        return None
    if leaf := _headline_leaf(summary):
        return leaf
    for key, value in summary.items():
        if isinstance(value, dict) and (leaf := _headline_leaf(value)):
            return f"{key}.{leaf}"
    return None
