"""The retry policy: which errors are retried, how long the endpoint asked to wait, backoff."""

from __future__ import annotations

import asyncio
import json
import random

import httpx2
import openai
import pytest
from tenacity import Future, RetryCallState

from evalflow.config import Limits
from evalflow.retry import (
    BackoffWait,
    MalformedResponseError,
    is_fatal,
    is_retryable,
    parse_duration,
    retrying,
    server_wait,
)

URL = "http://127.0.0.1:9/v1/chat/completions"


def status_error(
    status: int, headers: dict[str, str] | None = None, body: object = None
) -> Exception:
    """The error the openai client raises for this answer."""
    request = httpx2.Request("POST", URL)
    response = httpx2.Response(status, headers=headers or {}, request=request)
    return openai.APIStatusError(f"status {status}", response=response, body=body)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2", 2.0),
        ("0.5", 0.5),
        ("1.5s", 1.5),
        ("250ms", 0.25),
        ("6m0s", 360.0),
        ("1m30s", 90.0),
        ("5m", 300.0),
        ("1h2m3s", 3723.0),
        (" 3s ", 3.0),
        ("", None),
        ("soon", None),
        ("3 days", None),
    ],
)
def test_durations_in_headers_are_read_as_seconds(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after": "2"}, 2.0),
        ({"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0s"}, 360.0),
        ({"retry-after": "later", "x-ratelimit-reset-tokens": "250ms"}, 0.25),
        ({}, None),
    ],
)
def test_the_wait_the_endpoint_asked_for(headers: dict[str, str], seconds: float | None) -> None:
    assert server_wait(status_error(429, headers)) == seconds


def test_an_error_without_a_response_asked_for_nothing() -> None:
    assert server_wait(ValueError("no response")) is None


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(status: int) -> None:
    error = status_error(status)
    assert is_retryable(error) and not is_fatal(error)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_mistakes_are_fatal_and_never_retried(status: int) -> None:
    error = status_error(status)
    assert is_fatal(error) and not is_retryable(error)


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"code": "insufficient_quota", "message": "no credit"}},
        {"code": "insufficient_quota"},
    ],
)
def test_insufficient_quota_is_fatal_even_on_a_429(body: dict[str, object]) -> None:
    error = status_error(429, body=body)
    assert is_fatal(error) and not is_retryable(error)


def test_dropped_connections_and_broken_bodies_are_retried() -> None:
    dropped = openai.APIConnectionError(request=httpx2.Request("POST", URL))
    broken = json.JSONDecodeError("Expecting value", "", 0)
    for error in (dropped, MalformedResponseError("no choices"), broken):
        assert is_retryable(error) and not is_fatal(error)
    assert not is_retryable(ValueError("a bug of ours")) and not is_fatal(ValueError("x"))


def _state(attempt: int, error: BaseException) -> RetryCallState:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    state.outcome = Future.construct(attempt, error, has_exception=True)
    return state


def test_backoff_doubles_with_full_jitter_up_to_its_maximum() -> None:
    random.seed(3)
    wait = BackoffWait(initial=0.5, maximum=30.0)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (7, 30.0), (20, 30.0)]:
        waits = [wait(_state(attempt, ValueError())) for _ in range(200)]
        assert ceiling / 2 <= min(waits) and max(waits) <= ceiling
        assert max(waits) - min(waits) > ceiling / 4  # jittered, not fixed


def test_a_wait_the_server_asked_for_wins_with_a_little_jitter_and_a_cap() -> None:
    random.seed(4)
    wait = BackoffWait(initial=0.5, maximum=30.0)
    asked = [wait(_state(1, status_error(429, {"retry-after": "2"}))) for _ in range(100)]
    assert min(asked) >= 2.0 and max(asked) <= 2.25
    huge = wait(_state(1, status_error(429, {"retry-after": "3600"})))
    assert 120.0 <= huge <= 120.25  # four times the maximum at most


async def _attempts(limits: Limits, error: Exception) -> int:
    count = 0
    with pytest.raises(type(error)):
        async for attempt in retrying(limits):
            with attempt:
                count += 1
                raise error
    return count


def test_retries_stop_after_the_attempts_and_fatal_errors_are_not_retried() -> None:
    dropped = openai.APIConnectionError(request=httpx2.Request("POST", URL))
    assert asyncio.run(_attempts(Limits(max_attempts=2), dropped)) == 2
    assert asyncio.run(_attempts(Limits(max_attempts=5), status_error(401))) == 1
