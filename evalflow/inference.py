"""Answer a chunk of rows with one model: concurrent, limited, retried, traced.

One AsyncOpenAI client per call of `answer_chunk` (so per event loop) on openai's aiohttp
transport (a request costs 0.86 ms of CPU there against 1.42 ms on its default httpx pool,
measured against the simulated endpoint; proxies from the environment still apply), each
response's headers acknowledged at once (evalflow/patches/openai_transport.py), the
client's own retries off, tenacity around each row, the process-wide limiter of the endpoint
around each request. A row that still fails is kept with its error class; a fatal error (bad
key, unknown model, no quota) stops the chunk at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeVar

import httpx2
import openai
from openai.types.chat import ChatCompletion

from evalflow import early_traces
from evalflow.config import Generation, ModelSpec
from evalflow.dataset import Row
from evalflow.errors import BudgetStop, EvalflowError, FatalRequestError, StorageError
from evalflow.limiter import Slot, SlotHold, estimate_tokens, limiter_for
from evalflow.patches.openai import skip_plain_chat_transform
from evalflow.patches.openai_transport import http_client
from evalflow.retry import MalformedResponseError, is_fatal, retrying
from evalflow.run_context import RunContext
from evalflow.storage import Location, Remote, SegmentLog
from evalflow.targets import LOCAL_LLM_ENV, Target
from evalflow.tls import ssl_context

__all__ = [
    "LOCAL_LLM_ENV",
    "Answer",
    "Asker",
    "Journal",
    "Target",
    "answer_chunk",
    "gather_in_order",
    "request_digest",
]
T = TypeVar("T")


@dataclass
class Answer:
    """What one model answered to one row, or why it could not."""

    model: str
    row_id: str
    index: int
    output: str | None
    latency_s: float
    prompt_tokens: int
    completion_tokens: int
    attempts: int
    error_class: str | None = None
    error: str | None = None
    request: str = ""  # the digest of the request (request_digest)
    epoch: int = 0  # which of the row's repeated samples (a suite's epochs)


_ANSWER_FIELDS = tuple(f.name for f in fields(Answer))


def _fields(answer: Answer) -> dict[str, Any]:
    """What `dataclasses.asdict` gives for an Answer (its fields are plain values), without
    its deep copy of every value."""
    return {name: getattr(answer, name) for name in _ANSWER_FIELDS}


class Journal:
    """Answers saved as they arrive (JSON lines), keyed by the digest of the request that was
    sent, so a run started again reuses an answer only for the identical request. On local
    storage one file, appended and flushed per answer; on remote storage (no append) a folder
    of small objects, one per batch of answers (storage.SegmentLog)."""

    def __init__(self, path: Location) -> None:
        self.path = path
        self._handle: BinaryIO | None = None
        self._segments = SegmentLog(path) if isinstance(path, Remote) else None

    def load(self) -> dict[str, Answer]:
        """Every complete line's answer by request digest (a line cut by a crash or a full
        disk is skipped; a later answer to the same request wins)."""
        answers: dict[str, Answer] = {}
        try:
            data = self._segments.read() if self._segments else self._local().read_bytes()
        except FileNotFoundError:
            return answers
        except OSError as exc:
            raise StorageError(f"cannot read the journal {self.path} ({exc.strerror})") from None
        for line in data.split(b"\n"):
            try:
                answer = Answer(**json.loads(line))
            except (json.JSONDecodeError, TypeError, UnicodeDecodeError):
                continue  # cut short by a crash or a full disk, or from an older evalflow
            if answer.request:
                answers[answer.request] = answer
        return answers

    def _local(self) -> Path:
        assert isinstance(self.path, Path)
        return self.path

    def _open(self) -> BinaryIO:
        path = self._local()
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+b")
        size = handle.seek(0, os.SEEK_END)
        if size:
            handle.seek(size - 1)
            if handle.read(1) != b"\n":  # a line cut short: end it, so the next one is whole
                handle.write(b"\n")
        return handle

    def append(self, answers: list[Answer]) -> None:
        """Write and flush the answers: a crash after this keeps them. A failed write (disk
        full, read-only) is a StorageError: the run must stop, as no answer could be kept."""
        data = "".join(json.dumps(_fields(a)) + "\n" for a in answers).encode()
        if self._segments is not None:  # written by its thread, within a fraction of a second
            self._segments.append(data)
            return
        try:
            if self._handle is None:
                self._handle = self._open()
            self._handle.write(data)
            self._handle.flush()
        except OSError as exc:
            self.close()
            raise StorageError(
                f"cannot save answers to {self.path} ({exc.strerror}): the run stopped; every "
                f"answer saved before is kept. Free space (or make EVALFLOW_HOME writable) and "
                f"run the same command again"
            ) from None

    def close(self) -> None:
        """Close the file, or write the answers still buffered (StorageError if it fails)."""
        if self._segments is not None:
            self._segments.close()
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None


def request_digest(
    spec: ModelSpec, messages: list[dict[str, str]], params: dict[str, Any], epoch: int = 0
) -> str:
    """What identifies a request: model id, endpoint, messages, generation parameters, epoch."""
    sent = {
        "model": spec.model,
        "endpoint": spec.endpoint_key,
        "messages": messages,
        "generation": params,
        "epoch": epoch,
    }
    return hashlib.sha256(json.dumps(sent, sort_keys=True).encode()).hexdigest()


def _fatal(target: Target, exc: openai.APIStatusError) -> FatalRequestError:
    body: Any = exc.body
    inner = body.get("error", body) if isinstance(body, dict) else None
    message = inner.get("message") if isinstance(inner, dict) else None
    said = target.redact(str(message or exc.message)).rstrip(".")
    return FatalRequestError(
        f"model {target.spec.name!r} at {target.base_url} refused the request "
        f"({exc.status_code}): {said}. Not retried: fix the key, model id or quota."
    )


Kind = Literal["answer", "judge"]
# The progress counters each kind of request moves: done, reused, failed.
_COUNTERS: dict[str, tuple[str, str, str]] = {
    "answer": ("done", "reused", "errors"),
    "judge": ("judged", "judge_reused", "judge_errors"),
}


class Asker:
    """Asks one model, request by request, for a chunk: one AsyncOpenAI client (made when the
    first request must be sent), the journal's saved answers, the run's budget and progress.

    An answer in the journal is reused when its request (request_digest, the epoch included)
    is identical, it did not fail, and `reusable` accepts it. A judge's requests (`kind`) count
    apart in the run's progress, and their failures stay out of the run's error budget (they
    are its scorer's errors). Use it as an async context manager, in one event loop."""

    def __init__(
        self,
        target: Target,
        generation: Generation,
        suite: str,
        run: RunContext,
        journal: Journal | None = None,
        *,
        kind: Kind = "answer",
        reusable: Callable[[Answer], bool] | None = None,
        attributes: dict[str, str] | None = None,
    ) -> None:
        self.target = target
        self.generation = generation
        self.params = generation.model_dump(exclude_none=True)
        self.suite = suite
        self.run = run
        self.journal = journal
        self.kind = kind
        self.reusable = reusable
        self.attributes = attributes
        spec = target.spec
        self._limiter = limiter_for(target.base_url, spec.model, spec.limits)
        # Sent with every request (as the client's default is): weave's trace then shows the
        # timeout, not the SDK's NOT_GIVEN default, which it encodes through every serializer.
        self._request_params: dict[str, Any] = {"timeout": spec.limits.timeout_s, **self.params}
        self._saved: dict[str, Answer] = {}
        self._client: openai.AsyncOpenAI | None = None
        self._stack = contextlib.AsyncExitStack()
        self._connecting: asyncio.Lock | None = None

    async def __aenter__(self) -> Asker:
        self._connecting = asyncio.Lock()
        if self.journal is not None and not self.run.fresh:
            self._saved = self.journal.load()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._stack.aclose()
        finally:
            if self.journal is not None:
                self.journal.close()

    async def _connected(self) -> openai.AsyncOpenAI:
        assert self._connecting is not None, "use the Asker as an async context manager"
        async with self._connecting:
            return await self._connect()

    async def _connect(self) -> openai.AsyncOpenAI:
        if self._client is None:
            skip_plain_chat_transform()
            limits = self.target.spec.limits
            http = http_client(
                httpx2.Limits(
                    max_connections=limits.max_concurrency,
                    max_keepalive_connections=limits.max_concurrency,
                ),
                limits.timeout_s,
                ssl_context(),
            )
            self._client = await self._stack.enter_async_context(
                openai.AsyncOpenAI(
                    base_url=self.target.base_url,
                    api_key=self.target.api_key(),
                    max_retries=0,
                    timeout=limits.timeout_s,
                    http_client=http,
                    default_headers=self.target.headers(),
                )
            )
        return self._client

    def saved(self, row: Row, messages: list[dict[str, str]], epoch: int = 0) -> Answer | None:
        """The journal's answer to this very request, if it may be reused."""
        digest = request_digest(self.target.spec, messages, self.params, epoch)
        return self._reusable(row, digest, epoch)

    def _reusable(self, row: Row, digest: str, epoch: int) -> Answer | None:
        found = self._saved.get(digest)
        if found is None or found.error is not None:
            return None
        if self.reusable is not None and not self.reusable(found):
            return None
        # A reused answer belongs to this row (its id and position may have changed).
        return replace(found, row_id=row.id, index=row.index, epoch=epoch)

    async def ask(self, row: Row, messages: list[dict[str, str]], epoch: int = 0) -> Answer:
        """The answer to one request: reused from the journal, else asked (and journaled)."""
        digest = request_digest(self.target.spec, messages, self.params, epoch)
        reused = self._reusable(row, digest, epoch)
        if reused is not None:
            done, reused_counter, _ = _COUNTERS[self.kind]
            self.run.progress.add(**{done: 1, reused_counter: 1})
            return reused
        client = await self._connected()
        answer = await self._answer(client, row, messages, digest, epoch)
        if self.journal is not None and answer.error is None:
            self.journal.append([answer])
        failed = answer.error is not None
        if failed and answer.error_class != "BudgetStop" and self.kind == "answer":
            self.run.budget.fail()
        done, _, errors = _COUNTERS[self.kind]
        self.run.progress.add(**{done: 1, errors: failed})
        return answer

    async def _answer(
        self,
        client: openai.AsyncOpenAI,
        row: Row,
        messages: list[dict[str, str]],
        request: str,
        epoch: int,
    ) -> Answer:
        """Send one request under the endpoint's limits, retried; a failed one is kept with
        its error class, a fatal one raises FatalRequestError."""
        target, run, limiter = self.target, self.run, self._limiter
        spec = target.spec
        estimate = estimate_tokens(messages, self.generation.max_tokens)
        attributes: dict[str, Any] = {
            "evalflow.suite": self.suite,
            "evalflow.model": spec.name,
            "evalflow.row_id": row.id,
            "evalflow.epoch": epoch,
            **(self.attributes or {}),
        }
        attempts = 0
        started = time.monotonic()
        try:
            async for attempt in retrying(spec.limits):
                with attempt:
                    attempts += 1
                    if attempts > 1:
                        run.progress.add(retries=1)
                    async with _Waiting(limiter.slot(estimate), run) as slot:
                        if reason := run.budget.exceeded():  # checked once a slot is ours
                            attempts -= 1
                            raise BudgetStop(f"not sent: past {reason}")
                        sent = time.monotonic()
                        try:
                            response = await _create(
                                client, attributes, spec.model, messages, self._request_params
                            )
                        except openai.RateLimitError:
                            limiter.concurrency.on_rate_limited()
                            raise
                        if not response.choices or response.choices[0].message is None:
                            raise MalformedResponseError("no choices in the answer")
                        usage = response.usage
                        tokens = usage.total_tokens if usage else estimate
                        slot.settle(tokens)
                        prompt = usage.prompt_tokens if usage else 0
                        completion = usage.completion_tokens if usage else 0
                        run.budget.spend(tokens, spec.cost_of(prompt, completion) or 0.0)
                        limiter.concurrency.on_success()
                        return Answer(
                            model=spec.name,
                            row_id=row.id,
                            index=row.index,
                            output=response.choices[0].message.content or "",
                            latency_s=time.monotonic() - sent,
                            prompt_tokens=prompt,
                            completion_tokens=completion,
                            attempts=attempts,
                            request=request,
                            epoch=epoch,
                        )
        except openai.APIStatusError as exc:
            if is_fatal(exc):
                raise _fatal(target, exc) from None
            failure: BaseException = exc
        except (
            openai.APIConnectionError,
            MalformedResponseError,
            json.JSONDecodeError,
            BudgetStop,
        ) as exc:
            failure = exc
        return Answer(
            model=spec.name,
            row_id=row.id,
            index=row.index,
            output=None,
            latency_s=time.monotonic() - started,
            prompt_tokens=0,
            completion_tokens=0,
            attempts=attempts,
            error_class=type(failure).__name__,
            error=target.redact(str(failure))[:500],
            request=request,
            epoch=epoch,
        )


async def _create(
    client: openai.AsyncOpenAI,
    attributes: dict[str, Any],
    model: str,
    messages: list[dict[str, str]],
    params: dict[str, Any],
) -> ChatCompletion:
    """The chat completion, traced in Weave with `attributes`: through weave's wrapper, or, sent
    before weave is ready, held and traced once it is (evalflow/early_traces.py)."""
    if early_traces.holding():
        response: ChatCompletion = await early_traces.create(
            client.chat.completions, attributes, model=model, messages=messages, **params
        )
        return response
    import weave  # a lookup once imported (a task's init_weave, or evalflow run's)

    with weave.attributes(attributes):
        return await client.chat.completions.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]
            **params,
        )


async def gather_in_order(coroutines: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run coroutines concurrently; their results in order. The first fatal error (an
    EvalflowError first) cancels the others and is raised alone."""
    results: list[T] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(c) for c in coroutines]
    except BaseExceptionGroup as group_error:
        raise _first_error(group_error) from None
    results = [task.result() for task in tasks]
    return results


async def answer_chunk(
    rows: list[Row],
    target: Target,
    messages: list[list[dict[str, str]]],
    generation: Generation,
    suite: str,
    run: RunContext | None = None,
    journal: Journal | None = None,
    *,
    epochs: list[int] | None = None,
    kind: Kind = "answer",
    reusable: Callable[[Answer], bool] | None = None,
    attributes: dict[str, str] | None = None,
) -> list[Answer]:
    """Answers to every request of the chunk, in order: one per row (a row may come several
    times, once per epoch, `epochs` giving each request's), asked concurrently (Asker)."""
    run = run or RunContext("adhoc")
    epochs = epochs if epochs is not None else [0] * len(rows)
    asker = Asker(
        target,
        generation,
        suite,
        run,
        journal,
        kind=kind,
        reusable=reusable,
        attributes=attributes,
    )
    async with asker:
        return await gather_in_order(
            [
                asker.ask(row, msgs, epoch)
                for row, msgs, epoch in zip(rows, messages, epochs, strict=True)
            ]
        )


class _Waiting:
    """A slot under the endpoint's limits; the request counts as waiting until it holds one."""

    __slots__ = ("_hold", "_run")

    def __init__(self, hold: SlotHold, run: RunContext) -> None:
        self._hold = hold
        self._run = run

    async def __aenter__(self) -> Slot:
        self._run.progress.add(waiting=1)
        try:
            return await self._hold.__aenter__()
        finally:
            self._run.progress.add(waiting=-1)

    async def __aexit__(self, *exc: object) -> None:
        await self._hold.__aexit__(*exc)


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The first EvalflowError in a task group's failure, else its first error."""
    fatal = group.subgroup(EvalflowError)
    found: BaseException = fatal if fatal is not None else group
    while isinstance(found, BaseExceptionGroup):
        found = found.exceptions[0]
    return found
