"""The nightly fanned out over 1, 2 and 4 workers: 3 suites x 2 models (6 evaluations) on the
simulated endpoint, each model with its own shared rate limit (the registry's rpm, a Prefect
global concurrency limit), a Prefect server on PostgreSQL 15 (SQLite if it cannot start).

    uv run python -m bench.workers [--rows 300] [--rpm 1200] [--workers 1 2 4] [--no-write]

Per worker count: a fresh work pool, the deployments, N `prefect worker start --limit 4`
processes, each with an EVALFLOW_HOME of its own (as on machines of their own), sharing the
runs' storage (EVALFLOW_STORAGE on an S3 server, moto's) and one local Weave store; one nightly
(max_parallel 6) as a deployment run, on a queue and worker of its own; wall time from the
nightly's creation to its end, and each model's requests per second at the endpoint (answers
over the time from its first answer to its last) against its limit.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.results import write_section

REPO = Path(__file__).resolve().parent.parent
SUITES = ["b0", "b1", "b2"]
MODELS = ["oracle", "sim-good"]


def _prefect(env: dict[str, str], *args: str) -> None:
    command = [sys.executable, "-m", "prefect", *args]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(done.stdout[-2000:] + done.stderr[-2000:])


NIGHTLY_QUEUE = "nightly"


def _night(api_url: str, pool: str, day: str) -> float:
    """One nightly run on `pool`; its wall time in seconds."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    parameters = {
        "suites": SUITES,
        "models": MODELS,
        "max_parallel": 6,
        "chunk_size": 20,
        "weave_project": f"local/bench-{pool}",
    }
    with (
        temporary_settings(updates={PREFECT_API_URL: api_url}),
        get_client(sync_client=True) as client,
    ):
        deployment = client.read_deployment_by_name("nightly-evals/nightly-evals")
        began = time.monotonic()
        run = client.create_flow_run_from_deployment(
            deployment.id,
            parameters=parameters,
            job_variables={"env": {"EVALFLOW_RUN_DAY": day}},
            work_queue_name=NIGHTLY_QUEUE,
        )
        while True:
            state = client.read_flow_run(run.id).state
            if state is not None and state.is_final():
                if not state.is_completed():
                    raise RuntimeError(f"nightly ended {state.type.value}: {state.message}")
                return time.monotonic() - began
            time.sleep(1)


def _suites(folder: Path, rows: int, rpm: int, base_url: str) -> list[dict[str, str]]:
    """The three suites (questions naming their suite) and the registry; every row."""
    from tests.suites import questions, write_suite

    limits: dict[str, object] = {"limits": {"rpm": rpm, "max_concurrency": 16, "timeout_s": 5.0}}
    everything = []
    for suite in SUITES:
        mine = [{**r, "question": f"[{suite}] {r['question']}"} for r in questions(rows)]
        write_suite(folder, suite, mine, base_url, dict.fromkeys(MODELS, limits))
        everything += mine
    return everything


def measure(
    workers: int, args: argparse.Namespace, sim: Any, api_url: str, work: Path, s3: Any
) -> dict[str, Any]:
    """Deploy on a pool of its own, start the workers, run one nightly, stop them."""
    from evalflow.endpoints.process import ServerProcess
    from tests.suites import answer_key

    pool = f"bench{workers}"
    evals = work / pool / "evals"
    rows = _suites(evals, args.rows, args.rpm, sim.base_url)
    sim.configure(answer_key=answer_key(rows), latency_ms=20)
    env = {
        **os.environ,
        "PREFECT_API_URL": api_url,
        "EVALFLOW_EVALS_DIR": str(evals),
        "EVALFLOW_REPO": str(REPO),
        "EVALFLOW_HOME": str(work / pool / "home"),
        "EVALFLOW_STORAGE": s3.new_bucket(pool),
        "EVALFLOW_WEAVE_STORE": str(work / pool / "weave"),
        **s3.env(),
    }
    # prefect.yaml names the pool `evalflow`: a copy naming this one.
    text = (REPO / "prefect.yaml").read_text()
    project = work / pool / "prefect.yaml"
    project.write_text(text.replace("name: evalflow\n      job", f"name: {pool}\n      job"))
    _prefect(env, "work-pool", "create", pool, "--type", "process", "--overwrite")
    _prefect(env, "--no-prompt", "deploy", "--all", "--prefect-file", str(project))
    _prefect(env, "work-queue", "create", NIGHTLY_QUEUE, "--pool", pool)

    def worker(name: str, queue: str) -> ServerProcess:
        command = ["-m", "prefect", "worker", "start", "--pool", pool, "--work-queue", queue]
        home = {"EVALFLOW_HOME": str(work / pool / name)}
        return ServerProcess(
            name,
            [*command, "--limit", "4"],
            env={**env, **home, "PREFECT_WORKER_QUERY_SECONDS": "1"},
            log_path=work / pool / f"{name}.log",
        )

    procs = [worker("conductor", NIGHTLY_QUEUE)]
    procs += [worker(f"worker{i}", "default") for i in range(workers)]
    try:
        sim.reset()
        wall = _night(api_url, pool, f"202506{workers:02d}")
        stats = sim.stats()
    finally:
        for proc in procs:
            proc.stop()
    rates = {
        m: (stats["by_model"][m]["200"] - 1) / stats["answering_seconds_by_model"][m]
        for m in MODELS
    }
    refused = stats["by_status"].get("429", 0)
    return {"workers": workers, "wall": wall, "rates": rates, "429": refused}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=300, help="rows per suite")
    parser.add_argument("--rpm", type=int, default=1200, help="each model's shared limit")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--no-write", action="store_true", help="print, do not write RESULTS.md")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from evalflow.endpoints import sim_endpoint
    from tests.servers import prefect_on_postgres, s3_on_moto

    work = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    limit = args.rpm / 60
    results = []
    with (
        prefect_on_postgres(work / "prefect") as server,
        sim_endpoint() as sim,
        s3_on_moto(work / "moto.log") as s3,
    ):
        # the sim's own limits sit well above the shared ones: a 429 means the limit leaked
        for workers in args.workers:
            found = measure(workers, args, sim, server.api_url, work, s3)
            print(found)
            results.append(found)
    lines = [
        f"The nightly over 3 suites x 2 models ({args.rows} rows each; 6 evaluations, "
        f"max_parallel 6), each model limited to {args.rpm} requests/min ({limit:.0f}/s, "
        f"shared by every worker), simulated endpoint at 20 ms a request; Prefect server on "
        f"{server.database}; workers started with `--limit 4` on this one machine, each with "
        f"its own EVALFLOW_HOME, runs on S3 storage (moto), the nightly on a worker of its "
        f"own.",
        "",
        "| workers | wall (s) | "
        + " | ".join(f"{m} req/s (of limit)" for m in MODELS)
        + " | 429s |",
        "|---|---|" + "---|" * len(MODELS) + "---|",
    ]
    for r in results:
        cells = " | ".join(f"{r['rates'][m]:.2f} ({r['rates'][m] / limit:.2f})" for m in MODELS)
        lines.append(f"| {r['workers']} | {r['wall']:.1f} | {cells} | {r['429']} |")
    lines += ["", "Each model's limit is the ceiling: a rate near 1.00 of it means the limit, "
              "not the workers, set the pace."]  # fmt: skip
    body = "\n".join(lines)
    if args.no_write:
        print(body)
    else:
        write_section("Workers", "uv run python -m bench.workers", body)


if __name__ == "__main__":
    main()
