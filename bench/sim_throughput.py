"""How many requests a second the simulated endpoint serves at zero latency.

The endpoint must never be the bottleneck of a benchmark: the goal is at least 1,000 req/s.
The load comes from a separate process (aiohttp client, keep-alive connections), so client
and server each have one of the machine's cores.

    uv run python -m bench.sim_throughput [--requests 20000] [--connections 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp

from bench.results import write_section
from evalflow.endpoints import sim_endpoint


async def load(base_url: str, requests: int, connections: int) -> tuple[float, int]:
    body = json.dumps({"model": "oracle", "messages": [{"role": "user", "content": "hi"}]})
    headers = {"Content-Type": "application/json", "Authorization": "Bearer x"}
    ok = 0
    next_index = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal ok, next_index
            while next_index < requests:
                next_index += 1
                async with session.post(
                    f"{base_url}/chat/completions", data=body, headers=headers
                ) as response:
                    await response.read()
                    ok += response.status == 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        return time.perf_counter() - started, ok


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    with sim_endpoint() as sim:
        asyncio.run(load(sim.base_url, 500, args.connections))  # warm up
        sim.reset()
        seconds, ok = asyncio.run(load(sim.base_url, args.requests, args.connections))
        served = sim.stats()["total"]
    rate = ok / seconds
    body = (
        "| requests | connections | seconds | req/s | goal |\n|---|---|---|---|---|\n"
        f"| {ok} of {served} answered 200 | {args.connections} | {seconds:.2f} | {rate:,.0f} "
        f"| >= 1,000 ({'met' if rate >= 1000 else 'NOT met'}) |"
    )
    write_section(
        "Simulated endpoint throughput (zero latency)",
        "uv run python -m bench.sim_throughput",
        body,
    )


if __name__ == "__main__":
    main()
