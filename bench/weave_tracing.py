"""Traced calls per second on the local Weave store (flushed), next to the same loop untraced.

    uv run python -m bench.weave_tracing [--calls 5000]

Goal: at least 1,000 traced calls/s. Both loops run in one process, one after the other.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from bench.results import write_section


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    os.environ["EVALFLOW_HOME"] = tempfile.mkdtemp(prefix="evalflow-bench-")
    import weave

    from evalflow.weave_setup import flush_weave, init_weave

    def plain(i: int, text: str) -> dict[str, object]:
        return {"i": i, "length": len(text)}

    traced = weave.op(plain, name="bench_op")
    started = time.perf_counter()
    for i in range(args.calls):
        plain(i, "some input text")
    untraced_s = time.perf_counter() - started

    client = init_weave("local/bench-tracing")
    traced(0, "warm up")
    client.flush()
    started = time.perf_counter()
    for i in range(args.calls):
        traced(i, "some input text")
    flush_weave(client)
    traced_s = time.perf_counter() - started
    stored = len(
        list(client.get_calls(filter={"op_names": ["weave:///local/bench-tracing/op/bench_op:*"]}))
    )
    rate = args.calls / traced_s
    body = (
        "| calls | untraced calls/s | traced calls/s (flushed) | stored | goal |\n"
        "|---|---|---|---|---|\n"
        f"| {args.calls} | {args.calls / untraced_s:,.0f} | {rate:,.0f} | {stored} "
        f"| >= 1,000 ({'met' if rate >= 1000 else 'NOT met'}) |"
    )
    write_section("Weave tracing on the local store", "uv run python -m bench.weave_tracing", body)


if __name__ == "__main__":
    main()
