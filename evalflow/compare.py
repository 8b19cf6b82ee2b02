"""Paired comparisons of saved runs: two runs of one suite, or two models of one run.

A side is `RUN_ID` or `RUN_ID:MODEL` (run ids never hold a colon). `compare A B`:

- `RUN_A RUN_B`: every model the two runs share, each against itself;
- `RUN:M1 RUN:M2`: two models of one run (or of two runs: `RUN_A:M1 RUN_B:M2`);
- `RUN_A:M RUN_B`: model M on both runs.

Rows are aligned by row id. A row on one side only is listed, never dropped silently; a row
that failed (its error class set) on either side is left out of the pairing and listed. Per
scorer: the means on the paired rows, the difference B - A with its paired 95% interval,
McNemar's exact p for true/false scores (Student's paired t otherwise), wins (B scored higher),
ties and losses, and the rows whose score changed (for true/false scores, the flips).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from evalflow.errors import ConfigError, RunNotFoundError
from evalflow.parquet import read_frame
from evalflow.runs import run_path
from evalflow.stats import compare_paired, holm_adjusted
from evalflow.storage import read_bytes

SCORE = "score:"


@dataclass
class Side:
    """One model's rows of one saved run, indexed by row id."""

    run_id: str
    model: str
    suite: str
    rows: pd.DataFrame

    @property
    def label(self) -> str:
        return f"{self.run_id}:{self.model}"

    @property
    def scorers(self) -> list[str]:
        return [c.removeprefix(SCORE) for c in self.rows.columns if c.startswith(SCORE)]


def parse_side(text: str) -> tuple[str, str | None]:
    """`RUN_ID` or `RUN_ID:MODEL` -> (run id, model or None)."""
    run_id, _, model = text.partition(":")
    return run_id, (model or None)


def _run_files(run_id: str) -> tuple[dict[str, Any], pd.DataFrame]:
    folder = run_path(run_id)
    try:
        summary = read_bytes(folder / "summary.json")
        results = read_bytes(folder / "results.parquet")
    except FileNotFoundError:
        raise RunNotFoundError(
            f"run {run_id}: no saved results in {folder} (did it finish? `evalflow run` "
            f"prints the run id of each run)"
        ) from None
    return json.loads(summary), read_frame(results)


def load_side(run_id: str, model: str) -> Side:
    """A model's rows of a saved run."""
    meta, frame = _run_files(run_id)
    models = list(dict.fromkeys(frame["model"]))
    if model not in models:
        raise ConfigError(
            f"run {run_id} has no model {model!r}; its models: {', '.join(models)} "
            f"(compare RUN_ID:MODEL RUN_ID:MODEL)"
        )
    rows = frame[frame["model"] == model].set_index("row_id", drop=False)
    return Side(run_id, model, str(meta.get("suite")), rows)


def _models(run_id: str) -> list[str]:
    return list(dict.fromkeys(_run_files(run_id)[1]["model"]))


def resolve_pairs(a: str, b: str) -> list[tuple[Side, Side]]:
    """The pairs of sides `compare A B` compares (see the module's docstring)."""
    (run_a, model_a), (run_b, model_b) = parse_side(a), parse_side(b)
    if model_a is None and model_b is None:
        if run_a == run_b:
            raise ConfigError(
                f"{a} against itself: name two of its models, as {run_a}:MODEL {run_a}:MODEL"
            )
        shared = [m for m in _models(run_a) if m in set(_models(run_b))]
        if not shared:
            raise ConfigError(
                f"runs {run_a} ({', '.join(_models(run_a))}) and {run_b} "
                f"({', '.join(_models(run_b))}) share no model: compare RUN_ID:MODEL RUN_ID:MODEL"
            )
        names = [(m, m) for m in shared]
    else:
        names = [(model_a or model_b or "", model_b or model_a or "")]
    pairs = [(load_side(run_a, ma), load_side(run_b, mb)) for ma, mb in names]
    for side_a, side_b in pairs:
        if side_a.suite != side_b.suite:
            raise ConfigError(
                f"run {run_a} evaluated suite {side_a.suite!r} and run {run_b} suite "
                f"{side_b.suite!r}: compare runs of one suite"
            )
    return pairs


def _value(value: Any) -> bool | float | None:
    """A score as saved: true/false, a number, or None (not scored)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value if isinstance(value, bool) else float(value)


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, str) else value


def _compare_scorer(
    label: str, a: pd.DataFrame, b: pd.DataFrame, bootstrap: int | None
) -> dict[str, Any]:
    """One scorer over the paired rows (both answered): rows scored on both sides only."""
    pairs = [
        (row_id, _value(x), _value(y))
        for row_id, x, y in zip(a.index, a[SCORE + label], b[SCORE + label], strict=True)
    ]
    scored = [(r, x, y) for r, x, y in pairs if x is not None and y is not None]
    result = compare_paired(
        [x for _, x, _ in scored], [y for _, _, y in scored], bootstrap=bootstrap
    )
    flipped = [
        {
            "row_id": r,
            "input": a.at[r, "input"],
            "output_a": _plain(a.at[r, "output"]),
            "output_b": _plain(b.at[r, "output"]),
            "score_a": x,
            "score_b": y,
        }
        for r, x, y in scored
        if float(x) != float(y)
    ]
    return {
        "scorer": label,
        "test": result.test,
        "n": result.n,
        "unscored": len(pairs) - len(scored),
        "mean_a": result.mean_a,
        "mean_b": result.mean_b,
        "delta": result.delta,
        "ci_low": result.low,
        "ci_high": result.high,
        "p": result.p,
        "wins": result.wins,
        "ties": result.ties,
        "losses": result.losses,
        "flipped": flipped,
    }


def _text(rows: pd.DataFrame, row_id: str) -> str:
    return str(rows.at[row_id, "input"])


def compare_sides(a: Side, b: Side, bootstrap: int | None = None) -> dict[str, Any]:
    """B against A on their shared, answered rows, per scorer they both have."""
    ids_a, ids_b = list(a.rows.index), list(b.rows.index)
    in_b, in_a = set(ids_b), set(ids_a)
    shared = [r for r in ids_a if r in in_b]
    failed_a = [r for r in shared if _plain(a.rows.at[r, "error_class"]) is not None]
    failed_b = [r for r in shared if _plain(b.rows.at[r, "error_class"]) is not None]
    failed = set(failed_a) | set(failed_b)
    paired = [r for r in shared if r not in failed]
    rows_a, rows_b = a.rows.loc[paired], b.rows.loc[paired]
    scorers = [s for s in a.scorers if s in set(b.scorers)]
    return {
        "suite": a.suite,
        "a": a.label,
        "b": b.label,
        "rows": {
            "a": len(ids_a),
            "b": len(ids_b),
            "shared": len(shared),
            "paired": len(paired),
            "only_a": [r for r in ids_a if r not in in_b],
            "only_b": [r for r in ids_b if r not in in_a],
            "failed_a": failed_a,
            "failed_b": failed_b,
            "input_changed": [r for r in paired if _text(rows_a, r) != _text(rows_b, r)],
        },
        "scorers": [_compare_scorer(s, rows_a, rows_b, bootstrap) for s in scorers],
        "scorers_only_a": [s for s in a.scorers if s not in set(b.scorers)],
        "scorers_only_b": [s for s in b.scorers if s not in set(a.scorers)],
    }


def compare(a: str, b: str, bootstrap: int | None = None) -> list[dict[str, Any]]:
    """`evalflow compare A B`: one comparison per pair of sides."""
    return [compare_sides(x, y, bootstrap) for x, y in resolve_pairs(a, b)]


# ---- the leaderboard: which models are statistically tied with the leader --------------------


def _side_or_none(run_id: Any, model: str) -> Side | None:
    if not isinstance(run_id, str):
        return None
    try:
        return load_side(run_id, model)
    except (RunNotFoundError, ConfigError):
        return None


def versus_leader(
    table: list[dict[str, Any]], column: str, alpha: float = 0.05
) -> dict[str, dict[str, Any]]:
    """Per model of a leaderboard (entries with `model`, the column's figure and the `run_id`
    behind it): `leader`, `tied` or `behind` on the column's scorer, by a paired test on the
    rows it shares with the leader's run (McNemar's exact test for true/false scores, paired t
    otherwise), Holm-corrected over the models compared; `n/a` when either run's saved results
    are not here (or hold no such scorer). With the Holm-adjusted p and the rows paired."""
    figures = {e["model"]: e.get(column) for e in table}
    ranked = {
        m: float(v) for m, v in figures.items() if isinstance(v, int | float) and not math.isnan(v)
    }
    if not ranked:
        return {m: {"status": "n/a"} for m in figures}
    leader = max(ranked, key=lambda m: ranked[m])
    runs = {e["model"]: e.get("run_id") for e in table}
    lead = _side_or_none(runs[leader], leader)
    out: dict[str, dict[str, Any]] = {m: {"status": "n/a"} for m in figures}
    out[leader] = {"status": "leader"}
    tested: list[tuple[str, float, int]] = []
    for model in figures:
        if model == leader or lead is None or column not in lead.scorers:
            continue
        other = _side_or_none(runs[model], model)
        if other is None or column not in other.scorers:
            continue
        result = compare_sides(lead, other)
        (scorer,) = [s for s in result["scorers"] if s["scorer"] == column]
        tested.append((model, scorer["p"], scorer["n"]))
    adjusted = holm_adjusted([p for _, p, _ in tested])
    for (model, _, n), p in zip(tested, adjusted, strict=True):
        status = "tied" if math.isnan(p) or p > alpha else "behind"
        out[model] = {"status": status, "p": p, "n": n}
    return out
