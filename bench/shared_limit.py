"""Shared limit: two processes evaluating at once under one limit of 20 requests/s, shared
through a Prefect global concurrency limit.

    uv run python -m bench.shared_limit [--rows 600] [--rpm 1200]

A real Prefect server (temporary, SQLite), one simulated endpoint (latency 10 ms), two
`evalflow run` processes on two suites whose model has `limits.rpm` set. The combined rate is
measured at the endpoint: answered requests over the time from the first answer to the last.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bench.results import write_section


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=600, help="rows per process")
    parser.add_argument("--rpm", type=int, default=1200)
    args = parser.parse_args()
    os.environ["EVALFLOW_HOME"] = tempfile.mkdtemp(prefix="evalflow-bench-")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from evalflow.endpoints import sim_endpoint
    from tests.suites import answer_key, questions, start_shared_runs

    rows = questions(args.rows)
    limit_rps = args.rpm / 60
    work = Path(tempfile.mkdtemp(prefix="bench-shared-"))
    with (
        prefect_test_harness(server_startup_timeout=60),
        sim_endpoint(answer_key=answer_key(rows), latency_ms=10) as sim,
    ):
        api = str(PREFECT_API_URL.value())
        sim.reset()
        procs = start_shared_runs(work, rows, sim.base_url, api, args.rpm)
        codes = [proc.wait(timeout=1800) for proc in procs]
        stats = sim.stats()
    answered = int(stats["by_status"].get("200", 0))
    rate = (answered - 1) / max(stats["answering_seconds"], 1e-9)
    print(f"combined {rate:.2f} requests/s under a shared {limit_rps:.0f}/s (exit codes {codes})")
    body = "\n".join(
        [
            f"Two `evalflow run` processes at once, {args.rows} rows each, one model whose "
            f"registry entry sets `rpm: {args.rpm}` ({limit_rps:.0f} requests/s shared).",
            "",
            "| combined requests/s | of the limit | answered | 429s | exit codes |",
            "|---|---|---|---|---|",
            f"| {rate:.2f} | {rate / limit_rps:.3f} | {answered} "
            f"| {stats['by_status'].get('429', 0)} | {codes} |",
            "",
            "Goal: between 0.9 and 1.05 of the limit.",
        ]
    )
    write_section("Shared limit", "uv run python -m bench.shared_limit", body)


if __name__ == "__main__":
    main()
