"""The `evalflow` command. User mistakes print one line, without a traceback, and exit 1."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from evalflow.errors import EvalflowError
from evalflow.home import apply_offline_environment, make_prefect_home

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


def _progress_line(snapshot: dict[str, float]) -> str:
    total = int(snapshot["total"]) or 1
    done = int(snapshot["done"])
    width = 30
    filled = int(width * done / total)
    return (
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} rows  "
        f"reused {int(snapshot['reused'])}  errors {int(snapshot['errors'])}  "
        f"retries {int(snapshot['retries'])}  waiting on limits {int(snapshot['waiting'])}  "
        f"{snapshot['rows_per_s']:.1f} rows/s "
    )


@app.command("run")
def run(
    suite: Annotated[str, typer.Argument(help="suite name (evals/<name>.yaml) or a YAML path")],
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="model name, repeatable (default: the suite's)"),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="first N rows only", min=1)] = None,
    dataset: Annotated[str | None, typer.Option(help="dataset file to use instead")] = None,
    base_url: Annotated[
        str | None, typer.Option(help="run on this endpoint; --model may then be any model id")
    ] = None,
    chunk_size: Annotated[int, typer.Option(help="rows per task", min=1)] = 200,
    concurrency: Annotated[int | None, typer.Option(help="requests in flight", min=1)] = None,
    max_error_fraction: Annotated[float, typer.Option(help="error budget (fraction)")] = 0.1,
    weave_project: Annotated[str | None, typer.Option(help="default: local/evalflow")] = None,
    retry_errors: Annotated[
        str | None,
        typer.Option(
            metavar="RUN_ID",
            help="re-run only the failed rows of that run, with its parameters",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option(help="show Prefect's logs")] = False,
) -> None:
    """Evaluate models on a suite, publish the leaderboard, print it."""
    import threading

    from evalflow import progress

    if retry_errors:
        from evalflow.errors import ConfigError
        from evalflow.results import load_parameters

        saved = load_parameters(retry_errors)
        if saved.suite != suite:
            raise ConfigError(
                f"run {retry_errors} evaluated suite {saved.suite!r}, not {suite!r}: "
                f"run `evalflow run {saved.suite} --retry-errors {retry_errors}`"
            )
        weave_project = saved.weave_project
    _quiet_prefect(verbose)
    from flows.evaluate import evaluate

    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["result"] = evaluate(
                suite=suite,
                models=model,
                limit=limit,
                chunk_size=chunk_size,
                concurrency=concurrency,
                base_url=base_url,
                dataset=dataset,
                max_error_fraction=max_error_fraction,
                weave_project=weave_project,
                retry_errors_of=retry_errors,
            )
        except BaseException as exc:  # re-raised in the main thread
            outcome["error"] = exc

    started = time.monotonic()
    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    interactive = sys.stderr.isatty()
    while worker.is_alive():
        worker.join(timeout=0.5 if interactive else 5.0)
        snapshot = progress.current().snapshot()
        if snapshot["total"]:
            line = _progress_line(snapshot)
            sys.stderr.write(line if interactive else line.strip() + "\n")
            sys.stderr.flush()
    sys.stderr.write("\n")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    result = outcome["result"]
    assert isinstance(result, dict)
    typer.echo(f"run {result['run_id']} finished in {time.monotonic() - started:.1f} s")
    typer.echo(f"results: {result['folder']}")
    _print_leaderboard(suite, weave_project, as_json=False)


def _print_leaderboard(suite: str, weave_project: str | None, as_json: bool) -> None:
    import json

    from evalflow.config import load_suite
    from evalflow.evaluation import read_leaderboard
    from evalflow.tables import text
    from evalflow.weave_setup import init_weave

    init_weave(weave_project)
    name = load_suite(suite).name if suite.endswith((".yaml", ".yml")) else suite
    table = read_leaderboard(name)
    if as_json:
        typer.echo(json.dumps(table, indent=2, default=str))
    else:
        typer.echo(f"leaderboard {name}\n{text(table)}")


@app.command("leaderboard")
def leaderboard(
    suite: Annotated[str, typer.Argument(help="suite name")],
    json_: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    weave_project: Annotated[str | None, typer.Option(help="default: local/evalflow")] = None,
) -> None:
    """Print a suite's leaderboard as Weave holds it."""
    _print_leaderboard(suite, weave_project, as_json=json_)


models_app = typer.Typer(help="The model registry (evals/models.yaml).", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list() -> None:
    """List the registered models."""
    from evalflow.config import load_registry
    from evalflow.tables import text

    rows = [
        {"name": s.name, "model": s.model, "endpoint": s.endpoint, "rpm": s.limits.rpm}
        for s in load_registry().values()
    ]
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
    from evalflow.stack import down

    stopped = down()
    typer.echo(f"stopped {stopped} process(es)" if stopped else "no stack is running")


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
    """The latest traced calls."""
    from evalflow.weave_setup import init_weave
    from evalflow.weave_views import call_rows

    _show(call_rows(init_weave(project), op, limit), json_)


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


def main() -> None:
    """Console entry point: run the app, turning EvalflowError into one line on stderr.

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
        app()
    except EvalflowError as exc:
        if stop_signal() is None:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            sys.exit(1)
    except BaseException as exc:
        if not note_termination(exc) and stop_signal() is None:
            raise
    finally:
        signum = stop_signal()
        if signum is not None:
            exit_after_signal(signum)


if __name__ == "__main__":
    main()
