"""The `evalflow` command. User mistakes print one line, without a traceback, and exit 1."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from evalflow.errors import EvalflowError
from evalflow.home import apply_offline_environment

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
    """Serve Gemma 3 270M (model id gemma-3-270m) through llama.cpp until Ctrl-C."""
    from evalflow.endpoints.llm import MODEL_ID, start_llm_process

    proc, base_url = start_llm_process(host, port)
    typer.echo(f"serving {MODEL_ID} at {base_url} (Ctrl-C to stop)")
    try:
        proc.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        proc.stop()


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
        asyncio.run(serve(profile, host, port))


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


def main() -> None:
    """Console entry point: run the app, turning EvalflowError into one line on stderr."""
    apply_offline_environment()
    try:
        app()
    except EvalflowError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
