"""The `evalflow` command. User mistakes print one line, without a traceback, and exit 1."""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from evalflow.errors import EvalflowError
from evalflow.home import apply_offline_environment, make_prefect_home
from evalflow.project import make_flows_importable

if TYPE_CHECKING:
    from evalflow.plan import RunPlan
    from evalflow.run_context import RunContext, RunWatch
    from evalflow.temporary_server import TemporaryServer

app = typer.Typer(
    help="evalflow: LLM evaluations as scheduled, orchestrated batch jobs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
serve_app = typer.Typer(help="Serve a local OpenAI-compatible endpoint.", no_args_is_help=True)
app.add_typer(serve_app, name="serve")


@serve_app.command("llm")
def serve_llm(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
) -> None:
    """Serve Gemma 3 270M (model id gemma-3-270m) through llama.cpp until Ctrl-C or SIGTERM."""
    from evalflow.endpoints.llm import MODEL_ID, start_llm_process
    from evalflow.errors import EndpointError

    proc, base_url = start_llm_process(host, port)
    typer.echo(f"serving {MODEL_ID} at {base_url} (Ctrl-C to stop)")
    try:
        code = proc.proc.wait()
    finally:
        proc.stop()
    raise EndpointError(
        f"the local LLM stopped by itself (exit code {code}); see EVALFLOW_HOME/logs/llm.log"
    )


@serve_app.command("sim")
def serve_sim(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8001,
    latency_ms: Annotated[float, typer.Option(help="mean latency of an answer")] = 0.0,
    jitter_ms: Annotated[float, typer.Option(help="uniform jitter around the latency")] = 0.0,
    rpm: Annotated[int | None, typer.Option(help="requests per minute limit")] = None,
    tpm: Annotated[int | None, typer.Option(help="tokens per minute limit")] = None,
    error_500: Annotated[float, typer.Option(help="fraction answered 500")] = 0.0,
    error_502: Annotated[float, typer.Option(help="fraction answered 502")] = 0.0,
    error_503: Annotated[float, typer.Option(help="fraction answered 503")] = 0.0,
    hang: Annotated[float, typer.Option(help="fraction that hang")] = 0.0,
    hang_seconds: Annotated[float, typer.Option(help="how long a hang lasts")] = 120.0,
    drop: Annotated[float, typer.Option(help="fraction of dropped connections")] = 0.0,
    malformed: Annotated[float, typer.Option(help="fraction of 200s with a broken body")] = 0.0,
    seed: Annotated[int, typer.Option(help="seed of the fault draws")] = 0,
    answer_key: Annotated[
        Path | None, typer.Option(help="JSON {prompt: answer} or JSONL {prompt, answer}")
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(help="NAME=ACCURACY, repeatable (default: oracle, sim-good, sim-half)"),
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(help="name of an environment variable whose key requests must bear"),
    ] = None,
) -> None:
    """Serve the simulated endpoint (latency, limits, faults, deterministic answers)."""
    import asyncio
    import os

    from evalflow.endpoints.sim import serve
    from evalflow.endpoints.sim_profile import SimProfile, load_answer_key, parse_model_specs

    fields: dict[str, object] = {
        "latency_ms": latency_ms,
        "jitter_ms": jitter_ms,
        "rpm": rpm,
        "tpm": tpm,
        "error_500": error_500,
        "error_502": error_502,
        "error_503": error_503,
        "hang": hang,
        "hang_seconds": hang_seconds,
        "drop": drop,
        "malformed": malformed,
        "seed": seed,
    }
    if answer_key is not None:
        fields["answer_key"] = load_answer_key(answer_key)
    else:
        typer.echo(
            'warning: no --answer-key: every model, oracle included, answers "I don\'t know." '
            "(give a JSON {prompt: answer} or JSONL {prompt, answer} file)",
            err=True,
        )
    if model:
        fields["models"] = parse_model_specs(model)
    if api_key_env:
        if not os.environ.get(api_key_env):
            raise EvalflowError(
                f"--api-key-env {api_key_env}: that environment variable is not set"
            )
        fields["api_key"] = os.environ[api_key_env]
    try:
        profile = SimProfile.model_validate(fields)
    except ValueError as exc:
        raise EvalflowError(f"invalid simulated endpoint profile: {exc}") from None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(profile, host, port, handle_signals=False))


@app.command("ask")
def ask(
    question: Annotated[
        str, typer.Argument(help="a short question")
    ] = "What is the capital of France?",
    base_url: Annotated[
        str | None,
        typer.Option(help="an OpenAI-compatible endpoint (default: start the local LLM)"),
    ] = None,
    model: Annotated[str | None, typer.Option(help="model id (default: gemma-3-270m)")] = None,
) -> None:
    """Answer one question with few-shot examples, through the real openai client."""
    from contextlib import nullcontext

    from openai import OpenAI, OpenAIError

    from evalflow.endpoints.llm import MODEL_ID, local_llm
    from evalflow.prompts import qa_messages

    with local_llm() if base_url is None else nullcontext(base_url) as url:
        client = OpenAI(base_url=url, api_key="local", max_retries=0, timeout=60)
        started = time.monotonic()
        try:
            response = client.chat.completions.create(
                model=model or MODEL_ID,
                messages=qa_messages(question),  # type: ignore[arg-type]
                max_tokens=32,
                temperature=0.0,
            )
        except OpenAIError as exc:
            raise EvalflowError(f"the endpoint {url} refused the question: {exc}") from None
        answer = (response.choices[0].message.content or "").strip()
        typer.echo(f"Q: {question}\nA: {answer}   ({time.monotonic() - started:.2f} s, {url})")


def _quiet_prefect(verbose: bool) -> None:
    """Prefect's own logs (kept by the server and shown in its UI) stay off the terminal,
    where evalflow prints progress and one line per error; --verbose shows them."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "CRITICAL")


def _progress_line(run: RunContext) -> str:
    snapshot = run.progress.snapshot()
    total = int(snapshot["total"]) or 1
    width = 30
    filled = int(width * int(snapshot["done"]) / total)
    return f"\r[{'#' * filled}{'.' * (width - filled)}] {run.progress.describe()} "


def _figures(summary: list[dict[str, object]], scorers: list[str]) -> list[dict[str, object]]:
    """The run's own figures per model: each scorer's mean [95% interval], n (rows scored),
    errors, tokens, and cost when the model's prices are known."""
    from evalflow.figures import summary_table

    return summary_table(summary, scorers)


def _use_running_stack() -> bool:
    """With no PREFECT_API_URL set and `evalflow up` running, run on the stack's Prefect server
    (the run shows in the UI already open; no temporary server to start) and its local LLM.
    Whether it does (the stack's server has just answered)."""
    from evalflow.stack import running_stack
    from evalflow.targets import LOCAL_LLM_ENV

    if os.environ.get("PREFECT_API_URL") or (stack := running_stack()) is None:
        return False
    os.environ["PREFECT_API_URL"] = stack["api_url"]
    if stack["llm_url"]:
        os.environ.setdefault(LOCAL_LLM_ENV, stack["llm_url"])
    typer.echo(f"on the local stack: {stack['api_url'].removesuffix('/api')}", err=True)
    return True


def _plan_or_explain(request: dict[str, Any]) -> RunPlan:
    """The run's plan, checked before Prefect starts (a mistake answers in seconds)."""
    from pydantic import ValidationError

    from evalflow.errors import ConfigError
    from evalflow.plan import RunRequest, plan_run
    from evalflow.runs import check_not_running

    try:
        parsed = RunRequest.model_validate(request)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'.'.join(str(p) for p in e['loc']).replace('_', '-')} {e['input']}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(problems) from None
    plan = plan_run(parsed)
    check_not_running(plan.run_id)
    return plan


def _weave_later(project: str | None) -> bool:
    """Start weave now, or, on a local Weave store (checked now), later: the first rows are
    then sent while weave is imported, and traced once it is (evalflow/early_traces.py).
    True when weave is to be started later (`_start_weave`)."""
    from evalflow import early_traces
    from evalflow.weave_setup import check_local_store, init_weave

    if check_local_store(project) and early_traces.hold():
        return True
    init_weave(project)
    return False


def _start_weave(project: str | None) -> None:
    """Start weave and trace the requests sent before (see `_weave_later`)."""
    from evalflow import early_traces
    from evalflow.weave_setup import init_weave

    try:
        early_traces.trace_held(init_weave(project))
    except BaseException:
        early_traces.drop()
        raise


def _start_prefect_early() -> threading.Thread | None:
    """With no Prefect server to use, start Prefect's temporary one now, in the background
    (through its public client, which starts it when PREFECT_API_URL is unset), while this
    process checks the endpoints and imports the flow: its start is most of a small run's wait.
    The flow's client then finds it running (join the thread first)."""
    if os.environ.get("PREFECT_API_URL"):
        return None

    def start() -> None:
        # If this fails, the flow's own client starts the server, and says why if it can't.
        with contextlib.suppress(Exception):
            from prefect.client.orchestration import get_client

            get_client(sync_client=True)

    thread = threading.Thread(target=start, name="prefect-temporary-server", daemon=True)
    thread.start()
    return thread


@contextlib.contextmanager
def _prefect_api(api_url: str | None) -> Iterator[None]:
    """Prefect's settings for the flow run of `evalflow run`, in the body: its client uses
    `api_url` (unchanged when None), and the run sends no heartbeats unless
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY is set.

    Heartbeats tell the lost-run automation that a deployment's run is alive
    (evalflow/lost_runs.py watches only runs tagged by prefect.yaml's deployments); nothing
    watches this command's own run. Prefect's heartbeat thread sleeps a second at a time and
    the flow's end waits for it: up to 1 s (0.5 s on average) of every command's tail."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        get_current_settings,
        temporary_settings,
    )

    updates: dict[Any, Any] = {}
    if api_url is not None:
        updates[PREFECT_API_URL] = api_url
    if "heartbeat_frequency" not in get_current_settings().flows.model_fields_set:
        updates[PREFECT_FLOWS_HEARTBEAT_FREQUENCY] = None  # the user set none: Prefect's default
    with temporary_settings(updates=updates):
        yield


def _call_when_ready(
    call: Callable[[], dict[str, Any]], server: TemporaryServer | None
) -> dict[str, Any]:
    """call() under `_prefect_api` for the temporary `server` (if any), once it answers.
    Prefect's settings for it and the flow engine's modules (imported by a flow's first call)
    are made while it gets ready: 0.15-0.2 s of CPU that came after its start, on the run's
    path whenever the server is ready after the rows are (a busy machine)."""
    from evalflow.temporary_server import ready_server

    expected = server.api_url if server is not None else None
    with _prefect_api(expected):
        import prefect.flow_engine
        import prefect.utilities.visualization  # noqa: F401

        api_url = ready_server(server).api_url if server is not None else None
        if api_url == expected:
            return call()
    with _prefect_api(api_url):  # started again on another port (its first was taken)
        return call()


def _flow_in_thread(
    call: Callable[[], dict[str, Any]], watcher: RunWatch, server: TemporaryServer | None
) -> dict[str, Any]:
    """The flow's result, the flow run in a thread of its own (on the temporary `server`, once
    it answers) while this one shows its progress (the run's `watcher`); the flow's error
    raised here."""
    from evalflow.run_context import watching

    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            with watching(watcher):
                outcome["result"] = _call_when_ready(call, server)
        except BaseException as exc:  # re-raised in the main thread
            outcome["error"] = exc

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    interactive = sys.stderr.isatty()
    while worker.is_alive():
        worker.join(timeout=0.5 if interactive else 5.0)
        if watcher.run is not None:
            line = _progress_line(watcher.run)
            sys.stderr.write(line if interactive else line.strip() + "\n")
            sys.stderr.flush()
    sys.stderr.write("\n")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    result = outcome["result"]
    assert isinstance(result, dict)
    return result


@contextlib.contextmanager
def _collector_paused() -> Iterator[Callable[[], None]]:
    """Python's cyclic garbage collector paused while `evalflow run` imports openai, weave,
    Prefect and the flow (a sixth of that CPU was the collector walking the new modules, taken
    from the rows asked meanwhile); the callable given, or the block's end, resumes it. What
    lives then (imported and planned) lives until the exit: frozen, no later full collection
    walks it again (gc.freeze). It is frozen uncollected: the cycles made meanwhile (about
    30,000 objects, 10 MB at 1,000 rows) are kept, as a full collection of everything imported
    took 0.25-0.43 s of CPU, taken from the rows then in flight."""
    was_enabled = gc.isenabled()
    gc.disable()
    resumed = False

    def resume() -> None:
        nonlocal resumed
        if resumed:
            return
        resumed = True
        gc.freeze()
        if was_enabled:
            gc.enable()

    try:
        yield resume
    finally:
        resume()


def _run(
    request: dict[str, Any], suite: str, verbose: bool, imports_done: Callable[[], None]
) -> tuple[dict[str, Any], RunPlan, float]:
    """`evalflow run`'s work: its flow's result, its plan and when its run started (monotonic).
    `imports_done` is called once everything the flow needs is imported."""
    from evalflow.early_answers import asking_early
    from evalflow.preflight import check_endpoints, check_prefect_api
    from evalflow.run_context import RunWatch, open_run
    from evalflow.targets import Target
    from evalflow.temporary_server import start_temporary_server

    on_stack = _use_running_stack()
    server = start_temporary_server()  # first: it starts while this process works
    if server is None and not on_stack and (api := os.environ.get("PREFECT_API_URL")):
        check_prefect_api(api)
    plan = _plan_or_explain(request)
    request["suite"] = plan.suite.name if suite.endswith((".yaml", ".yml")) else suite
    _quiet_prefect(verbose)
    prefect_starting = _start_prefect_early() if server is None else None
    check_endpoints([Target.of(s, None) for s in plan.endpoint_specs if s.endpoint != "local"])
    weave_later = _weave_later(plan.parameters.weave_project)
    # The run's id is held from here, and its rows asked while weave and Prefect get ready;
    # the flow runs this plan in this run, and its tasks take the answers.
    started = time.monotonic()
    with open_run(plan) as run, asking_early(plan, run) as early:
        early.wait_sending()
        if weave_later:
            _start_weave(plan.parameters.weave_project)
        watcher = RunWatch(run=run, opened=run, plan=plan)
        make_flows_importable()
        from flows.evaluate import evaluate

        imports_done()
        if prefect_starting is not None:
            prefect_starting.join()
        result = _flow_in_thread(lambda: evaluate(**request), watcher, server)
    return result, plan, started


@app.command("run")
def run(
    suite: Annotated[str, typer.Argument(help="suite name (evals/<name>.yaml) or a YAML path")],
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="model name, repeatable (default: the suite's)"),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="first N rows only (not a leaderboard entry)")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="dataset file to use instead (not a leaderboard entry)")
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="run on this endpoint; --model may then be any model id")
    ] = None,
    chunk_size: Annotated[int, typer.Option(help="rows per task (1 to 10,000)")] = 200,
    concurrency: Annotated[int | None, typer.Option(help="requests in flight (1 to 1024)")] = None,
    max_error_fraction: Annotated[
        float, typer.Option(help="error budget: fail past this fraction of failed rows (0 to 1)")
    ] = 0.1,
    max_tokens: Annotated[int | None, typer.Option(help="token budget of the run")] = None,
    max_cost: Annotated[
        float | None, typer.Option(help="cost budget of the run, USD (needs the models' prices)")
    ] = None,
    weave_project: Annotated[str | None, typer.Option(help="default: local/evalflow")] = None,
    retry_errors: Annotated[
        str | None,
        typer.Option(
            metavar="RUN_ID",
            help="re-run only the failed rows of that run, with its parameters",
        ),
    ] = None,
    fresh: Annotated[bool, typer.Option(help="ask again: reuse no saved answer")] = False,
    leaderboard: Annotated[
        bool, typer.Option(help="publish a partial run (--limit, --dataset) on the leaderboard")
    ] = False,
    epochs: Annotated[
        int | None, typer.Option(help="ask each row this many times (default: the suite's)")
    ] = None,
    verbose: Annotated[bool, typer.Option(help="show Prefect's logs")] = False,
) -> None:
    """Evaluate models on a suite, print the run's figures, publish the leaderboard."""
    request: dict[str, Any] = {
        "suite": suite,
        "models": model or None,
        "limit": limit,
        "chunk_size": chunk_size,
        "concurrency": concurrency,
        "base_url": base_url,
        "dataset": dataset,
        "max_error_fraction": max_error_fraction,
        "max_tokens": max_tokens,
        "max_cost": max_cost,
        "weave_project": weave_project,
        "retry_errors_of": retry_errors,
        "fresh": fresh,
        "leaderboard": leaderboard,
        "epochs": epochs,
    }
    sys.setswitchinterval(SWITCH_INTERVAL_S)  # the rows are asked while Prefect is imported
    with _collector_paused() as imports_done:
        result, plan, started = _run(request, suite, verbose, imports_done)
    from evalflow.tables import text

    typer.echo(f"run {result['run_id']} finished in {time.monotonic() - started:.1f} s")
    typer.echo(f"results: {result['folder']}")
    labels = [s.label for s in plan.suite.scorers]
    typer.echo(f"\n{plan.suite.name}, {result['scope']} (mean [95% interval], n rows scored)")
    typer.echo(text(_figures(result["summary"], labels)))
    if result["leaderboard"]:
        typer.echo(f"\nleaderboard {plan.suite.name} updated: evalflow leaderboard {suite}")
    else:
        typer.echo(
            f"\nnot on the leaderboard: a partial run ({result['scope']}); "
            f"--leaderboard publishes it"
        )


def _leader_note(verdict: dict[str, Any]) -> str:
    from evalflow.figures import p_value

    status = str(verdict["status"])
    return f"{status} (p={p_value(verdict['p'])})" if "p" in verdict else status


def _print_leaderboard(suite: str, weave_project: str | None, as_json: bool) -> None:
    import json

    from evalflow.compare import versus_leader
    from evalflow.config import load_suite
    from evalflow.evaluation import read_leaderboard
    from evalflow.figures import figure
    from evalflow.tables import text
    from evalflow.weave_setup import init_weave

    init_weave(weave_project)
    name = load_suite(suite).name if suite.endswith((".yaml", ".yml")) else suite
    table = read_leaderboard(name)
    columns = [k for k in (table[0] if table else {}) if f"{k} ci_low" in table[0]]
    verdicts = versus_leader(table, columns[0]) if columns else {}
    if as_json:
        for entry in table:
            entry["vs_leader"] = verdicts.get(entry["model"], {"status": "n/a"})
        typer.echo(json.dumps(table, indent=2, default=str))
        return
    shown = []
    for entry in table:
        row: dict[str, Any] = {"model": entry["model"]}
        for column in columns:
            row[column] = figure(
                entry[column],
                entry.get(f"{column} ci_low"),
                entry.get(f"{column} ci_high"),
                entry.get(f"{column} n"),
            )
        row["evaluations"] = entry.get("evaluations")
        row[f"vs leader ({columns[0]})" if columns else "vs leader"] = _leader_note(
            verdicts.get(entry["model"], {"status": "n/a"})
        )
        shown.append(row)
    typer.echo(f"leaderboard {name}: mean [95% interval] n=rows scored\n{text(shown)}")
    if columns:
        typer.echo(
            f"tied: no significant difference from the leader on {columns[0]} (paired test on "
            f"the rows both scored, Holm-corrected); n/a: a run's saved results are not here"
        )


@app.command("leaderboard")
def leaderboard(
    suite: Annotated[str, typer.Argument(help="suite name")],
    json_: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    weave_project: Annotated[str | None, typer.Option(help="default: local/evalflow")] = None,
) -> None:
    """Print a suite's leaderboard as Weave holds it."""
    _print_leaderboard(suite, weave_project, as_json=json_)


@app.command("failures")
def failures(
    run_id: Annotated[str, typer.Argument(help="a run id (printed by evalflow run)")],
    wrong: Annotated[bool, typer.Option(help="also the rows a scorer marked wrong")] = True,
    limit: Annotated[int, typer.Option(help="at most this many rows", min=1)] = 50,
    json_: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """A run's failed rows (kept out of its scores) and, by default, its wrong ones."""
    import json

    from evalflow.results import failed_rows
    from evalflow.tables import text

    rows = failed_rows(run_id, wrong)
    if json_:
        typer.echo(json.dumps(rows[:limit], indent=2, default=str))
        return
    shown = [{k: (str(v)[:60] if isinstance(v, str) else v) for k, v in r.items()} for r in rows]
    typer.echo(text(shown[:limit]) if shown else f"run {run_id}: no failed or wrong rows")
    if len(rows) > limit:
        typer.echo(f"... {len(rows) - limit} more (--limit, --json)")


def _suite_name(suite: str) -> str:
    from evalflow.config import load_suite

    return load_suite(suite).name if suite.endswith((".yaml", ".yml")) else suite


def _history_rows(table: Any) -> list[dict[str, Any]]:
    """The history as a person reads it: when, model, run, each scorer's mean [95% interval]
    n, tokens, latency, and cost when known."""
    from evalflow.figures import cost, scorer_figure
    from evalflow.history import scorer_labels

    labels = scorer_labels(table)
    priced = table["cost"].notna().any()
    rows = []
    for entry in table.to_dict("records"):
        row: dict[str, Any] = {
            "finished (UTC)": entry["finished"].strftime("%Y-%m-%d %H:%M"),
            "model": entry["model"],
            "run": entry["run_id"],
        }
        row.update({label: scorer_figure(entry, label) for label in labels})
        row.update({"errors": entry["errors"], "tokens": entry["tokens"]})
        row["latency_s"] = entry["mean_latency_s"]
        if priced:
            row["cost"] = cost(entry["cost"])
        rows.append(row)
    return rows


@app.command("history")
def history(
    suite: Annotated[str, typer.Argument(help="suite name (or its YAML path)")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="only this model")] = None,
    json_: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    plot: Annotated[
        Path | None,
        typer.Option(metavar="FILE.png", help="also draw each model's score over time"),
    ] = None,
) -> None:
    """The suite's finished full evaluations, oldest first: per model and run, each scorer's
    mean [95% interval] n, tokens, latency, cost (EVALFLOW_HOME/history, or
    EVALFLOW_STORAGE/_history when set)."""
    import json

    from evalflow.history import read_history
    from evalflow.tables import text

    name = _suite_name(suite)
    table = read_history(name, model)
    if plot is not None:
        from evalflow.trend import plot_history

        plot_history(table, plot, name)
    if json_:
        records = json.loads(table.to_json(orient="records", date_format="iso"))
        typer.echo(json.dumps(records, indent=2))
    elif table.empty:
        which = f" of model {model}" if model else ""
        typer.echo(f"suite {name}: no finished full evaluation{which} recorded yet")
    else:
        typer.echo(f"{name}: mean [95% interval] per scorer (n shown when it is not the run's)")
        typer.echo(text(_history_rows(table)))
    if plot is not None:
        typer.echo(f"chart: {plot}")


def _comparison_text(result: dict[str, Any], limit: int) -> str:
    """One comparison as text: the rows, a line per scorer, the rows that changed."""
    from evalflow.figures import figure, p_value
    from evalflow.tables import text

    rows = result["rows"]

    def ids(values: list[str]) -> str:
        return ", ".join(values[:limit]) + (
            f" (+{len(values) - limit})" if len(values) > limit else ""
        )

    lines = [
        f"{result['suite']}: B = {result['b']} against A = {result['a']}",
        f"rows: {rows['a']} on A, {rows['b']} on B, {rows['shared']} on both, "
        f"{rows['paired']} paired (answered on both)",
    ]
    for key, what in (
        ("only_a", "only on A"),
        ("only_b", "only on B"),
        ("failed_a", "failed on A (left out)"),
        ("failed_b", "failed on B (left out)"),
        ("input_changed", "input differs"),
    ):
        if rows[key]:
            lines.append(f"{what}: {len(rows[key])}: {ids(rows[key])}")
    table = [
        {
            "scorer": s["scorer"],
            "n": s["n"],
            "A": figure(s["mean_a"]),
            "B": figure(s["mean_b"]),
            "delta B-A [95% CI]": figure(s["delta"], s["ci_low"], s["ci_high"]),
            "p": p_value(s["p"]),
            "test": s["test"],
            "wins/ties/losses": f"{s['wins']}/{s['ties']}/{s['losses']}",
        }
        for s in result["scorers"]
    ]
    lines += ["", text(table)]
    for s in result["scorers"]:
        changed = [
            {
                "row_id": f["row_id"],
                "A -> B": f"{f['score_a']} -> {f['score_b']}",
                "input": str(f["input"])[:50],
                "output A": str(f["output_a"])[:30],
                "output B": str(f["output_b"])[:30],
            }
            for f in s["flipped"]
        ]
        if changed:
            more = f", first {limit} shown (--limit, --json)" if len(changed) > limit else ""
            lines += ["", f"{s['scorer']}: {len(changed)} rows changed{more}"]
            lines.append(text(changed[:limit]))
    return "\n".join(lines)


@app.command("compare")
def compare_runs(
    a: Annotated[str, typer.Argument(metavar="A", help="RUN_ID or RUN_ID:MODEL (the baseline)")],
    b: Annotated[str, typer.Argument(metavar="B", help="RUN_ID or RUN_ID:MODEL")],
    json_: Annotated[bool, typer.Option("--json", help="print JSON (every row)")] = False,
    bootstrap: Annotated[
        int | None,
        typer.Option(min=100, help="a paired bootstrap interval of N resamples instead of t"),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="rows listed per list")] = 20,
) -> None:
    """Paired comparison of B against A on the rows both answered, per scorer: delta B - A
    with its 95% interval, McNemar's exact p (true/false scores; paired t otherwise),
    wins/ties/losses and the rows that changed. A and B: two runs of one suite (RUN_A RUN_B:
    each model they share), or two models (RUN:M1 RUN:M2, also across runs)."""
    import json

    from evalflow.compare import compare

    results = compare(a, b, bootstrap)
    if json_:
        typer.echo(json.dumps(results, indent=2, default=str))
        return
    typer.echo("\n\n".join(_comparison_text(r, limit) for r in results))


models_app = typer.Typer(help="The model registry (evals/models.yaml).", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list() -> None:
    """List the registered models."""
    from evalflow.config import load_registry, registry_path
    from evalflow.tables import text

    path = registry_path()
    rows = [
        {"name": s.name, "model": s.model, "endpoint": s.endpoint, "rpm": s.limits.rpm}
        for s in load_registry(path).values()
    ]
    typer.echo(f"{path}" + ("" if path.exists() else " (not found: no models registered)"))
    typer.echo(text(rows, ["name", "model", "endpoint", "rpm"]))


@models_app.command("add")
def models_add(
    name: Annotated[str, typer.Argument(help="the name evalflow knows it by")],
    model: Annotated[str, typer.Option(help="the model id the endpoint knows")],
    endpoint: Annotated[str, typer.Option(help="wandb, local, or a base URL")] = "wandb",
    api_key_env: Annotated[str | None, typer.Option(help="variable holding the key")] = None,
    rpm: Annotated[int | None, typer.Option(help="requests per minute")] = None,
    max_concurrency: Annotated[int, typer.Option(help="requests in flight")] = 32,
) -> None:
    """Register a model and, when a Prefect server is reachable, announce it (a backfill starts)."""
    from evalflow.registry import add_model

    spec = add_model(
        {
            "name": name,
            "model": model,
            "endpoint": endpoint,
            "api_key_env": api_key_env,
            "limits": {"rpm": rpm, "max_concurrency": max_concurrency},
        }
    )
    typer.echo(f"registered {spec.name} ({spec.model} on {spec.endpoint})")
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        from prefect.events import emit_event

        emit_event(
            event="evalflow.model.registered",
            resource={"prefect.resource.id": f"evalflow.model.{spec.name}"},
            payload={"model": spec.name},
        )
        typer.echo("announced evalflow.model.registered: the backfill-model deployment will run")


@app.command("backfill")
def backfill(
    model: Annotated[str, typer.Argument(help="a registered model name")],
    limit: Annotated[int | None, typer.Option(help="first N rows of each suite", min=1)] = None,
    weave_project: Annotated[str | None, typer.Option(help="default: local/evalflow")] = None,
    verbose: Annotated[bool, typer.Option(help="show Prefect's logs")] = False,
) -> None:
    """Evaluate a model on every suite it has no finished evaluation for."""
    _quiet_prefect(verbose)
    make_flows_importable()
    from flows.backfill import backfill_model

    done = backfill_model(model=model, limit=limit, weave_project=weave_project)
    typer.echo(f"{model}: evaluated on {len(done)} suite(s): {', '.join(done) or 'none missing'}")


@app.command("up")
def stack_up(
    port: Annotated[int, typer.Option(help="Prefect server port")] = 4200,
    llm_port: Annotated[int, typer.Option(help="local LLM port")] = 8000,
    background: Annotated[bool, typer.Option(help="return once up")] = False,
) -> None:
    """Start the local stack: Prefect server, work pool, deployments, worker, local LLM."""
    from evalflow.stack import ui_url, up

    stack = up(port=port, llm_port=llm_port, detach=background)
    typer.echo(
        f"evalflow is up: Prefect UI at {ui_url(stack)} (deployments: nightly-evals, "
        f"evaluate, backfill-model)"
    )
    if stack.alerts is not None:
        typer.echo(f"regression alerts: {_alerts_line(stack.alerts)}")
    if background:
        typer.echo("running in the background; stop it with: evalflow down")
        os._exit(0)  # leave them running: they write to their log files, not to us
    typer.echo("Ctrl-C (or SIGTERM) stops everything")
    try:
        while all(p.proc.poll() is None for p in stack.processes):
            time.sleep(1)
        dead = [p.name for p in stack.processes if p.proc.poll() is not None]
        raise EvalflowError(f"{', '.join(dead)} stopped; see the logs in EVALFLOW_HOME/logs")
    except KeyboardInterrupt:
        typer.echo("stopping...")
    finally:
        stack.stop()


@app.command("down")
def stack_down() -> None:
    """Stop a stack started with `evalflow up --background`."""
    from evalflow.stack import DOWN_GRACE_S, down

    result = down()
    if not result.stopped:
        typer.echo("no stack is running")
        return
    late = f"still running {DOWN_GRACE_S:.0f} s after SIGTERM"
    killed = f" ({result.killed} killed: {late})" if result.killed else ""
    typer.echo(f"stopped {result.stopped} process(es){killed}")


alerts_app = typer.Typer(help="Regression alerts (a Prefect automation).", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")


def _alerts_line(alerts: Any) -> str:
    what = "created" if alerts.created else "updated"
    return (
        f"automation {alerts.automation_id} {what} on {alerts.api_url}: each "
        f"evalflow.regression.detected event posts to the webhook of block evalflow-alerts"
    )


@alerts_app.command("setup")
def alerts_setup(
    webhook: Annotated[
        str | None,
        typer.Option(
            help="the webhook URL (default: EVALFLOW_ALERT_WEBHOOK, else the server's Secret "
            "or Variable evalflow-alert-webhook)"
        ),
    ] = None,
) -> None:
    """Create or update, on the Prefect server (PREFECT_API_URL, else the running local
    stack), the notification block and the automation that posts each regression the
    nightly finds to a webhook. Safe to run again."""
    from evalflow.alerts import SETTING_NAME, WEBHOOK_ENV, setup_alerts
    from evalflow.errors import AlertSetupError

    _use_running_stack()
    alerts = setup_alerts(webhook)
    if alerts is None:
        raise AlertSetupError(
            f"no alert webhook: pass --webhook URL, or set {WEBHOOK_ENV}, or create a Prefect "
            f"Secret or Variable named {SETTING_NAME} holding the URL"
        )
    typer.echo(_alerts_line(alerts))


workers_app = typer.Typer(help="Workers on several machines.", no_args_is_help=True)
app.add_typer(workers_app, name="workers")


@workers_app.command("setup")
def workers_setup(
    periods: Annotated[
        int,
        typer.Option(min=2, help="heartbeat periods (30 s each) without news before a run is lost"),
    ] = 3,
) -> None:
    """Create or update, on the Prefect server (PREFECT_API_URL, else the running local stack),
    the automation that marks a flow run of evalflow's deployments CRASHED when its heartbeats
    stop (its worker died), so that the nightly starts it again on another worker. `evalflow
    up` does it for its own server. Safe to run again."""
    from evalflow.lost_runs import AUTOMATION_NAME, HEARTBEAT_SECONDS, setup_lost_runs

    _use_running_stack()
    automation = setup_lost_runs(periods)
    typer.echo(
        f"automation {AUTOMATION_NAME!r} ({automation}) set: a flow run of evalflow's "
        f"deployments silent for {periods * HEARTBEAT_SECONDS} s is marked CRASHED"
    )


weave_app = typer.Typer(help="What the Weave project holds.", no_args_is_help=True)
app.add_typer(weave_app, name="weave")


def _show(rows: list[dict[str, object]], as_json: bool) -> None:
    import json

    from evalflow.tables import text

    typer.echo(json.dumps(rows, indent=2, default=str) if as_json else text(rows) or "(none)")


@weave_app.command("calls")
def weave_calls(
    op: Annotated[str | None, typer.Option(help="op name contains this")] = None,
    limit: Annotated[int, typer.Option(help="at most this many", min=1)] = 20,
    json_: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    project: Annotated[str | None, typer.Option(help="default: local/evalflow")] = None,
) -> None:
    """The latest traced calls: a preview of inputs and output (all of them with --json)."""
    from evalflow.weave_setup import init_weave
    from evalflow.weave_views import call_rows

    _show(call_rows(init_weave(project), op, limit, detail=json_), json_)


@weave_app.command("objects")
def weave_objects(
    kind: Annotated[str | None, typer.Option(help="op, object, or a class (Dataset...)")] = None,
    name: Annotated[str | None, typer.Option(help="name contains this")] = None,
    limit: Annotated[int, typer.Option(help="at most this many", min=1)] = 20,
    json_: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    project: Annotated[str | None, typer.Option(help="default: local/evalflow")] = None,
) -> None:
    """Stored objects (datasets, models, evaluations, leaderboards, ops)."""
    from evalflow.weave_setup import init_weave
    from evalflow.weave_views import object_rows

    _show(object_rows(init_weave(project), kind, name, limit), json_)


def _fail(message: str) -> NoReturn:
    """One line on stderr (unless a stop signal caused it), exit code 1."""
    from evalflow.endpoints.shutdown import stop_signal

    if stop_signal() is None:
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    sys.exit(1)


# How often a thread holding the GIL hands it over to one waiting (`evalflow run`): the rows
# are asked on an event loop's thread while the main thread imports Prefect and the flow, and
# at Python's default 5 ms that loop waited up to 5 ms for the GIL at each wake-up. At 1 ms,
# 1,000 rows against a threaded endpoint on this machine were answered from the first to the
# last in 6.52 s instead of 6.63 (means of six runs each, taken in turn).
SWITCH_INTERVAL_S = 0.001

_STORAGE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT, errno.EPERM}


def _run_app() -> None:
    """The app; a user's mistake (an EvalflowError, a usage error, a full or read-only disk)
    is one line on stderr and exit code 1, without a traceback."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        sys.exit(1)
    except typer.TyperException as exc:  # typer's usage errors (click's, which it vendors)
        if type(exc).__name__ == "NoArgsIsHelpError":  # a command alone: its help
            exc.show()  # type: ignore[attr-defined]
            sys.exit(0)
        ctx = getattr(exc, "ctx", None)
        where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        _fail(f"{exc.format_message()}{where}")
    except EvalflowError as exc:
        _fail(str(exc))
    except OSError as exc:
        if exc.errno not in _STORAGE_ERRNOS:
            raise
        _fail(f"cannot write {exc.filename or 'a file'} ({exc.strerror}): free space or allow it")
    if isinstance(code, int) and code:
        sys.exit(code)


def main() -> None:
    """Console entry point (see _run_app for errors).

    SIGTERM, SIGINT and SIGHUP take the Ctrl-C path; then every process evalflow started is
    stopped and the exit code is 128 + the signal (evalflow.endpoints.shutdown)."""
    from evalflow.endpoints.shutdown import (
        exit_after_signal,
        install_stop_signals,
        note_termination,
        stop_signal,
    )

    apply_offline_environment()
    make_prefect_home()
    install_stop_signals()
    try:
        _run_app()
    except BaseException as exc:
        if not note_termination(exc) and stop_signal() is None:
            raise
    finally:
        # What is left lives until the exit: no collection walks it again at the exit.
        gc.freeze()
        signum = stop_signal()
        if signum is not None:
            exit_after_signal(signum)
    _exit_done()


def _exit_done() -> None:
    """A command that succeeded ends as the interpreter ends it, in its order: threading's
    exit hooks (Prefect drains its queued events and logs there) and the wait for non-daemon
    threads, then the exit handlers (weave's and the Weave store's flushes, logging's), then
    stdout and stderr flushed; but without the interpreter's teardown of every module and
    object after that: 0.09-0.13 s of a 1,000-row run's wall, for nothing a user keeps
    (evalflow's files are written, flushed and closed by then). Left to the interpreter where
    Python has no `threading._shutdown`."""
    import atexit

    shutdown = getattr(threading, "_shutdown", None)
    if not callable(shutdown):
        return
    shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
