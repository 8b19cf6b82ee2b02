"""bench/plain_endpoint.py's count of requests in flight, which bench/whole.py reports: the
mean number of requests received and not yet answered over a span of time."""

from __future__ import annotations

import pytest

from bench.plain_endpoint import mean_in_flight


def test_two_requests_held_for_half_the_span_each_average_one_in_flight() -> None:
    sent, answered = [0.0, 0.5], [0.5, 1.0]
    assert mean_in_flight(sent, answered, 0.0, 1.0) == pytest.approx(1.0)


def test_the_span_counts_what_was_sent_before_it_and_ignores_what_comes_after() -> None:
    # 32 sent at 0, answered at 2: over [1, 2) all 32 are held; a request sent at 3 is not seen
    sent, answered = [0.0] * 32 + [3.0], [2.0] * 32 + [3.2]
    assert mean_in_flight(sent, answered, 1.0, 2.0) == pytest.approx(32.0)
    assert mean_in_flight(sent, answered, 1.0, 3.0) == pytest.approx(16.0)


def test_a_client_slow_to_send_its_next_request_shows_fewer_in_flight() -> None:
    # two slots; each answer is followed by the next request 0.1 s later (not at once)
    sent = [0.0, 0.0, 0.3, 0.3, 0.6, 0.6]
    answered = [0.2, 0.2, 0.5, 0.5, 0.8, 0.8]
    assert mean_in_flight(sent, answered, 0.0, 0.8) == pytest.approx(1.5)


def test_an_empty_span_is_zero() -> None:
    assert mean_in_flight([], [], 0.0, 0.0) == 0.0
