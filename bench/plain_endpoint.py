"""A plain OpenAI-compatible endpoint on the standard library: a thread per request
(http.server's ThreadingHTTPServer), a fixed latency, answers from an answer key.

    uv run python -m bench.plain_endpoint --port 8011 --answer-key key.json [--latency-ms 200]

The kind of server whose CPU competes with the client on one machine, as a user's local
llama.cpp or vLLM does (unlike the simulated endpoint, which is asyncio in one thread). It
counts what it answered at `GET /_stats` (`answered`, `answering_seconds` from the first answer
to the last, `first_request_after_s` and `first_answer_after_s` since the last reset, and
`in_flight_early` and `in_flight_later`: the mean number of requests it held in the first
EARLY_S seconds after the first request, and from then to the last answer) and zeroes them at
`POST /_stats/reset`. A client that keeps 32 requests in flight shows 32 in both; one whose
process is busy elsewhere (importing, say) is slow to send the next request after an answer,
and shows fewer.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

EARLY_S = 3.0  # the start of the loop, when a client may still be importing or starting


def mean_in_flight(sent: list[float], answered: list[float], start: float, end: float) -> float:
    """The mean number of requests received and not yet answered over [start, end)."""
    if end <= start:
        return 0.0
    changes = sorted([(t, 1) for t in sent] + [(t, -1) for t in answered])
    held, area, last = 0, 0.0, start
    for t, step in changes:
        if t >= end:
            break
        if t > start:
            area += held * (t - last)
            last = t
        held += step
    area += held * (end - last)
    return area / (end - start)


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.reset_at = time.monotonic()
        self.sent: list[float] = []  # when each request came, when each answer went
        self.answers: list[float] = []

    def request(self) -> None:
        with self.lock:
            self.sent.append(time.monotonic())

    def answer(self) -> None:
        with self.lock:
            self.answers.append(time.monotonic())

    def stats(self) -> dict[str, Any]:
        with self.lock:
            start = self.sent[0] if self.sent else 0.0
            first, last = (self.answers[0], self.answers[-1]) if self.answers else (0.0, 0.0)
            early_end = min(last, start + EARLY_S)
            return {
                "in_flight_early": mean_in_flight(self.sent, self.answers, start, early_end),
                "in_flight_later": mean_in_flight(self.sent, self.answers, early_end, last),
                "answered": len(self.answers),
                "answering_seconds": last - first,
                "first_answer_after_s": first - self.reset_at if self.answers else None,
                "first_request_after_s": start - self.reset_at if self.sent else None,
            }


def handler(key: dict[str, str], latency_s: float, counts: Counts) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, body: dict[str, Any], status: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.endswith("/models"):
                self._send({"object": "list", "data": [{"id": "oracle", "object": "model"}]})
            elif self.path == "/_stats":
                self._send(counts.stats())
            else:
                self._send({"error": {"message": "not found"}}, 404)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/_stats/reset":
                counts.reset()
                self._send({})
                return
            counts.request()
            body = json.loads(raw)
            question = str(body["messages"][-1]["content"]).strip()
            time.sleep(latency_s)
            answer = key.get(question, "I don't know.")
            counts.answer()
            self._send(
                {
                    "id": "plain",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body.get("model", "oracle"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": answer},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
                }
            )

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--answer-key", type=Path, required=True)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    args = parser.parse_args()
    key = json.loads(args.answer_key.read_text())
    server = ThreadingHTTPServer(
        ("127.0.0.1", args.port), handler(key, args.latency_ms / 1000, Counts())
    )
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
