"""Runs on shared storage (EVALFLOW_STORAGE): a real S3-compatible server (moto's server mode,
the `s3_server` fixture), `evalflow run` as a user runs it, the simulated endpoint counting
every request. Another machine is another EVALFLOW_HOME on the same storage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from evalflow.endpoints import SimEndpoint
from evalflow.endpoints.process import free_port
from evalflow.errors import RunInProgressError
from evalflow.inference import Answer, Journal
from evalflow.lease import hold_lease
from evalflow.storage import Remote, SegmentLog, runs_root
from flows.evaluate import evaluate
from tests.servers import S3Server
from tests.suites import answer_key, questions, write_suite

ROWS = questions(40)
SECRET = "wJalrXUtnFEMI-not-a-real-secret-K7MDENG"


def cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evalflow.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=timeout,
    )


def run_id_of(stdout: str) -> str:
    return next(line.split()[1] for line in stdout.splitlines() if line.startswith("run "))


@pytest.fixture
def evals(tmp_path: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch) -> Path:
    sim.configure(answer_key=answer_key(ROWS), models={"oracle": 1.0, "coin": 0.5})
    folder = write_suite(
        tmp_path / "evals", "shared", ROWS, sim.base_url, {"oracle": {}, "coin": {}}
    )
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    return folder


def machine(tmp_path: Path, name: str, storage: str, **extra: str) -> dict[str, str]:
    """The environment of `evalflow` on another machine: its own EVALFLOW_HOME, the shared
    run storage."""
    return {"EVALFLOW_HOME": str(tmp_path / name), "EVALFLOW_STORAGE": storage, **extra}


def test_a_run_on_s3_keeps_everything_in_the_bucket_for_every_machine(
    prefect_server: str, evals: Path, s3_server: S3Server, sim: SimEndpoint, tmp_path: Path
) -> None:
    storage = s3_server.new_bucket()
    env = {"EVALFLOW_EVALS_DIR": str(evals), "PREFECT_API_URL": prefect_server}
    first = cli("run", "shared", env={**env, **machine(tmp_path, "one", storage)})
    assert first.returncode == 0, first.stderr
    run_id = run_id_of(first.stdout)
    assert f"results: {storage}/{run_id}" in first.stdout
    assert sim.stats()["by_status"] == {"200": 80}
    keys = s3_server.keys(storage)
    prefix = storage.split("/", 3)[3]
    for name in ("parameters.json", "results.parquet", "summary.json", "run.lease"):
        assert f"{prefix}/{run_id}/{name}" in keys
    journals = [k for k in keys if "/answers/" in k]
    assert journals and all(k.endswith(".jsonl") for k in journals)
    assert {k.split("/")[-3] for k in journals} == {"oracle", "coin"}
    history = [k for k in keys if k.startswith(f"{prefix}/_history/shared/")]
    assert len(history) == 2  # one record per model
    assert not (tmp_path / "one" / "runs" / run_id).exists()  # nothing on the local disk

    sim.reset()
    other = machine(tmp_path, "two", storage)
    again = cli("run", "shared", env={**env, **other})
    assert again.returncode == 0, again.stderr
    assert run_id_of(again.stdout) == run_id
    assert sim.stats()["total"] == 0  # every answer reused from the bucket

    failures = cli("failures", run_id, "--json", env=other)
    assert failures.returncode == 0, failures.stderr
    listed = json.loads(failures.stdout)
    assert listed and {r["model"] for r in listed} == {"coin"}
    compared = cli("compare", f"{run_id}:oracle", f"{run_id}:coin", "--json", env=other)
    assert compared.returncode == 0, compared.stderr
    assert json.loads(compared.stdout)[0]["rows"]["paired"] == 40
    history_out = cli("history", "shared", "--json", env=other)
    assert history_out.returncode == 0, history_out.stderr
    assert {r["run_id"] for r in json.loads(history_out.stdout)} == {run_id}


def _segments(s3_server: S3Server, storage: str) -> list[str]:
    return [k for k in s3_server.keys(storage) if "/answers/" in k]


def _saved_answers(s3_server: S3Server, storage: str) -> int:
    """Complete answers in the bucket's journals (distinct requests)."""
    import boto3

    bucket = storage.removeprefix("s3://").split("/", 1)[0]
    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name="us-east-1")
    requests = set()
    for key in _segments(s3_server, storage):
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        requests |= {json.loads(line)["request"] for line in body.splitlines() if line.strip()}
    return len(requests)


def test_a_run_killed_on_s3_pays_again_only_for_its_last_flush_window(
    prefect_server: str, s3_server: S3Server, sim: SimEndpoint, tmp_path: Path
) -> None:
    rows = questions(400)
    concurrency = 4
    limits = {"limits": {"max_concurrency": concurrency, "timeout_s": 5.0}}
    folder = write_suite(tmp_path / "e", "killed", rows, sim.base_url, {"oracle": limits})
    sim.configure(answer_key=answer_key(rows), latency_ms=40)
    storage = s3_server.new_bucket()
    env = {
        **os.environ,
        "EVALFLOW_EVALS_DIR": str(folder),
        "PREFECT_API_URL": prefect_server,
        "EVALFLOW_LEASE_TTL_S": "3",
        **machine(tmp_path, "one", storage),
    }
    command = [sys.executable, "-m", "evalflow.cli", "run", "killed", "--chunk-size", "400"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while len(_segments(s3_server, storage)) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    time.sleep(0.5)  # requests in flight when it died reach the endpoint's counters
    paid = sim.stats()["by_status"]["200"]
    saved = _saved_answers(s3_server, storage)
    lost = paid - saved
    # Lost: what was in flight, and the answers of one flush window (SegmentLog: a batch of at
    # most 32, or 0.25 s of answers, whichever comes first).
    assert 0 <= lost <= concurrency + 32, (paid, saved)
    assert paid < 400  # it was killed mid-run

    time.sleep(3.5)  # the dead holder's lease expires; another machine takes the run over
    sim.configure(answer_key=answer_key(rows), latency_ms=1)
    env.update(machine(tmp_path, "two", storage))
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert sim.stats()["by_status"]["200"] == 400 - saved  # every saved answer reused


def test_two_machines_running_the_same_run_pay_each_answer_once(
    prefect_server: str, s3_server: S3Server, sim: SimEndpoint, tmp_path: Path
) -> None:
    rows = questions(600)
    limits = {"limits": {"max_concurrency": 8, "timeout_s": 5.0}}
    folder = write_suite(tmp_path / "e", "twice", rows, sim.base_url, {"oracle": limits})
    sim.configure(answer_key=answer_key(rows), latency_ms=20)
    storage = s3_server.new_bucket()
    base = {**os.environ, "EVALFLOW_EVALS_DIR": str(folder), "PREFECT_API_URL": prefect_server}
    command = [sys.executable, "-m", "evalflow.cli", "run", "twice"]
    procs = [
        subprocess.Popen(
            command,
            env={**base, **machine(tmp_path, name, storage)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("one", "two")
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert sorted(p.returncode for p in procs) == [0, 1], outs
    refused = next(err for (_, err), p in zip(outs, procs, strict=True) if p.returncode == 1)
    assert "is already running (process" in refused and "Traceback" not in refused
    assert len(refused.strip().splitlines()) == 1
    assert sim.stats()["by_status"] == {"200": 600}


def test_a_live_lease_refuses_the_run_and_an_expired_one_is_taken_over(
    prefect_server: str, evals: Path, s3_storage: str, sim: SimEndpoint
) -> None:
    project = "local/storage-lease"
    done = evaluate(suite="shared", models=["oracle"], limit=3, weave_project=project)
    lease = runs_root() / done["run_id"] / "run.lease"
    assert isinstance(lease, Remote)
    holder = {"pid": 4242, "host": "worker-7", "since": "2025-01-01 00:00:00 UTC", "token": "x"}
    lease.fs.pipe_file(lease.path, json.dumps({**holder, "expires": time.time() + 60}).encode())
    sim.reset()
    with pytest.raises(RunInProgressError, match="already running \\(process 4242 on worker-7"):
        evaluate(suite="shared", models=["oracle"], limit=3, fresh=True, weave_project=project)
    assert sim.stats()["total"] == 0
    lease.fs.pipe_file(lease.path, json.dumps({**holder, "expires": time.time() - 1}).encode())
    evaluate(suite="shared", models=["oracle"], limit=3, fresh=True, weave_project=project)
    assert sim.stats()["total"] == 3
    assert json.loads(lease.fs.cat_file(lease.path))["expires"] == 0.0  # given up at the end


def test_of_two_processes_racing_for_a_lease_exactly_one_wins(s3_storage: str) -> None:
    where = runs_root() / "race" / "run.lease"
    assert isinstance(where, Remote)
    start = threading.Barrier(8)
    outcome: list[str] = []

    def contend() -> None:
        start.wait()
        try:
            with hold_lease(where, RunInProgressError):
                outcome.append("held")
                time.sleep(1.0)
        except RunInProgressError:
            outcome.append("refused")

    threads = [threading.Thread(target=contend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcome) == ["held"] + ["refused"] * 7


def test_a_renewed_lease_outlives_its_ttl_and_is_free_once_given_up(s3_storage: str) -> None:
    where = runs_root() / "renewed" / "run.lease"
    assert isinstance(where, Remote)
    with hold_lease(where, RunInProgressError, ttl=2):
        time.sleep(3)  # past the first expiry: renewed meanwhile
        with pytest.raises(RunInProgressError), hold_lease(where, RunInProgressError, ttl=2):
            pass
    started = time.monotonic()
    with hold_lease(where, RunInProgressError, ttl=2):
        assert time.monotonic() - started < 1  # given up: taken at once, not after the TTL


def test_a_holder_that_stalls_past_its_lease_learns_it_lost_it(s3_storage: str) -> None:
    where = runs_root() / "stalled" / "run.lease"
    assert isinstance(where, Remote)
    lost: list[str] = []
    with hold_lease(where, RunInProgressError, ttl=3, on_lost=lost.append) as first:
        first._stop.set()  # its renewals stop: the lease expires
        time.sleep(3.2)
        with hold_lease(where, RunInProgressError, ttl=3):
            first._stop.clear()
            from evalflow.lease import _renew

            _renew(first)
    assert lost and "taken over by process" in lost[0]


def _answer(n: int) -> Answer:
    return Answer("m", f"r{n}", n, str(n), 0.1, 1, 1, 1, request=f"digest-{n}")


def test_journals_of_two_writers_on_s3_keep_every_answer(s3_storage: str) -> None:
    where = runs_root() / "journal" / "answers" / "m" / "0.jsonl"
    first, second = Journal(where), Journal(where)
    for n in range(100):
        (first if n % 2 else second).append([_answer(n)])
    first.close()
    second.close()
    loaded = Journal(where).load()
    assert sorted(loaded) == sorted(f"digest-{n}" for n in range(100))
    log = SegmentLog(where)
    later = _answer(7)
    later.output = "changed"
    journal = Journal(where)
    journal.append([later])
    journal.close()
    assert Journal(where).load()["digest-7"].output == "changed"  # the later answer wins
    assert log.read().count(b"\n") == 101


@pytest.mark.parametrize(
    ("storage", "says"),
    [
        ("foo://bucket/runs", "unknown storage protocol 'foo'"),
        ("s3://", "no bucket"),
        ("s3://no-such-bucket-here/runs", "the bucket 'no-such-bucket-here' does not exist"),
        ("s3://bucket/runs?secret=" + SECRET, "not in the URL"),
    ],
)
def test_a_bad_storage_url_is_one_line_and_sends_nothing(
    evals: Path, s3_server: S3Server, sim: SimEndpoint, tmp_path: Path, storage: str, says: str
) -> None:
    env = {"EVALFLOW_HOME": str(tmp_path / "h"), "EVALFLOW_STORAGE": storage}
    out = cli("run", "shared", env={**env, "AWS_SECRET_ACCESS_KEY": SECRET}, timeout=120)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "EVALFLOW_STORAGE" in lines[0] and says in lines[0], out.stderr
    assert SECRET not in out.stderr + out.stdout
    assert sim.stats()["total"] == 0


def test_an_unreachable_store_is_named_in_seconds_and_sends_nothing(
    evals: Path, s3_server: S3Server, sim: SimEndpoint, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    env = {
        "EVALFLOW_HOME": str(tmp_path / "h"),
        "EVALFLOW_STORAGE": "s3://bucket/runs",
        "AWS_ENDPOINT_URL": dead,
        "AWS_ENDPOINT_URL_S3": dead,
        "AWS_SECRET_ACCESS_KEY": SECRET,
    }
    started = time.monotonic()
    out = cli("run", "shared", env=env, timeout=120)
    assert out.returncode == 1
    assert time.monotonic() - started < 60
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "EVALFLOW_STORAGE=s3://bucket/runs cannot be used" in lines[0]
    assert "Traceback" not in out.stderr and SECRET not in out.stderr + out.stdout
    assert sim.stats()["total"] == 0


def test_a_shared_local_folder_holds_the_runs_and_the_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evalflow.runs import run_lock
    from evalflow.storage import history_root

    shared = tmp_path / "nfs"
    monkeypatch.setenv("EVALFLOW_STORAGE", f"file://{shared}")
    assert runs_root() == shared and history_root() == shared / "_history"
    with run_lock("local-run"):  # the OS lock, in the shared folder
        assert (shared / "local-run" / "run.lock").is_file()
        refused = pytest.raises(RunInProgressError, match="local-run is already running")
        with refused, run_lock("local-run"):
            pass
