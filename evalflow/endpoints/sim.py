"""The simulated OpenAI-compatible endpoint: a real HTTP server on loopback.

It serves `POST /v1/chat/completions` and `GET /v1/models` with controlled latency, sliding
window rate limits, faults and deterministic answers, and counts everything at `GET /_stats`.
`POST /_stats/reset` zeroes the counters; `POST /_profile` changes the profile of a running
server (tests and benchmarks share one server that way).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import random
import sys
import time
from collections import Counter, defaultdict, deque
from pathlib import Path
from typing import Any

from aiohttp import web

from evalflow.endpoints.sim_profile import FAULT_KINDS, SimProfile
from evalflow.errors import EndpointError
from evalflow.grading import GradingRequest, read_grading_request

JSON_HEADERS = {"Content-Type": "application/json"}
# The key a request must bear, from the environment: never written into the profile file.
API_KEY_ENV = "EVALFLOW_SIM_API_KEY"


def count_tokens(text: str) -> int:
    """A rough, deterministic token count (about four characters a token)."""
    return max(1, math.ceil(len(text) / 4))


def unit_hash(*parts: object) -> float:
    """A number in [0, 1) decided only by the parts."""
    raw = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big") / 2**64


def _plain(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())


def submission_is_right(reference: str, submission: str) -> bool:
    """What the simulated judge holds true: the submission is, or holds, the reference (case,
    punctuation and spacing aside)."""
    wanted = _plain(reference)
    return bool(wanted) and f" {wanted} " in f" {_plain(submission)} "


def error_body(message: str, type_: str, code: str | None = None) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": type_, "param": None, "code": code}}
    ).encode()


class SlidingWindow:
    """Amounts accepted in the last `window` seconds, for RPM and TPM limits."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self.events: deque[tuple[float, int]] = deque()
        self.total = 0

    def _expire(self, now: float) -> None:
        while self.events and self.events[0][0] <= now - self.window:
            self.total -= self.events.popleft()[1]

    def wait_for(self, amount: int, now: float) -> float:
        """Seconds until `amount` more fits; 0.0 if it fits now."""
        self._expire(now)
        if self.total + amount <= self.limit:
            return 0.0
        freed = self.total
        for ts, size in self.events:
            freed -= size
            if freed + amount <= self.limit:
                return ts + self.window - now
        return self.window

    def add(self, amount: int, now: float) -> None:
        self.events.append((now, amount))
        self.total += amount

    def remaining(self, now: float) -> int:
        self._expire(now)
        return max(0, self.limit - self.total)

    def reset_in(self, now: float) -> float:
        self._expire(now)
        return self.events[0][0] + self.window - now if self.events else 0.0


class SimServer:
    """The state of one simulated endpoint."""

    def __init__(self, profile: SimProfile) -> None:
        self.seen: Counter[tuple[str, str]] = Counter()
        self.in_flight = 0
        self.set_profile(profile)
        self.reset_stats()

    def set_profile(self, profile: SimProfile) -> None:
        self.profile = profile
        self.rng = random.Random(profile.seed)
        self.requests = SlidingWindow(profile.rpm) if profile.rpm else None
        self.tokens = SlidingWindow(profile.tpm) if profile.tpm else None
        self.seen.clear()

    def reset_stats(self) -> None:
        self.by_model: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.projects: Counter[str] = Counter()  # OpenAI-Project headers received
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.started = time.monotonic()
        self.first_request = 0.0
        self.first_answer = 0.0
        self.last_answer = 0.0
        self.peak_in_flight = self.in_flight
        self.answered: Counter[tuple[str, str]] = Counter()  # 200s per (model, prompt)
        self.answer_span: dict[str, tuple[float, float]] = {}  # model -> first, last answer

    def stats(self) -> dict[str, Any]:
        by_status: Counter[str] = Counter()
        for counts in self.by_model.values():
            by_status.update(counts)
        return {
            "total": sum(by_status.values()),
            "by_status": dict(by_status),
            "by_model": {model: dict(c) for model, c in self.by_model.items()},
            "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens},
            "seconds": time.monotonic() - self.started,
            "answering_seconds": self.last_answer - self.first_answer,
            "first_answer_after_s": (
                self.first_answer - self.started if self.first_answer else None
            ),
            "first_request_after_s": (
                self.first_request - self.started if self.first_request else None
            ),
            "peak_in_flight": self.peak_in_flight,
            "projects": dict(self.projects),
            # per model: seconds from its first answer to its last
            "answering_seconds_by_model": {m: b - a for m, (a, b) in self.answer_span.items()},
            # answers to a (model, prompt) already answered since the reset (paid twice)
            "repeated": sum(n - 1 for n in self.answered.values() if n > 1),
        }

    def answer(self, model: str, prompt: str) -> str:
        request = read_grading_request(prompt)
        if request is not None:
            return self.grade(model, prompt, request)
        right = self.profile.answer_key.get(prompt.strip())
        if right is None:
            return "I don't know."
        if unit_hash("answer", model, prompt) < self.profile.models[model]:
            return right
        return "I don't know."

    def grade(self, model: str, prompt: str, request: GradingRequest) -> str:
        """A judge's reply to a grading request made from evalflow's template: the truth
        (`submission_is_right`) told with the model's accuracy (by a hash of the model,
        reference and submission), its opposite otherwise; `judge_garbled` of the replies,
        by a hash of the seed, model and request, carry no grade."""
        if unit_hash("garbled", self.profile.seed, model, prompt) < self.profile.judge_garbled:
            return "The submission is hard to judge without more context."
        truth = submission_is_right(request.reference, request.submission)
        told = unit_hash("judge", model, request.reference, request.submission)
        correct = truth if told < self.profile.models[model] else not truth
        if request.scale is not None:
            grade = str(request.scale if correct else 1)
        else:
            grade = "C" if correct else "I"
        said = "gives" if correct else "does not give"
        return f"The submission {said} the reference answer.\nGRADE: {grade}"

    def fault(self, model: str, prompt: str) -> str | None:
        self.seen[(model, prompt)] += 1
        u = unit_hash("fault", self.profile.seed, model, prompt, self.seen[(model, prompt)])
        edge = 0.0
        for kind in FAULT_KINDS:
            edge += getattr(self.profile, kind)
            if u < edge:
                return kind
        return None

    def limit_headers(self, now: float) -> dict[str, str]:
        headers: dict[str, str] = {}
        for label, window in (("requests", self.requests), ("tokens", self.tokens)):
            if window is not None:
                headers[f"x-ratelimit-limit-{label}"] = str(window.limit)
                headers[f"x-ratelimit-remaining-{label}"] = str(window.remaining(now))
                headers[f"x-ratelimit-reset-{label}"] = f"{window.reset_in(now):.3f}s"
        return headers

    def check_limits(self, tokens: int, now: float) -> float:
        """Seconds to wait before this request fits; 0.0 when it is accepted (and counted)."""
        wait = 0.0
        if self.requests is not None:
            wait = max(wait, self.requests.wait_for(1, now))
        if self.tokens is not None:
            wait = max(wait, self.tokens.wait_for(tokens, now))
        if wait == 0.0:
            if self.requests is not None:
                self.requests.add(1, now)
            if self.tokens is not None:
                self.tokens.add(tokens, now)
        return wait

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.first_request = self.first_request or time.monotonic()
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return await self._chat(request)
        finally:
            self.in_flight -= 1

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json(loads=json.loads)
        except (json.JSONDecodeError, UnicodeDecodeError):
            self.by_model["-"]["400"] += 1
            return web.Response(
                status=400,
                body=error_body("request body is not valid JSON", "invalid_request_error"),
                headers=JSON_HEADERS,
            )
        problem = _validate_chat(body)
        model = body.get("model") if isinstance(body, dict) else None
        model = model if isinstance(model, str) else "-"
        if problem:
            self.by_model[model]["400"] += 1
            return web.Response(
                status=400, body=error_body(problem, "invalid_request_error"), headers=JSON_HEADERS
            )
        if refused := self._refuse_key(request):
            self.by_model[model]["401"] += 1
            return refused
        if project := request.headers.get("OpenAI-Project"):
            self.projects[project] += 1
        if model not in self.profile.models:
            self.by_model[model]["404"] += 1
            message = f"The model `{model}` does not exist or you do not have access to it."
            return web.Response(
                status=404,
                body=error_body(message, "invalid_request_error", "model_not_found"),
                headers=JSON_HEADERS,
            )
        messages = body["messages"]
        prompt = _last_user_text(messages)
        prompt_tokens = sum(count_tokens(_text(m.get("content"))) + 3 for m in messages)
        answer = self.answer(model, prompt)
        completion_tokens = count_tokens(answer)
        now = time.monotonic()
        wait = self.check_limits(prompt_tokens + completion_tokens, now)
        if wait > 0:
            self.by_model[model]["429"] += 1
            headers = {**JSON_HEADERS, **self.limit_headers(now)}
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
            headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
            return web.Response(
                status=429,
                body=error_body(
                    f"Rate limit reached for {model}; try again in {wait:.3f}s.",
                    "requests",
                    "rate_limit_exceeded",
                ),
                headers=headers,
            )
        fault = self.fault(model, prompt)
        delay = self.profile.latency_ms / 1000.0
        if self.profile.jitter_ms:
            delay += self.rng.uniform(-self.profile.jitter_ms, self.profile.jitter_ms) / 1000.0
        if delay > 0:
            await asyncio.sleep(delay)
        if fault in ("error_429", "quota"):
            self.by_model[model]["429"] += 1
            code = "insufficient_quota" if fault == "quota" else "rate_limit_exceeded"
            message = (
                "You exceeded your current quota, please check your plan and billing details."
                if fault == "quota"
                else "Rate limit reached; try again shortly."
            )
            headers = {**JSON_HEADERS, "Retry-After": "1", "retry-after-ms": "100"}
            return web.Response(
                status=429,
                body=error_body(
                    message, "insufficient_quota" if fault == "quota" else "requests", code
                ),
                headers=headers,
            )
        if fault is not None and fault.startswith("error_"):
            status = int(fault.removeprefix("error_"))
            self.by_model[model][str(status)] += 1
            return web.Response(
                status=status,
                body=error_body(f"The server had an error ({status}).", "server_error"),
                headers=JSON_HEADERS,
            )
        if fault == "hang":
            self.by_model[model]["hang"] += 1
            await asyncio.sleep(self.profile.hang_seconds)
            return web.Response(status=504, body=error_body("hung", "server_error"))
        if fault == "drop":
            self.by_model[model]["drop"] += 1
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        headers = {**JSON_HEADERS, **self.limit_headers(now)}
        if fault == "malformed":
            self.by_model[model]["malformed"] += 1
            return web.Response(
                status=200, body=b'{"id": "chatcmpl-broken", "choices": [', headers=headers
            )
        self.by_model[model]["200"] += 1
        self.first_answer = self.first_answer or time.monotonic()
        self.last_answer = time.monotonic()
        self.answered[(model, prompt)] += 1
        first = self.answer_span.get(model, (self.last_answer, 0.0))[0]
        self.answer_span[model] = (first, self.last_answer)
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        payload = {
            "id": f"chatcmpl-sim-{int(unit_hash(model, prompt, time.monotonic()) * 1e15)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return web.Response(status=200, body=json.dumps(payload).encode(), headers=headers)

    def _refuse_key(self, request: web.Request) -> web.Response | None:
        """A 401 when the profile wants a key and the request bears another."""
        if self.profile.api_key is None:
            return None
        auth = request.headers.get("Authorization", "")
        if auth == f"Bearer {self.profile.api_key}":
            return None
        sent = auth.removeprefix("Bearer ")
        message = "Incorrect API key provided" + (f": {sent}." if self.profile.echo_key else ".")
        return web.Response(
            status=401,
            body=error_body(message, "invalid_request_error", "invalid_api_key"),
            headers=JSON_HEADERS,
        )

    async def models(self, request: web.Request) -> web.Response:
        if refused := self._refuse_key(request):
            return refused
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "evalflow-sim"}
            for name in self.profile.models
        ]
        return web.json_response({"object": "list", "data": data})

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def post_reset(self, request: web.Request) -> web.Response:
        self.reset_stats()
        return web.json_response(self.stats())

    async def post_profile(self, request: web.Request) -> web.Response:
        changes = await request.json()
        merged = {**self.profile.model_dump(), **changes}
        try:
            profile = SimProfile.model_validate(merged)
        except ValueError as exc:
            return web.Response(status=400, body=error_body(str(exc), "invalid_request_error"))
        self.set_profile(profile)
        self.reset_stats()
        return web.json_response({"ok": True})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/_stats", self.get_stats)
        app.router.add_post("/_stats/reset", self.post_reset)
        app.router.add_post("/_profile", self.post_profile)
        return app


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _text(message.get("content"))
    return ""


def _validate_chat(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            return f"messages[{i}] must be an object with a 'role'"
    if body.get("stream"):
        return "streaming is not supported by the simulated endpoint"
    return None


async def serve(profile: SimProfile, host: str, port: int, handle_signals: bool = True) -> None:
    """Serve until cancelled; print `listening on URL` once the socket is bound.

    With handle_signals, SIGINT and SIGTERM end it (aiohttp's GracefulExit); without, the
    caller's signal handlers stay in place (the CLI's, evalflow.endpoints.shutdown)."""
    runner = web.AppRunner(SimServer(profile).app(), access_log=None, handle_signals=handle_signals)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise EndpointError(
            f"cannot listen on {host}:{port} ({exc.strerror}); choose another port with --port"
        ) from None
    sockets = getattr(site._server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    print(f"listening on http://{host}:{bound}/v1", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the server process: `python -m evalflow.endpoints.sim --profile FILE`."""
    parser = argparse.ArgumentParser(prog="evalflow-sim")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--profile", type=Path, required=True, help="a JSON SimProfile")
    args = parser.parse_args(argv)
    profile = SimProfile.model_validate_json(args.profile.read_text(encoding="utf-8"))
    if os.environ.get(API_KEY_ENV):
        profile = profile.model_copy(update={"api_key": os.environ[API_KEY_ENV]})
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(serve(profile, args.host, args.port))
    except EndpointError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
