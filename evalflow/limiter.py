"""In-process limits per endpoint: requests and tokens per minute, and an adaptive concurrency cap.

Prefect runs async tasks each in its own event loop (and sync tasks in threads), so the
limiter is shared by threads and event loops alike: state under a threading.Lock, waiters
woken with `call_soon_threadsafe` on their own loop. Plain Python, no Prefect.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass

from evalflow.config import Limits


class PaceGate:
    """Spaces out an amount per minute evenly (no bursts), so a sliding-window limit on the
    endpoint's side is never exceeded. Reservations are made up front and settled later."""

    def __init__(self, per_minute: float) -> None:
        self.interval = 60.0 / per_minute
        self._next = 0.0
        self._lock = threading.Lock()

    def reserve(self, amount: float) -> float:
        """Reserve `amount`; return the seconds to wait before using it."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + amount * self.interval
            return start - now

    def settle(self, delta: float) -> None:
        """Correct an earlier reservation by `delta` (actual minus estimated)."""
        with self._lock:
            self._next = max(self._next + delta * self.interval, time.monotonic() - self.interval)


class AdaptiveConcurrency:
    """A semaphore for threads and event loops whose limit shrinks on 429s and grows back (AIMD)."""

    def __init__(
        self, maximum: int, minimum: int = 1, decrease: float = 0.7, cooldown_s: float = 1.0
    ):
        self.maximum = maximum
        self.minimum = min(minimum, maximum)
        self.limit = maximum
        self.in_flight = 0
        self.decrease = decrease
        self.cooldown_s = cooldown_s
        self._successes = 0
        self._last_decrease = -1e9
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()
        self._lock = threading.Lock()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        with self._lock:
            if self.in_flight < self.limit and not self._waiters:
                self.in_flight += 1
                return
            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, future))
        try:
            await future
        except asyncio.CancelledError:
            with self._lock:
                try:
                    self._waiters.remove((loop, future))
                    handed_over = False
                except ValueError:
                    handed_over = True
            if handed_over and future.done() and not future.cancelled():
                self.release()
            raise

    def release(self) -> None:
        with self._lock:
            self.in_flight -= 1
            self._wake()

    def _wake(self) -> None:
        while self.in_flight < self.limit and self._waiters:
            loop, future = self._waiters.popleft()
            self.in_flight += 1
            try:
                loop.call_soon_threadsafe(self._hand_over, future)
            except RuntimeError:  # that loop is closed: its waiter is gone
                self.in_flight -= 1

    def _hand_over(self, future: asyncio.Future[None]) -> None:
        if future.cancelled():
            self.release()
        else:
            future.set_result(None)

    def on_rate_limited(self) -> None:
        """A 429: shrink the cap, at most once per cooldown (one episode, one decrease)."""
        with self._lock:
            self._successes = 0  # the run of clean answers is broken, cut or not
            now = time.monotonic()
            if now - self._last_decrease >= self.cooldown_s:
                self.limit = max(self.minimum, int(self.limit * self.decrease))
                self._last_decrease = now

    def on_success(self) -> None:
        """A clean answer: after `limit` of them in a row, grow the cap by one."""
        with self._lock:
            if self.limit >= self.maximum:
                return
            self._successes += 1
            if self._successes >= self.limit:
                self.limit += 1
                self._successes = 0
                self._wake()


@dataclass
class Slot:
    """A request's place under the limits; settle its token estimate once usage is known."""

    limiter: EndpointLimiter
    estimated_tokens: int

    def settle(self, actual_tokens: int) -> None:
        if self.limiter.tokens is not None:
            self.limiter.tokens.settle(actual_tokens - self.estimated_tokens)


class EndpointLimiter:
    """Every limit of one endpoint (and model), shared by all tasks of this process."""

    def __init__(self, limits: Limits) -> None:
        self.requests = PaceGate(limits.rpm) if limits.rpm else None
        self.tokens = PaceGate(limits.tpm) if limits.tpm else None
        self.concurrency = AdaptiveConcurrency(limits.max_concurrency)

    def slot(self, estimated_tokens: int) -> SlotHold:
        """`async with limiter.slot(tokens) as slot:` a request's place under every limit."""
        return SlotHold(self, estimated_tokens)

    async def _take(self, estimated_tokens: int) -> None:
        await self.concurrency.acquire()
        try:
            delay = 0.0
            if self.requests is not None:
                delay = max(delay, self.requests.reserve(1))
            if self.tokens is not None:
                delay = max(delay, self.tokens.reserve(estimated_tokens))
            if delay > 0:
                await asyncio.sleep(delay)
        except BaseException:
            self.concurrency.release()
            raise


class SlotHold:
    """Holds a place under the limiter's limits from `async with` until its end (a class, not
    a generator-based context manager: it is entered once per request)."""

    __slots__ = ("_estimate", "_limiter")

    def __init__(self, limiter: EndpointLimiter, estimated_tokens: int) -> None:
        self._limiter = limiter
        self._estimate = estimated_tokens

    async def __aenter__(self) -> Slot:
        await self._limiter._take(self._estimate)
        return Slot(self._limiter, self._estimate)

    async def __aexit__(self, *exc: object) -> None:
        self._limiter.concurrency.release()


_limiters: dict[tuple[str, str, str], EndpointLimiter] = {}
_registry_lock = threading.Lock()


def limiter_for(endpoint: str, model: str, limits: Limits) -> EndpointLimiter:
    """The process-wide limiter of (endpoint, model id) under these limits."""
    with _registry_lock:
        key = (endpoint, model, limits.model_dump_json())
        if key not in _limiters:
            _limiters[key] = EndpointLimiter(limits)
        return _limiters[key]


def estimate_tokens(messages: list[dict[str, str]], max_tokens: int | None) -> int:
    """Prompt tokens (about four characters each) plus the answer's allowance."""
    prompt = sum(len(m.get("content", "")) // 4 + 4 for m in messages)
    return prompt + (max_tokens or 16)
