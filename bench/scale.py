"""Scale: one model over 50,000 and 500,000 rows at zero latency; wall time, CPU per row,
peak memory per size, and how the peak grows with the rows.

    uv run python -m bench.scale [--rows 50000 500000] [--chunk-size 1000] [--findings FILE]

Each size runs in a process of its own (`--one N`, printing its figures as JSON), so each
peak is that size's own.

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
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.results import write_section

CONCURRENCY = 32
DEFAULT_ROWS = (50_000, 500_000)
CPU_GOAL_MS = 2.5
GROWTH_GOAL = 1.2  # peak memory at the largest size over the peak at the smallest
MEMORY_GOAL_MB = 1024.0


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


def start_sim(folder: Path, rows_count: int) -> tuple[Any, str]:
    """The suite's dataset (as tests.suites.questions writes it), written row by row, and the
    simulated endpoint knowing its answers; nothing of either is kept here (the setup's
    memory is not evalflow's)."""
    from evalflow.endpoints.sim_profile import SimProfile
    from evalflow.endpoints.simulated import start_sim_process

    key: dict[str, str] = {}
    with (folder / "rows.jsonl").open("w", encoding="utf-8") as out:
        for i in range(rows_count):
            question, answer = f"What is {i} plus {i}?", str(2 * i)
            out.write(json.dumps({"id": f"q{i:04d}", "question": question, "answer": answer}))
            out.write("\n")
            key[question] = answer
    profile = SimProfile(answer_key=key, latency_ms=0)
    del key
    return start_sim_process(profile)


def run(rows_count: int, chunk_size: int) -> Figures:
    import pandas as pd

    from evalflow.endpoints.simulated import SimEndpoint
    from flows.evaluate import evaluate
    from tests.suites import write_suite

    folder = Path(tempfile.mkdtemp(prefix="bench-evals-"))
    limits: dict[str, object] = {"limits": {"max_concurrency": CONCURRENCY, "timeout_s": 30.0}}
    proc, url = start_sim(folder, rows_count)
    gc.collect()
    try:
        sim = SimEndpoint(base_url=url)
        write_suite(folder, "scale", [], sim.base_url, {"oracle": limits})
        (folder / "rows.jsonl").replace(folder / "scale.jsonl")  # the dataset, not write_suite's
        os.environ["EVALFLOW_EVALS_DIR"] = str(folder)
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
    finally:
        proc.stop()
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


def measure(rows: int, chunk_size: int) -> Figures:
    """One size, in a process of its own (its peak memory is its own ru_maxrss)."""
    command = [sys.executable, "-m", "bench.scale", "--one", str(rows)]
    command += ["--chunk-size", str(chunk_size)]
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    line = [x for x in done.stdout.splitlines() if x.startswith("{")][-1]
    return Figures(**json.loads(line))


def describe_figures(f: Figures) -> str:
    return (
        f"{f.rows} rows: {f.wall_s:.1f} s wall, {f.cpu_ms_per_row:.2f} ms CPU/row "
        f"({f.cpu_s:.1f} s), peak {f.peak_mb:,.0f} MB, {f.answered} answered, "
        f"{f.failed_rows} failed; sim {f.sim_cpu_s:.1f} s CPU, other children "
        f"{f.other_children_cpu_s:.1f} s CPU"
    )


def table_row(f: Figures) -> str:
    return (
        f"| {f.rows:,} | {f.answered:,} | {f.failed_rows} | {f.wall_s:.1f} "
        f"| {f.rows / f.wall_s:,.0f} | {f.cpu_s:.1f} | {f.cpu_ms_per_row:.2f} "
        f"| {f.peak_mb:,.0f} MB | {f.sim_cpu_s:.1f} | {f.other_children_cpu_s:.1f} |"
    )


def goals(figures: list[Figures]) -> list[str]:
    """The scale goals (issue 16): CPU per row at every size; memory flat from the smallest
    size to the largest, and under 1 GB."""
    worst_cpu = max(f.cpu_ms_per_row for f in figures)
    smallest, largest = min(figures, key=lambda f: f.rows), max(figures, key=lambda f: f.rows)
    lines = [f"- CPU <= {CPU_GOAL_MS:g} ms/row at every size: {verdict(worst_cpu <= CPU_GOAL_MS)}."]
    if largest.rows > smallest.rows:
        ratio = largest.peak_mb / smallest.peak_mb
        lines.append(
            f"- peak memory at {largest.rows:,} rows within {GROWTH_GOAL:g}x the peak at "
            f"{smallest.rows:,}: {ratio:.2f}x ({verdict(ratio <= GROWTH_GOAL)}); growth "
            f"{1e6 * (largest.peak_mb - smallest.peak_mb) / (largest.rows - smallest.rows):,.0f} "
            f"bytes per row."
        )
    lines.append(
        f"- peak memory under {MEMORY_GOAL_MB:,.0f} MB at {largest.rows:,} rows: "
        f"{verdict(largest.peak_mb < MEMORY_GOAL_MB)}."
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=list(DEFAULT_ROWS))
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--findings", type=Path, help="Markdown notes added to the section")
    parser.add_argument("--no-write", action="store_true", help="leave RESULTS.md alone")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child: one size
    args = parser.parse_args()
    if args.one is not None:
        os.environ["EVALFLOW_HOME"] = tempfile.mkdtemp(prefix="evalflow-bench-")
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
        print(json.dumps(asdict(run(args.one, args.chunk_size))))
        return

    figures = []
    for rows in args.rows:
        figures.append(measure(rows, args.chunk_size))
        print(describe_figures(figures[-1]), flush=True)
    lines = goals(figures)
    print("\n".join(lines))
    if args.no_write:
        return
    body = [
        "One model, simulated endpoint at latency 0, "
        f"{CONCURRENCY} requests in flight, chunks of {args.chunk_size:,}; each size in a "
        "process of its own. CPU is the evalflow process's user + system time across "
        "`evaluate()` (all its threads; lazy imports and the first contact with Prefect's "
        "ephemeral API included). The simulated endpoint and Prefect's ephemeral API server "
        "are child processes: their CPU is not in the figure and is shown apart. Peak memory "
        "is the process's ru_maxrss.",
        "",
        "| rows | answered | failed rows | wall s | rows/s | CPU s | CPU ms/row | peak memory "
        "(ru_maxrss) | sim server CPU s | Prefect API server CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *[table_row(f) for f in figures],
        "",
        "Goals (issue 16):",
        "",
        *lines,
    ]
    if args.findings is not None:
        body += ["", args.findings.read_text(encoding="utf-8").strip()]
    command = "uv run python -m bench.scale"
    if list(args.rows) != list(DEFAULT_ROWS):
        command += " --rows " + " ".join(str(r) for r in args.rows)
    if args.chunk_size != 1000:
        command += f" --chunk-size {args.chunk_size}"
    if args.findings is not None:
        command += f" --findings {args.findings}"
    write_section("Scale", command, "\n".join(body))


if __name__ == "__main__":
    main()
