"""The in-process limits: the pace gate spaces requests evenly, the concurrency cap shrinks on
429s and grows back (AIMD), and the token estimate."""

from __future__ import annotations

import asyncio

import pytest

from evalflow.config import Limits
from evalflow.limiter import (
    AdaptiveConcurrency,
    EndpointLimiter,
    PaceGate,
    estimate_tokens,
    limiter_for,
)


def test_the_pace_gate_spaces_reservations_evenly() -> None:
    gate = PaceGate(per_minute=600)  # one every 0.1 s
    waits = [gate.reserve(1) for _ in range(4)]
    assert waits[0] == 0.0
    for n, wait in enumerate(waits[1:], start=1):
        assert wait == pytest.approx(0.1 * n, abs=0.02)
    assert gate.reserve(10) == pytest.approx(0.4, abs=0.02)  # 10 units take 1 s of the window
    assert gate.reserve(1) == pytest.approx(1.4, abs=0.02)


def test_settling_gives_back_what_was_overestimated_but_no_credit_for_the_past() -> None:
    gate = PaceGate(per_minute=6000)  # 0.01 s a unit
    gate.reserve(100)  # estimated 100 units: the next one waits 1 s
    gate.settle(-80)  # only 20 were used
    assert gate.reserve(1) == pytest.approx(0.2, abs=0.02)
    idle = PaceGate(per_minute=60)
    idle.settle(-1000)  # an idle gate does not bank a burst
    assert idle.reserve(1) == 0.0 and idle.reserve(1) == pytest.approx(1.0, abs=0.02)


def test_429s_shrink_the_cap_once_per_cooldown_down_to_the_minimum() -> None:
    cap = AdaptiveConcurrency(maximum=10, cooldown_s=3600)
    cap.on_rate_limited()
    cap.on_rate_limited()  # the same episode
    assert cap.limit == 7
    fast = AdaptiveConcurrency(maximum=10, minimum=2, cooldown_s=0)
    limits = []
    for _ in range(5):
        fast.on_rate_limited()
        limits.append(fast.limit)
    assert limits == [7, 4, 2, 2, 2]


def test_clean_answers_grow_the_cap_by_one_per_cap_answers_up_to_the_maximum() -> None:
    cap = AdaptiveConcurrency(maximum=4, minimum=1, decrease=0.5, cooldown_s=0)
    cap.on_rate_limited()
    assert cap.limit == 2
    cap.on_success()
    cap.on_rate_limited()  # a 429 breaks the run of clean answers
    assert cap.limit == 1
    cap.on_success()
    assert cap.limit == 2
    for _ in range(2):
        cap.on_success()
    assert cap.limit == 3
    for _ in range(20):
        cap.on_success()
    assert cap.limit == 4


def test_requests_past_the_cap_wait_for_a_release_in_order() -> None:
    async def scenario() -> list[str]:
        cap = AdaptiveConcurrency(maximum=2)
        order: list[str] = []

        async def request(name: str, hold: asyncio.Event) -> None:
            await cap.acquire()
            order.append(name)
            await hold.wait()
            cap.release()

        holds = [asyncio.Event() for _ in range(4)]
        tasks = [asyncio.create_task(request(f"r{i}", holds[i])) for i in range(4)]
        await asyncio.sleep(0.01)
        assert (cap.in_flight, cap.waiting, order) == (2, 2, ["r0", "r1"])
        holds[1].set()
        await asyncio.sleep(0.01)
        assert order == ["r0", "r1", "r2"] and cap.waiting == 1
        for hold in holds:
            hold.set()
        await asyncio.gather(*tasks)
        assert cap.in_flight == 0 and cap.waiting == 0
        return order

    assert asyncio.run(scenario()) == ["r0", "r1", "r2", "r3"]


def test_a_cancelled_waiter_gives_its_place_back() -> None:
    async def scenario() -> None:
        cap = AdaptiveConcurrency(maximum=1)
        await cap.acquire()
        waiter = asyncio.create_task(cap.acquire())
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert cap.waiting == 0
        cap.release()
        assert cap.in_flight == 0
        await asyncio.wait_for(cap.acquire(), 1)

    asyncio.run(scenario())


def test_a_slot_waits_for_the_request_pace() -> None:
    async def two_slots() -> float:
        limiter = EndpointLimiter(Limits(rpm=600, max_concurrency=4))
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(2):
            async with limiter.slot(estimated_tokens=10) as slot:
                slot.settle(12)
        return loop.time() - started

    assert 0.08 <= asyncio.run(two_slots()) < 0.5


def test_one_limiter_per_endpoint_model_and_limits() -> None:
    limits = Limits(rpm=60)
    first = limiter_for("http://a/v1", "m", limits)
    assert limiter_for("http://a/v1", "m", Limits(rpm=60)) is first
    assert limiter_for("http://b/v1", "m", limits) is not first
    assert limiter_for("http://a/v1", "m", Limits(rpm=61)) is not first


def test_token_estimate_is_a_quarter_of_the_characters_plus_the_answer_allowance() -> None:
    messages = [{"role": "system", "content": "x" * 40}, {"role": "user", "content": "abc"}]
    assert estimate_tokens(messages, 12) == (10 + 4) + (0 + 4) + 12
    assert estimate_tokens(messages, None) == 18 + 16
