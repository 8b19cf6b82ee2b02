"""Whole process: what a user waits for, from the command to its exit, next to the in-loop rate.

    uv run python -m bench.whole [--rows 1000 5000] [--latency-ms 200] [--repeat 1]

Each contender runs as its own command, as a user runs it: `evalflow run` (no PREFECT_API_URL,
so it starts its temporary Prefect server; its home is warmed by one earlier 1-row run, as any
second command on a machine is: the server's database is migrated once per EVALFLOW_HOME), the
same command with `evalflow up`'s Prefect server running (stack_server), a plain
weave.Evaluation script and a naive Prefect flow (bench/contenders.py), all at 32 requests in
flight. Two endpoints, each in a process of its own on this machine, so their CPU competes
with the client's as a user's local server does: the project's simulated endpoint (asyncio,
one thread) and a plain threaded stdlib server (bench/plain_endpoint.py). The endpoint counts
the answers: the in-loop rate is answers over the time from the first to the last; "first
request" and "first answer" are how long after the command started the endpoint received its
first request and sent its first answer; the plain endpoint also reports how many requests
it held, on average, in the loop's first 3 s and after (a client busy elsewhere in its process
is slow to send the next request after an answer).
The bound is 32 / latency (160 rows/s at 200 ms); the whole-process bound is rows / 160.
With `--repeat K` the contenders run K times in turn (each evalflow run on a day of its own,
so none reuses an answer), each row of the table is the contender's run of median wall, and
the section written is one of its own (`Whole process, <rows> rows, K runs each`), with
evalflow's wall over the plain script's turn by turn: neighbours in time, so a slow spell of
the shared machine slows both.

Each endpoint's own bound is measured too: its mean round trip for one request at a time on
one kept-alive connection (its latency plus what its HTTP handling adds to every request),
and 32 over that. http.server with its defaults adds a wait to every answer: it writes the
response's headers and body in two writes, and Nagle's algorithm holds the body until the
client acknowledges the headers, which Linux delays (about 40 ms) unless the client asks for
the acknowledgement at once (TCP_QUICKACK). evalflow's client does
(evalflow/patches/openai_transport.py); openai's own clients, which the plain script and the
naive flow use, do not. Both round trips are measured (httpx, then evalflow's client); the
endpoint's bound is the shorter. From that bound and the plain script's first request
(importing weave and openai and starting weave: the floor of any client that traces with
weave), the benchmark computes the floor of the whole process at each size, and whether the
goal of 0.8x the plain script lies above it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.results import write_section

CONCURRENCY = 32
ROUND_TRIPS = 40  # one at a time, to measure the endpoint's own time per request
GOAL_RATIO = 0.8  # evalflow's wall over the plain weave.Evaluation's (issue 16)
DEFAULT_ROWS = [1000, 5000]


@dataclass
class Measured:
    wall_s: float
    answered: int
    rate: float
    first_answer_s: float | None
    first_request_s: float | None
    in_flight: tuple[float, float] | None = None  # mean, the loop's first 3 s and the rest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_endpoint(kind: str, key: Path, latency_ms: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    common = ["--port", str(port), "--answer-key", str(key), "--latency-ms", str(latency_ms)]
    if kind == "simulated":
        command = ["-m", "evalflow.cli", "serve", "sim", *common, "--jitter-ms", "50"]
    else:
        command = ["-m", "bench.plain_endpoint", *common]
    proc = subprocess.Popen(
        [sys.executable, *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    root = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{root}/v1/models", timeout=1).status_code == 200:
                return proc, root
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the {kind} endpoint did not start")


def endpoint_counts(
    kind: str, stats: dict[str, Any]
) -> tuple[int, float, float | None, float | None]:
    """Answers, seconds from the first to the last, and the delays of the first answer and of
    the first request since the reset."""
    if kind == "simulated":
        answered = int(stats["by_status"].get("200", 0))
    else:
        answered = int(stats["answered"])
    return (
        answered,
        float(stats["answering_seconds"]),
        stats["first_answer_after_s"],
        stats["first_request_after_s"],
    )


def in_flight(stats: dict[str, Any]) -> tuple[float, float] | None:
    """The plain endpoint's mean requests in flight, early in the loop and later (None: the
    simulated endpoint does not count them)."""
    if "in_flight_early" not in stats:
        return None
    return float(stats["in_flight_early"]), float(stats["in_flight_later"])


def round_trip_s(root: str, question: str) -> float:
    """The endpoint's mean time for one request at a time on one kept-alive connection, through
    httpx (the kernel acknowledges the response's headers when it will)."""
    url = f"{root}/v1/chat/completions"
    body = {"model": "oracle", "messages": [{"role": "user", "content": question}]}
    with httpx.Client(timeout=30) as client:
        client.post(url, json=body).raise_for_status()  # the connection, opened once
        started = time.perf_counter()
        for _ in range(ROUND_TRIPS):
            client.post(url, json=body).raise_for_status()
        return (time.perf_counter() - started) / ROUND_TRIPS


def prompt_round_trip_s(root: str, question: str) -> float:
    """The same through evalflow's openai client, which acknowledges each response's headers at
    once."""
    import httpx2
    import openai

    from evalflow.patches.openai_transport import http_client
    from evalflow.tls import ssl_context

    async def trips() -> float:
        http = http_client(httpx2.Limits(max_connections=1), 30, ssl_context())
        async with openai.AsyncOpenAI(base_url=f"{root}/v1", api_key="-", http_client=http) as c:
            messages: list[Any] = [{"role": "user", "content": question}]
            await c.chat.completions.create(model="oracle", messages=messages)
            started = time.perf_counter()
            for _ in range(ROUND_TRIPS):
                await c.chat.completions.create(model="oracle", messages=messages)
            return (time.perf_counter() - started) / ROUND_TRIPS

    return asyncio.run(trips())


UP = "evalflow run, `evalflow up` running"
PLAIN = "plain weave.Evaluation"


@contextlib.contextmanager
def stack_server(home: Path, env: dict[str, str]) -> Iterator[None]:
    """A Prefect server as `evalflow up` starts it (its home's prefect.db), recorded in the
    home's stack.json so `evalflow run` finds it (the local LLM is not started: the suite does
    not use it)."""
    port = free_port()
    server_env = {
        **env,
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home}/prefect/prefect.db",
    }
    command = ["-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        [sys.executable, *command],
        env=server_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{api}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        (home / "stack.json").write_text(json.dumps({"api_url": api, "llm_url": "", "pids": []}))
        yield
    finally:
        (home / "stack.json").unlink(missing_ok=True)
        proc.terminate()
        proc.wait(timeout=30)


def measure(command: list[str], env: dict[str, str], kind: str, root: str) -> Measured:
    httpx.post(f"{root}/_stats/reset", timeout=10)
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    stats = dict(httpx.get(f"{root}/_stats", timeout=10).json())
    answered, seconds, first, first_request = endpoint_counts(kind, stats)
    rate = (answered - 1) / max(seconds, 1e-9)
    return Measured(wall, answered, rate, first, first_request, in_flight(stats))


def median_run(runs: list[Measured]) -> Measured:
    """The run of median wall (the lower of the two middle ones for an even count)."""
    return sorted(runs, key=lambda m: m.wall_s)[(len(runs) - 1) // 2]


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def held(m: Measured) -> str:
    return "-" if m.in_flight is None else f"{m.in_flight[0]:.1f} / {m.in_flight[1]:.1f}"


def paired_row(kind: str, rows: int, runs: dict[str, list[Measured]]) -> str:
    """evalflow's wall over the plain script's in each turn (run one after the other on the
    shared machine, so what slows the machine for a while slows both), and their medians."""
    plain = [m.wall_s for m in runs[PLAIN]]
    cells = []
    for name in ("evalflow run", UP):
        ratios = [m.wall_s / p for m, p in zip(runs[name], plain, strict=True)]
        cells += [", ".join(f"{r:.2f}" for r in ratios), f"{statistics.median(ratios):.2f}"]
    return f"| {kind} | {rows} | {' | '.join(cells)} |"


def floor_row(kind: str, rows: int, results: dict[str, Measured], own_bound: float) -> str:
    """The goal (0.8x the plain script's wall) next to the floor of any client that starts as
    the plain script does and then answers at the endpoint's own bound."""
    plain = results[PLAIN]
    goal = GOAL_RATIO * plain.wall_s
    floor = (plain.first_request_s or 0.0) + rows / own_bound
    return (
        f"| {kind} | {rows} | {plain.wall_s:.1f} | {goal:.1f} | {floor:.1f} | "
        f"{results['evalflow run'].wall_s:.1f} | {results[UP].wall_s:.1f} | "
        f"{'yes' if goal > floor else 'no'} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=DEFAULT_ROWS)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument(
        "--repeat", type=int, default=1, help="run the contenders this many times in turn"
    )
    parser.add_argument("--no-write", action="store_true", help="leave RESULTS.md alone")
    args = parser.parse_args()
    from tests.suites import answer_key, questions, write_suite

    work = Path(tempfile.mkdtemp(prefix="bench-whole-"))
    everything = questions(max(args.rows))
    key = work / "key.json"
    key.write_text(json.dumps(answer_key(everything)))
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    base_env.pop("EVALFLOW_PREFECT_DEFAULTS_FOR", None)
    base_env["PREFECT_LOGGING_LEVEL"] = "CRITICAL"
    bound = CONCURRENCY / (args.latency_ms / 1000)
    table: list[str] = []
    floors: list[str] = []
    paired: list[str] = []
    round_trips: list[str] = []
    for kind in ("simulated", "plain threaded"):
        proc, root = start_endpoint(kind.split()[0], key, args.latency_ms)
        kind = kind.split()[0]
        try:
            delayed = round_trip_s(root, str(everything[0]["question"]))
            trip = min(delayed, prompt_round_trip_s(root, str(everything[0]["question"])))
            own_bound = CONCURRENCY / trip
            round_trips.append(
                f"| {kind} | {args.latency_ms:.0f} | {1000 * delayed:.1f} | {1000 * trip:.1f} | "
                f"{1000 * trip - args.latency_ms:+.1f} | {own_bound:.1f} |"
            )
            for n in args.rows:
                rows = everything[:n]
                rows_file = work / f"rows-{n}.json"
                rows_file.write_text(json.dumps(rows))
                limits: dict[str, object] = {
                    "limits": {"max_concurrency": CONCURRENCY, "timeout_s": 30.0}
                }
                evals = write_suite(
                    work / f"evals-{kind}-{n}", "bench", rows, f"{root}/v1", {"oracle": limits}
                )
                home = work / f"home-{kind}-{n}"
                env = {**base_env, "EVALFLOW_HOME": str(home), "EVALFLOW_EVALS_DIR": str(evals)}
                evalflow = [
                    sys.executable,
                    "-m",
                    "evalflow.cli",
                    "run",
                    "bench",
                    "--chunk-size",
                    "500",
                    "--weave-project",
                    "local/whole",
                ]
                measure([*evalflow, "--limit", "1"], env, kind, root)  # warm the home
                contenders = {
                    "evalflow run": evalflow,
                    PLAIN: [
                        sys.executable,
                        "-m",
                        "bench.contenders",
                        "weave",
                        "--base-url",
                        f"{root}/v1",
                        "--rows-file",
                        str(rows_file),
                    ],
                    "naive Prefect flow": [
                        sys.executable,
                        "-m",
                        "bench.contenders",
                        "naive",
                        "--base-url",
                        f"{root}/v1",
                        "--rows-file",
                        str(rows_file),
                    ],
                }
                runs: dict[str, list[Measured]] = {}
                for turn in range(args.repeat):  # the contenders in turn, `repeat` times
                    for name, command in contenders.items():
                        # An unseen day each time: a run of the same command reuses no answer.
                        day = {"EVALFLOW_RUN_DAY": f"2001{turn + 1:02d}01"} if turn else {}
                        runs.setdefault(name, []).append(
                            measure(command, {**env, **day}, kind, root)
                        )
                        if name == "evalflow run":  # the same, `evalflow up`'s server running
                            with stack_server(home, env):
                                up_env = {**env, "EVALFLOW_RUN_DAY": f"2000{turn + 1:02d}01"}
                                runs.setdefault(UP, []).append(measure(command, up_env, kind, root))
                        m = runs[name][-1]
                        print(
                            f"{kind} {n} {name}: {m.wall_s:.1f} s wall, {m.rate:.1f} rows/s "
                            f"in the loop, {m.answered} answered, first answer {m.first_answer_s}"
                        )
                results = {name: median_run(measured) for name, measured in runs.items()}
                ours = results["evalflow run"].wall_s
                for name, m in results.items():
                    walls = ", ".join(f"{r.wall_s:.1f}" for r in runs[name])
                    table.append(
                        f"| {kind} | {n} | {name} | {m.wall_s:.1f} | {walls} | {n / bound:.1f} | "
                        f"{ours / m.wall_s:.2f} | {m.rate:.1f} | {m.rate / bound:.2f} | "
                        f"{m.rate / own_bound:.2f} | {seconds(m.first_request_s)} | "
                        f"{seconds(m.first_answer_s)} | {held(m)} | {m.answered} |"
                    )
                floors.append(floor_row(kind, n, results, own_bound))
                paired.append(paired_row(kind, n, runs))
        finally:
            proc.kill()
            proc.wait()
    body = "\n".join(
        [
            f"Bound: {CONCURRENCY} in flight / {args.latency_ms / 1000:g} s = {bound:.0f} rows/s; "
            "each contender is one command, the contenders run one after another"
            + (
                f", {args.repeat} times in turn; each row is the contender's run of median wall"
                if args.repeat > 1
                else ""
            )
            + "; endpoints on this machine.",
            "",
            "| endpoint | rows | contender | wall s | each run's wall s | bound s | "
            "evalflow's wall / this | in-loop rows/s | of the bound | of the endpoint's bound | "
            "first request s | first answer s | in flight, first 3 s / later | answered |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            *table,
            "",
            "In flight: the mean number of requests the plain endpoint held in the first 3 s "
            "after the first request and from then to the last answer (the simulated endpoint "
            "does not count them). At 32 the client sends each next request as soon as an "
            "answer comes; fewer, and its process was busy elsewhere.",
            "",
            *(
                [
                    "Paired: evalflow's wall over the plain script's in each turn (the two run "
                    "one after the other, so a slow spell of the shared machine slows both), "
                    "and the median over the turns.",
                    "",
                    "| endpoint | rows | evalflow run / plain, each turn | median | "
                    "`evalflow up` / plain, each turn | median |",
                    "|---|---|---|---|---|---|",
                    *paired,
                    "",
                ]
                if args.repeat > 1
                else []
            ),
            f"Each endpoint's own bound: its mean round trip for one request at a time on one "
            f"kept-alive connection ({ROUND_TRIPS} requests), and {CONCURRENCY} over the shorter "
            "of two: through httpx, which leaves the acknowledgement of a response's headers to "
            "the kernel (delayed), and through evalflow's client, which asks for it at once.",
            "",
            "| endpoint | latency ms | round trip ms, acknowledgement delayed | round trip ms, "
            "the shorter | added by the endpoint ms | its bound rows/s |",
            "|---|---|---|---|---|---|",
            *round_trips,
            "",
            f"The floor of a whole process: the plain script's first request (importing weave "
            f"and openai and starting weave) plus the rows at the endpoint's own bound. The goal "
            f"({GOAL_RATIO:g}x the plain script) can be met only where it lies above that floor.",
            "",
            f"| endpoint | rows | plain weave.Evaluation s | goal ({GOAL_RATIO:g}x) s | floor s "
            "| evalflow run s | evalflow, `evalflow up` s | goal above the floor |",
            "|---|---|---|---|---|---|---|---|",
            *floors,
            "",
            "Goals (issue 16): evalflow's wall at most 0.8x the plain weave.Evaluation's on both "
            "endpoints; at 5,000 rows on the simulated endpoint, whole process at least 0.8 of "
            "the bound; the first request at most 2 s after the command starts with `evalflow "
            "up` running, at most 5 s without (cold: Prefect's temporary server).",
        ]
    )
    if args.no_write:
        print(body)
    elif args.repeat == 1 and args.rows == DEFAULT_ROWS:
        write_section("Whole process", "uv run python -m bench.whole", body)
    else:
        flags = f"--rows {' '.join(map(str, args.rows))} --repeat {args.repeat}"
        write_section(
            f"Whole process, {', '.join(map(str, args.rows))} rows, {args.repeat} runs each",
            f"uv run python -m bench.whole {flags}",
            body,
        )


if __name__ == "__main__":
    main()
