"""Rate limits shared across processes and machines: Prefect global concurrency limits.

Made from the registry (one per endpoint and model with an rpm), with a slot decay of rpm/60
per second, and taken once per chunk (`occupy=len(chunk)`, strict), never per request: each
acquire is a round trip to the Prefect server. The in-process limiter paces the requests
inside the chunk. Used only when a Prefect server is configured (PREFECT_API_URL).
"""

from __future__ import annotations

import hashlib
import threading

from prefect.client.orchestration import get_client
from prefect.concurrency.sync import rate_limit
from prefect.exceptions import ObjectAlreadyExists
from prefect.settings import PREFECT_API_URL

from evalflow.config import ModelSpec

_acquire_lock = threading.Lock()


def limit_name(spec: ModelSpec) -> str:
    digest = hashlib.sha256(f"{spec.endpoint_key}|{spec.model}".encode()).hexdigest()[:12]
    return f"evalflow-rpm-{digest}"


def ensure_shared_limits(specs: list[ModelSpec], chunk_size: int) -> dict[str, str]:
    """Create or update the limits; return model name -> limit name (empty without a server)."""
    if not PREFECT_API_URL.value():
        return {}
    names: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        for spec in specs:
            if spec.limits.rpm is None:
                continue
            name = limit_name(spec)
            # Room for two chunks: the next chunk is admitted while the last one's slots decay,
            # so the limit's decay rate, not the wait between chunks, sets the pace; the room
            # is also the most a run can send at once above the rate (its first two chunks).
            limit, decay = 2 * max(chunk_size, 1), spec.limits.rpm / 60.0
            try:
                client.upsert_global_concurrency_limit_by_name(
                    name, limit=limit, slot_decay_per_second=decay
                )
            except ObjectAlreadyExists:
                # Another run created it between our lookup and our create: update it instead.
                client.upsert_global_concurrency_limit_by_name(
                    name, limit=limit, slot_decay_per_second=decay
                )
            names[spec.name] = name
    return names


# How often a waiting process asks again. Prefect's own wait between attempts is the server's
# Retry-After, which grows with every waiter's denied slots (a Poisson draw around (asked +
# denied) / decay): with three processes waiting it averaged seconds while slots freed every
# 0.1 s, and up to 15% of the limit went unused (tests/test_workers.py: 0.85 to 0.98 of it
# while three evaluations on two workers were asking).
# Asking again every quarter second keeps it used; the server still grants only what fits.
POLL_S = 0.25


def take_shared_slots(name: str | None, count: int) -> None:
    """Block until `count` requests fit the shared limit (no-op without one)."""
    if name is None:
        return
    # One waiter per process: waiters' denied slots add up in the server's Retry-After.
    with _acquire_lock:
        while True:
            try:
                rate_limit(name, occupy=count, timeout_seconds=POLL_S, strict=True)
                return
            except TimeoutError:  # not granted within POLL_S: ask again
                continue
