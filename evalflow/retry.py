"""The retry policy, owned by tenacity (the openai client's own retries are off).

Retry 408, 409, 429, 5xx, timeouts, dropped connections and malformed bodies, with jittered
exponential backoff that honours Retry-After, retry-after-ms and x-ratelimit-reset-*; bounded
by attempts and by total time. Never retry 400, 401, 403, 404, 422 or insufficient_quota.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

import openai
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
)

from evalflow.config import Limits
from evalflow.errors import MalformedResponseError

RETRYABLE_STATUS = {408, 409, 429}
_DURATION = re.compile(
    r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?"
)


def is_fatal(exc: BaseException) -> bool:
    """An error no retry can fix: the request, key, model or quota is wrong."""
    if isinstance(exc, openai.APIStatusError):
        if _error_code(exc) == "insufficient_quota":
            return True
        return exc.status_code not in RETRYABLE_STATUS and exc.status_code < 500
    return False


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIStatusError):
        return not is_fatal(exc)
    return isinstance(
        exc, openai.APIConnectionError | MalformedResponseError | json.JSONDecodeError
    )


def _error_code(exc: openai.APIStatusError) -> str | None:
    body: Any = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("code"), str):
            return str(inner["code"])
        if isinstance(body.get("code"), str):
            return str(body["code"])
    return None


def parse_duration(text: str) -> float | None:
    """'1.5s', '6m0s', '250ms', '2' -> seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    match = _DURATION.fullmatch(text)
    if not match or not any(match.groups()):
        return None
    h, m, s, ms = (float(g) if g else 0.0 for g in match.groups())
    return h * 3600 + m * 60 + s + ms / 1000


def server_wait(exc: BaseException) -> float | None:
    """How long the endpoint asked us to wait, from its headers, if it said."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    if (after := headers.get("retry-after")) is not None and (secs := parse_duration(after)):
        return secs
    resets = [
        parse_duration(headers[name])
        for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
        if name in headers
    ]
    found = [r for r in resets if r is not None]
    return max(found) if found else None


class BackoffWait:
    """Exponential backoff with full jitter; a server's own wait wins when it gives one."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0) -> None:
        self.initial = initial
        self.maximum = maximum

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = server_wait(exc) if exc is not None else None
        if asked is not None:
            return min(asked, self.maximum * 4) + random.uniform(0, 0.25)
        ceiling = min(self.maximum, self.initial * 2 ** (state.attempt_number - 1))
        return random.uniform(ceiling / 2, ceiling)


def retrying(limits: Limits) -> AsyncRetrying:
    """A fresh tenacity controller for one row."""
    return AsyncRetrying(
        retry=retry_if_exception(is_retryable),
        stop=stop_after_attempt(limits.max_attempts) | stop_after_delay(limits.max_retry_s),
        wait=BackoffWait(),
        reraise=True,
    )
