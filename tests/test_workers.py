"""A night shared by two workers: the nightly deployment fans out (one flow run of `evaluate`
per suite x model) on a process work pool served by two `prefect worker start` processes, with
a Prefect server on PostgreSQL; then a worker and its flow run are killed (SIGKILL) mid-run:
the lost-run automation marks the run crashed, the nightly starts it again, the other worker
finishes it, and the endpoint is asked again only for what was in flight.

Each worker has its own EVALFLOW_HOME, as on machines of their own; they share what machines
share: the Prefect server, the runs' storage (EVALFLOW_STORAGE on an S3 server, moto's) and
the Weave project (here the local store, one SQLite file: named by EVALFLOW_WEAVE_STORE, since
the workers are on one machine; on several, a W&B Weave project).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.events.filters import EventFilter, EventNameFilter
from prefect.settings import PREFECT_API_URL, temporary_settings

from evalflow.endpoints import SimEndpoint
from evalflow.endpoints.process import ServerProcess
from tests.servers import PrefectServer, S3Server
from tests.suites import answer_key, questions, write_suite

REPO = Path(__file__).resolve().parent.parent
SUITES = ["w0", "w1", "w2"]
MODELS = ["oracle", "sim-good"]
ROWS_PER_SUITE = 360  # oracle's 3 x 360 take 108 s at its limit: long after the last starts
RPM = 600  # oracle's shared limit: 10 requests/s across both workers
CONCURRENCY = 8  # each model's requests in flight per evaluation
LOST_ROWS = 300
# flow runs a worker takes at once (the nightly runs on a third worker). Two: oracle's 3
# evaluations, each held for its whole run by the shared limit (108 s), cannot all be on one
# worker, so they land on both whatever the order of the workers' polls. (With 3, a clean-clone
# CI run on a slow machine had all three on worker-a: each of its polls found an oracle
# evaluation first.) The night's other 3 are quick: they finish and free their slots for the
# last two evaluations the nightly starts, while oracle's first two still run.
LIMIT = ["--limit", "2"]
PROJECT = ["--weave-project", "local/workers"]
NIGHTLY_QUEUE = "nightly"
WORKER = ["-m", "prefect", "worker", "start", "--pool", "evalflow"]


def rows_of(suite: str, n: int) -> list[dict[str, str]]:
    """Rows whose questions name their suite: each (model, prompt) is one request at the
    endpoint, so it can count what was asked twice."""
    return [{**r, "question": f"[{suite}] {r['question']}"} for r in questions(n)]


@dataclass
class Pool:
    server: PrefectServer
    evals: Path
    home: Path  # the test's own (another machine's), where it reads leaderboards from
    storage: dict[str, str]  # EVALFLOW_STORAGE, the S3 settings, the Weave store
    workers: dict[str, ServerProcess]

    def env(self, home: Path | None = None) -> dict[str, str]:
        """What the workers share: the Prefect API, the suites, the runs' storage, Weave."""
        return {
            **os.environ,
            "PREFECT_API_URL": self.server.api_url,
            "EVALFLOW_EVALS_DIR": str(self.evals),
            "EVALFLOW_REPO": str(REPO),
            "EVALFLOW_HOME": str(home or self.home),
            **self.storage,
        }


def prefect(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@contextmanager
def api(pool: Pool) -> Iterator[Any]:
    with (
        temporary_settings(updates={PREFECT_API_URL: pool.server.api_url}),
        get_client(sync_client=True) as client,
    ):
        yield client


def start_worker(pool: Pool, name: str, tmp: Path, queue: str = "default") -> ServerProcess:
    env = {
        **pool.env(home=tmp / name / "home"),
        "PREFECT_HOME": str(tmp / name),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }
    return ServerProcess(
        f"worker {name}",
        [*WORKER, "--work-queue", queue, "--name", name, *LIMIT],
        env=env,
        log_path=tmp / f"{name}.log",
    )


@pytest.fixture(scope="module")
def pool(
    prefect_postgres: PrefectServer,
    tmp_path_factory: pytest.TempPathFactory,
    sim_server: Any,
    s3_server: S3Server,
) -> Iterator[Pool]:
    """The deployments on the `evalflow` process pool, the lost-run automation, two workers."""
    tmp = tmp_path_factory.mktemp("workers")
    evals = tmp / "evals"
    limits = {"max_concurrency": CONCURRENCY, "timeout_s": 5.0}
    models = {"oracle": {"limits": {**limits, "rpm": RPM}}, "sim-good": {"limits": limits}}
    for suite in SUITES:
        write_suite(evals, suite, rows_of(suite, ROWS_PER_SUITE), sim_server.base_url, models)
    write_suite(evals, "lost", rows_of("lost", LOST_ROWS), sim_server.base_url, models)
    storage = {
        "EVALFLOW_STORAGE": s3_server.new_bucket("evalflow"),
        **s3_server.env(),
        "EVALFLOW_WEAVE_STORE": str(tmp / "weave"),
    }
    pool = Pool(prefect_postgres, evals, tmp / "home", storage, {})
    prefect(pool.env(), "work-pool", "create", "evalflow", "--type", "process")
    prefect(pool.env(), "--no-prompt", "deploy", "--all")
    # the lost-run automation, as a user sets it up for a shared server (a 60 s window here)
    setup = subprocess.run(
        [sys.executable, "-m", "evalflow.cli", "workers", "setup", "--periods", "2"],
        env=pool.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert setup.returncode == 0, setup.stderr
    # The nightly itself runs on a queue of its own, on a third worker: killing a worker of the
    # evaluations below then never kills the nightly that restarts them.
    prefect(pool.env(), "work-queue", "create", NIGHTLY_QUEUE, "--pool", "evalflow")
    conductor = start_worker(pool, "conductor", tmp, NIGHTLY_QUEUE)
    pool.workers = {name: start_worker(pool, name, tmp) for name in ("worker-a", "worker-b")}
    try:
        yield pool
    finally:
        for worker in [*pool.workers.values(), conductor]:
            worker.stop()


def start_nightly(pool: Pool, **parameters: Any) -> FlowRun:
    with api(pool) as client:
        deployment = client.read_deployment_by_name("nightly-evals/nightly-evals")
        return client.create_flow_run_from_deployment(
            deployment.id,
            parameters={"weave_project": "local/workers", "chunk_size": 10, **parameters},
            job_variables={"env": {"EVALFLOW_RUN_DAY": "20250401"}},
            work_queue_name=NIGHTLY_QUEUE,
        )


def wait_final(pool: Pool, run: FlowRun, timeout: float) -> FlowRun:
    deadline = time.monotonic() + timeout
    with api(pool) as client:
        while time.monotonic() < deadline:
            found = client.read_flow_run(run.id)
            if found.state is not None and found.state.is_final():
                return found
            time.sleep(1)
    raise AssertionError(f"nightly {run.name} did not end in {timeout:.0f} s")


def children(pool: Pool, suites: list[str]) -> list[FlowRun]:
    """The flow runs of `evaluate` on these suites, oldest first."""
    with api(pool) as client:
        evaluate = client.read_deployment_by_name("evaluate/evaluate")
        runs = [r for r in client.read_flow_runs() if r.deployment_id == evaluate.id]
    return sorted((r for r in runs if r.parameters.get("suite") in suites), key=lambda r: r.created)


def worker_of(pool: Pool) -> dict[str, str]:
    """flow run id -> the name of the worker that ran it (its submitted-flow-run events)."""
    query = EventFilter(event=EventNameFilter(name=["prefect.worker.submitted-flow-run"]))
    with api(pool) as client:
        page = client.read_events(filter=query, limit=50)  # the most the API returns
    found: dict[str, str] = {}
    for event in page.events:
        for related in event.related:
            if related.id.startswith("prefect.flow-run."):
                found[related.id.removeprefix("prefect.flow-run.")] = str(event.resource.name)
    return found


def leaderboard(pool: Pool, suite: str) -> list[dict[str, Any]]:
    shown = subprocess.run(
        [sys.executable, "-m", "evalflow.cli", "leaderboard", suite, "--json", *PROJECT],
        env=pool.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    entries: list[dict[str, Any]] = json.loads(shown.stdout)
    return entries


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


class Sampler:
    """Samples a model's answered count at the endpoint every half second, in a thread."""

    def __init__(self, sim: SimEndpoint, model: str) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(sim, model), daemon=True)
        self._thread.start()

    def _run(self, sim: SimEndpoint, model: str) -> None:
        while not self._stop.is_set():
            count = int(sim.stats()["by_model"].get(model, {}).get("200", 0))
            self.samples.append((time.time(), count))
            self._stop.wait(0.5)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def rate(self, start: float, end: float) -> float:
        """Answers per second between two times (the samples nearest inside them)."""
        inside = [(t, n) for t, n in self.samples if start <= t <= end]
        (t0, n0), (t1, n1) = inside[0], inside[-1]
        return (n1 - n0) / (t1 - t0)


def asking_together(pool: Pool, runs: list[FlowRun]) -> tuple[float, float]:
    """When every one of these evaluations was asking: from the latest first start of their
    infer-chunk tasks to the earliest last end (not their start-up, nor their Weave
    evaluation, when a flow run asks nothing)."""
    spans = []
    with api(pool) as client:
        for run in runs:
            only = FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
            tasks = [
                t
                for t in client.read_task_runs(flow_run_filter=only)
                if t.name.startswith("infer-") and t.start_time and t.end_time
            ]
            assert tasks, run.name
            spans.append(
                (
                    min(t.start_time.timestamp() for t in tasks if t.start_time),
                    max(t.end_time.timestamp() for t in tasks if t.end_time),
                )
            )
    return max(s for s, _ in spans), min(e for _, e in spans)


def test_the_nightly_fans_out_over_two_workers_under_one_shared_limit(
    pool: Pool, sim: SimEndpoint
) -> None:
    rows = [r for suite in SUITES for r in rows_of(suite, ROWS_PER_SUITE)]
    sim.configure(answer_key=answer_key(rows), latency_ms=10)
    began = time.monotonic()
    sampler = Sampler(sim, "oracle")
    try:
        night = start_nightly(pool, suites=SUITES, models=MODELS, max_parallel=6)
        night = wait_final(pool, night, 240)
    finally:
        sampler.stop()
    print(f"nightly over 3 suites x 2 models: {time.monotonic() - began:.1f} s")
    assert night.state is not None and night.state.is_completed(), night.state

    runs = children(pool, SUITES)
    pairs = sorted((r.parameters["suite"], r.parameters["models"][0]) for r in runs)
    assert pairs == sorted((s, m) for s in SUITES for m in MODELS)  # one child each, no retry
    assert all(r.state is not None and r.state.is_completed() for r in runs)
    assert all(r.parameters["publish_leaderboard"] is False for r in runs)
    wait_until(lambda: len(worker_of(pool)) >= len(runs), 30, "the workers' events")
    ran_by = worker_of(pool)
    assert {ran_by[str(r.id)] for r in runs} == {"worker-a", "worker-b"}
    limited = [r for r in runs if r.parameters["models"] == ["oracle"]]
    assert {ran_by[str(r.id)] for r in limited} == {"worker-a", "worker-b"}

    stats = sim.stats()
    answered = stats["by_model"]["oracle"]["200"]
    assert answered == len(rows) and stats["by_model"]["sim-good"]["200"] == len(rows)
    assert stats["repeated"] == 0
    limit = RPM / 60
    # Over the whole night the limit held; while all three of oracle's evaluations ran (on
    # both workers, asking more than the limit), it was reached.
    overall = (answered - 1) / stats["answering_seconds_by_model"]["oracle"]
    start, end = asking_together(pool, limited)
    assert end - start >= 10, f"oracle's evaluations were all asking for {end - start:.1f} s"
    together = sampler.rate(start, end)
    print(
        f"oracle: {overall:.2f} requests/s over the night, {together:.2f}/s over the "
        f"{end - start:.0f} s its 3 evaluations were all asking, under a shared {limit:.0f}/s"
    )
    assert overall <= 1.05 * limit, overall
    # Held: never above 1.05 of the limit. Reached: alone this test measures 0.97 to 1.02 of
    # it; inside the whole suite (the pytest process, which also serves the simulated
    # endpoint, carries the session's servers) two clean-clone CI runs measured 0.89 and 0.90.
    # bench/RESULTS.md "Workers" measures it on its own.
    assert 0.85 * limit <= together <= 1.05 * limit, together

    for suite in SUITES:
        board = leaderboard(pool, suite)
        assert sorted(e["model"] for e in board) == MODELS, (suite, board)
        assert {e["n"] for e in board} == {ROWS_PER_SUITE}
        assert next(e for e in board if e["model"] == "oracle")["exact_match"] == 1.0


def process_group_of(pid: int) -> int:
    return os.getpgid(pid)


def parent_of(pid: int) -> int:
    """A process's parent id, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def test_a_killed_worker_costs_only_its_requests_in_flight(pool: Pool, sim: SimEndpoint) -> None:
    rows = rows_of("lost", LOST_ROWS)
    sim.configure(answer_key=answer_key(rows), latency_ms=10)
    began = time.monotonic()
    night = start_nightly(pool, suites=["lost"], models=["oracle"], max_parallel=1)

    def answered() -> int:
        return int(sim.stats()["by_model"].get("oracle", {}).get("200", 0))

    wait_until(lambda: answered() >= 60, 120, "the lost suite's first 60 answers")
    (child,) = children(pool, ["lost"])
    with api(pool) as client:
        child = client.read_flow_run(child.id)
    assert child.infrastructure_pid, child
    flow_pid = int(str(child.infrastructure_pid).rsplit(":", 1)[-1])
    victim = next(n for n, w in pool.workers.items() if w.proc.pid == parent_of(flow_pid))
    os.killpg(pool.workers[victim].proc.pid, signal.SIGKILL)
    os.killpg(process_group_of(flow_pid), signal.SIGKILL)
    sent_before_kill = answered()
    killed_at = time.monotonic()
    print(f"killed {victim} and its flow run after {sent_before_kill} answers")

    done = wait_final(pool, night, 240)
    after = time.monotonic() - killed_at
    print(f"lost-worker night: {time.monotonic() - began:.1f} s, {after:.1f} s after the kill")
    assert done.state is not None and done.state.is_completed(), done.state
    first, second = children(pool, ["lost"])
    assert first.state is not None and first.state.type.value == "CRASHED", first.state
    assert "no heartbeat" in (first.state.message or "")  # the lost-run automation's verdict
    assert second.state is not None and second.state.is_completed()
    survivor = next(n for n in pool.workers if n != victim)
    wait_until(lambda: str(second.id) in worker_of(pool), 30, "the second run's worker event")
    assert worker_of(pool)[str(second.id)] == survivor

    stats = sim.stats()
    print(f"answered {stats['by_model']['oracle']['200']}, asked twice: {stats['repeated']}")
    # Every row answered; asked twice: only the requests in flight when the worker died (sent
    # and not yet saved: on S3 the journal's last flush window, 0.25 s at the limit's 10/s).
    assert len({r["question"] for r in rows}) == LOST_ROWS
    assert stats["by_model"]["oracle"]["200"] - stats["repeated"] == LOST_ROWS
    assert stats["repeated"] <= CONCURRENCY + 3, stats["repeated"]
    assert [e["model"] for e in leaderboard(pool, "lost")] == ["oracle"]
