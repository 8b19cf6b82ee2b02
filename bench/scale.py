"""Scale: one model over 100,000 rows at zero latency; wall time, CPU per row, peak memory.

    uv run python -m bench.scale [--rows 100000] [--chunk-size 1000] [--findings FILE]

The simulated endpoint answers at once (latency 0), so the run is bound by evalflow's own
work. CPU is this process's user + system time (`getrusage(RUSAGE_SELF)`, every thread) across
the `evaluate()` call: inference, tracing, collecting, the Weave evaluation and the
leaderboard, and whatever is imported lazily on the way. The simulated endpoint and Prefect's
ephemeral API server run in child processes of their own, so their CPU is not in that figure;
it is read from /proc and shown apart. Peak memory is the process's `ru_maxrss`.

`--findings FILE` adds a Markdown file (profiling notes from a separate run) to the section;
`--no-write` prints the figures without touching RESULTS.md (for profiling runs).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.results import write_section

CONCURRENCY = 32
CPU_GOAL_MS = 3.0
MEMORY_GOAL_MB = 2048.0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def children_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of each live child process, with its command line."""
    tick = os.sysconf("SC_CLK_TCK")
    me = os.getpid()
    found: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
        if int(fields[1]) != me:
            continue
        found[int(entry.name)] = (cmdline, (int(fields[11]) + int(fields[12])) / tick)
    return found


@dataclass
class Figures:
    rows: int
    answered: int
    failed_rows: int
    wall_s: float
    cpu_s: float
    peak_mb: float
    sim_cpu_s: float
    other_children_cpu_s: float

    @property
    def cpu_ms_per_row(self) -> float:
        return 1000.0 * self.cpu_s / max(self.rows, 1)


def run(rows_count: int, chunk_size: int) -> Figures:
    import pandas as pd

    from evalflow.endpoints import sim_endpoint
    from flows.evaluate import evaluate
    from tests.suites import answer_key, questions, write_suite

    rows = questions(rows_count)
    folder = Path(tempfile.mkdtemp(prefix="bench-evals-"))
    with sim_endpoint(answer_key=answer_key(rows), latency_ms=0) as sim:
        limits: dict[str, object] = {"limits": {"max_concurrency": CONCURRENCY, "timeout_s": 30.0}}
        write_suite(folder, "scale", rows, sim.base_url, {"oracle": limits})
        os.environ["EVALFLOW_EVALS_DIR"] = str(folder)
        del rows  # the flow reads the dataset from the suite's file, as a user's run would
        sim.reset()
        children_before = children_cpu()
        cpu_before = cpu_seconds()
        started = time.perf_counter()
        result: dict[str, Any] = evaluate(
            suite="scale", chunk_size=chunk_size, weave_project="local/bench-scale"
        )
        wall = time.perf_counter() - started
        cpu = cpu_seconds() - cpu_before
        children_after = children_cpu()
        stats = sim.stats()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    sim_cpu = other_cpu = 0.0
    for pid, (cmdline, after) in children_after.items():
        delta = after - children_before.get(pid, ("", 0.0))[1]
        if "evalflow.endpoints.sim" in cmdline:
            sim_cpu += delta
        else:
            other_cpu += delta
    frame = pd.read_parquet(Path(result["folder"]) / "results.parquet")
    return Figures(
        rows=rows_count,
        answered=int(stats["by_status"].get("200", 0)),
        failed_rows=int(frame["error_class"].notna().sum()),
        wall_s=wall,
        cpu_s=cpu,
        peak_mb=peak_mb,
        sim_cpu_s=sim_cpu,
        other_children_cpu_s=other_cpu,
    )


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--findings", type=Path, help="Markdown notes added to the section")
    parser.add_argument("--no-write", action="store_true", help="leave RESULTS.md alone")
    args = parser.parse_args()
    os.environ["EVALFLOW_HOME"] = tempfile.mkdtemp(prefix="evalflow-bench-")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")

    f = run(args.rows, args.chunk_size)
    print(
        f"{f.rows} rows: {f.wall_s:.1f} s wall, {f.cpu_ms_per_row:.2f} ms CPU/row "
        f"({f.cpu_s:.1f} s), peak {f.peak_mb:,.0f} MB, {f.answered} answered, "
        f"{f.failed_rows} failed; sim {f.sim_cpu_s:.1f} s CPU, other children "
        f"{f.other_children_cpu_s:.1f} s CPU"
    )
    if args.no_write:
        return
    cpu_met = f.cpu_ms_per_row <= CPU_GOAL_MS
    memory_met = f.peak_mb < MEMORY_GOAL_MB
    lines = [
        f"{f.rows:,} rows, one model, simulated endpoint at latency 0, {CONCURRENCY} requests "
        f"in flight, chunks of {args.chunk_size:,}. CPU is the evalflow process's user + "
        "system time across `evaluate()` (all its threads; lazy imports and the first "
        "contact with Prefect's ephemeral API included). The simulated endpoint and "
        "Prefect's ephemeral API server are child processes: their CPU is not in the figure "
        "and is shown apart.",
        "",
        "| rows | answered | failed rows | wall s | rows/s | CPU s | CPU ms/row | peak memory "
        "(ru_maxrss) | sim server CPU s | Prefect API server CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {f.rows:,} | {f.answered:,} | {f.failed_rows} | {f.wall_s:.1f} "
        f"| {f.rows / f.wall_s:,.0f} | {f.cpu_s:.1f} | {f.cpu_ms_per_row:.2f} "
        f"| {f.peak_mb:,.0f} MB | {f.sim_cpu_s:.1f} | {f.other_children_cpu_s:.1f} |",
        "",
        f"Goals: CPU <= {CPU_GOAL_MS:g} ms/row ({verdict(cpu_met)}), peak memory < 2 GB "
        f"({verdict(memory_met)}).",
    ]
    if args.findings is not None:
        lines += ["", args.findings.read_text(encoding="utf-8").strip()]
    command = "uv run python -m bench.scale"
    if args.rows != 100_000:
        command += f" --rows {args.rows}"
    if args.chunk_size != 1000:
        command += f" --chunk-size {args.chunk_size}"
    if args.findings is not None:
        command += f" --findings {args.findings}"
    write_section("Scale", command, "\n".join(lines))


if __name__ == "__main__":
    main()
