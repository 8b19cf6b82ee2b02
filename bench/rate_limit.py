"""Rate-limit adherence: evalflow under an endpoint's requests-per-minute limit, next to a plain
weave.Evaluation on the same endpoint.

    uv run python -m bench.rate_limit [--rows 2000] [--rpm 1200] [--weave-max-retries 2]

One simulated endpoint (latency 50 ms) enforcing a sliding 60 s window of --rpm requests and
answering 429 (with Retry-After) past it; one model; one run, two contenders one after the
other. Before each contender the endpoint's profile is set again, which empties its rate
window and zeroes its counters, so both start from a fresh minute. Everything is counted at
the endpoint (`/_stats`): the achieved rate is answered requests over the time from the first
answer to the last, 429s are a fraction of every request that reached it. Failed rows are rows
without an answer at the end (evalflow: `error_class` in results.parquet; weave: rows whose
predict raised). evalflow is told the limit (`limits.rpm`); the plain Weave evaluation is not
(it has no such setting) and relies on the openai client's retries, which honour Retry-After.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.contenders import plain_weave_evaluation
from bench.results import write_section

LATENCY_MS = 50
CONCURRENCY = 32


@dataclass
class Outcome:
    """What one contender did, as the endpoint counted it."""

    answered: int
    rate_limited: int
    requests: int
    answering_seconds: float
    failed_rows: int
    wall_s: float

    @property
    def per_minute(self) -> float:
        return 60.0 * (self.answered - 1) / max(self.answering_seconds, 1e-9)

    @property
    def rate_limited_share(self) -> float:
        return self.rate_limited / max(self.requests, 1)


def measure(sim: Any, failed_rows: int, wall_s: float) -> Outcome:
    stats = sim.stats()
    by_status: dict[str, int] = stats["by_status"]
    return Outcome(
        answered=int(by_status.get("200", 0)),
        rate_limited=int(by_status.get("429", 0)),
        requests=int(stats["total"]),
        answering_seconds=float(stats["answering_seconds"]),
        failed_rows=failed_rows,
        wall_s=wall_s,
    )


def run_evalflow(sim: Any, rows: list[dict[str, str]], rpm: int, chunk_size: int) -> int:
    """Run the evaluate flow with the model's limit set; return its failed rows."""
    import pandas as pd

    from flows.evaluate import evaluate
    from tests.suites import write_suite

    folder = Path(tempfile.mkdtemp(prefix="bench-evals-"))
    limits: dict[str, object] = {
        "limits": {"rpm": rpm, "max_concurrency": CONCURRENCY, "timeout_s": 30.0}
    }
    write_suite(folder, "ratelimit", rows, sim.base_url, {"oracle": limits})
    os.environ["EVALFLOW_EVALS_DIR"] = str(folder)
    result = evaluate(
        suite="ratelimit", chunk_size=chunk_size, weave_project="local/bench-ratelimit"
    )
    frame = pd.read_parquet(Path(result["folder"]) / "results.parquet")
    return int(frame["error_class"].notna().sum())


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--rpm", type=int, default=1200)
    parser.add_argument("--chunk-size", type=int, default=200)
    parser.add_argument(
        "--weave-max-retries",
        type=int,
        default=2,
        help="the plain Weave model's openai client retries (2 is the client's default)",
    )
    args = parser.parse_args()
    os.environ["EVALFLOW_HOME"] = tempfile.mkdtemp(prefix="evalflow-bench-")
    os.environ["WEAVE_PARALLELISM"] = str(CONCURRENCY)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
    from evalflow.endpoints import sim_endpoint
    from tests.suites import answer_key, questions

    rows = questions(args.rows)
    evalflow_name = (
        f"evalflow (limits: rpm {args.rpm}, {CONCURRENCY} in flight; chunks of {args.chunk_size})"
    )
    weave_name = (
        f"plain weave.Evaluation (WEAVE_PARALLELISM={CONCURRENCY}, openai client "
        f"max_retries={args.weave_max_retries})"
    )
    measured: dict[str, Outcome] = {}
    with sim_endpoint(answer_key=answer_key(rows), latency_ms=LATENCY_MS, rpm=args.rpm) as sim:
        contenders = {
            evalflow_name: lambda: run_evalflow(sim, rows, args.rpm, args.chunk_size),
            weave_name: lambda: plain_weave_evaluation(
                sim.base_url, rows, "bench-ratelimit-weave", args.weave_max_retries
            ),
        }
        for name, run in contenders.items():
            sim.configure(rpm=args.rpm)  # a fresh profile: an empty rate window, zero counters
            started = time.perf_counter()
            failed = run()
            outcome = measure(sim, failed, time.perf_counter() - started)
            measured[name] = outcome
            print(
                f"{name}: {outcome.per_minute:.0f}/min ({outcome.per_minute / args.rpm:.3f} of "
                f"the limit), {outcome.rate_limited} 429s of {outcome.requests} requests, "
                f"{outcome.failed_rows} failed rows, {outcome.wall_s:.1f} s wall"
            )
    ours = measured[evalflow_name]
    lines = [
        f"Limit: {args.rpm:,} requests/min (sliding 60 s window at the endpoint), latency "
        f"{LATENCY_MS} ms, {args.rows:,} rows, one model; counted at the endpoint.",
        "",
        "| contender | requests/min (first to last answer) | of the limit | 429s / requests "
        "| failed rows | answered | wall s (all steps) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, o in measured.items():
        lines.append(
            f"| {name} | {o.per_minute:,.0f} | {o.per_minute / args.rpm:.3f} "
            f"| {o.rate_limited} / {o.requests} ({100 * o.rate_limited_share:.2f}%) "
            f"| {o.failed_rows} | {o.answered} | {o.wall_s:.1f} |"
        )
    lines += [
        "",
        f"Goals (evalflow): >= 0.95 of the limit ({verdict(ours.per_minute >= 0.95 * args.rpm)}), "
        f"429s < 1% of requests ({verdict(ours.rate_limited_share < 0.01)}), "
        f"0 failed rows ({verdict(ours.failed_rows == 0)}).",
        "",
        "The plain Weave evaluation is not told the limit: it sends as fast as its parallelism "
        "allows until the window is full, and its rows then wait on 429s and the openai "
        "client's Retry-After retries. A sliding window lets a burst through, so its average "
        "rate can exceed the limit without breaking it.",
    ]
    command = "uv run python -m bench.rate_limit"
    if args.rows != 2000:
        command += f" --rows {args.rows}"
    write_section("Rate-limit adherence", command, "\n".join(lines))


if __name__ == "__main__":
    main()
