"""Inference through the real openai client against the simulated endpoint: counts, faults,
retries, limits and fail-fast errors, read at the endpoint's /_stats."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from evalflow.config import Generation, Limits, ModelSpec
from evalflow.dataset import Row
from evalflow.endpoints import SimEndpoint
from evalflow.errors import FatalRequestError
from evalflow.inference import Answer, Journal, Target, answer_chunk
from evalflow.run_context import RunContext

ROWS = [Row(str(i), i, {"question": f"question {i}?"}, f"answer {i}", {}) for i in range(300)]
KEY = {f"question {i}?": f"answer {i}" for i in range(300)}


def run(
    sim: SimEndpoint, model: str = "oracle", rows: list[Row] = ROWS, **limits: float
) -> list[Answer]:
    spec = ModelSpec(
        name=model,
        model=model,
        endpoint=sim.base_url,
        limits=Limits(**{"max_concurrency": 32, "timeout_s": 2.0, **limits}),
    )
    messages = [[{"role": "user", "content": r.inputs["question"]}] for r in rows]
    return asyncio.run(answer_chunk(rows, Target(spec, sim.base_url), messages, Generation(), "t"))


def test_one_request_per_row_and_model(sim: SimEndpoint) -> None:
    sim.configure(answer_key=KEY, models={"oracle": 1.0, "coin": 0.5})
    oracle = run(sim, "oracle")
    coin = run(sim, "coin")
    assert sim.stats()["by_model"] == {"oracle": {"200": 300}, "coin": {"200": 300}}
    assert [a.output for a in oracle] == [r.target for r in ROWS]
    assert 0.35 < sum(a.output == r.target for a, r in zip(coin, ROWS, strict=True)) / 300 < 0.65


def test_faults_are_retried_until_every_row_is_answered(sim: SimEndpoint) -> None:
    sim.configure(
        answer_key=KEY,
        error_500=0.1,
        error_503=0.05,
        drop=0.02,
        malformed=0.02,
        hang=0.02,
        hang_seconds=5.0,
        seed=3,
    )
    answers = run(sim, max_retry_s=60)
    assert all(a.error is None for a in answers)
    assert [a.output for a in answers] == [r.target for r in ROWS]
    stats = sim.stats()["by_status"]
    assert stats["200"] == 300 and stats["500"] > 0 and stats["hang"] > 0
    assert max(a.attempts for a in answers) > 1


def test_a_row_failing_past_its_attempts_is_kept_with_its_error(sim: SimEndpoint) -> None:
    sim.configure(answer_key=KEY, error_500=1.0)
    answers = run(sim, rows=ROWS[:5], max_attempts=2)
    assert [a.row_id for a in answers] == ["0", "1", "2", "3", "4"]
    assert all(a.output is None and a.error_class == "InternalServerError" for a in answers)
    assert all(a.attempts == 2 for a in answers)
    assert sim.stats()["total"] == 10


def test_rate_limit_is_honoured_without_failed_rows(sim: SimEndpoint) -> None:
    sim.configure(answer_key=KEY, rpm=120)  # 2 per second
    started = time.monotonic()
    answers = run(sim, rows=ROWS[:8], rpm=120)
    assert all(a.error is None for a in answers)
    assert sim.stats()["by_status"] == {"200": 8}  # paced: no 429 at all
    assert time.monotonic() - started >= 3.0


def test_retry_after_is_honoured_when_the_client_has_no_limit(sim: SimEndpoint) -> None:
    sim.configure(answer_key=KEY, rpm=60)
    answers = run(sim, rows=ROWS[:3])
    assert all(a.error is None for a in answers)


@pytest.mark.parametrize(
    ("profile", "model", "status"),
    [({"api_key": "the-right-key"}, "oracle", "401"), ({}, "no-such-model", "404")],
)
def test_fatal_errors_fail_fast_without_retries(
    sim: SimEndpoint, profile: dict[str, str], model: str, status: str
) -> None:
    sim.configure(answer_key=KEY, **profile)
    started = time.monotonic()
    with pytest.raises(FatalRequestError, match=status):
        run(sim, model=model)
    assert time.monotonic() - started < 5
    assert sim.stats()["by_status"].get(status, 0) <= 32  # at most the first wave, no retries


def test_429s_shrink_the_requests_in_flight_which_grow_back_once_they_stop(
    sim: SimEndpoint,
) -> None:
    from evalflow.limiter import limiter_for

    limits = {"max_concurrency": 32, "timeout_s": 2.0, "max_attempts": 10}
    cap = limiter_for(sim.base_url, "aimd", Limits(**limits)).concurrency
    sim.configure(answer_key=KEY, models={"aimd": 1.0}, error_429=0.3, latency_ms=20, seed=5)
    storm = run(sim, "aimd", **limits)
    assert all(a.error is None for a in storm)  # retried, bounded, none lost
    assert max(a.attempts for a in storm) <= 10
    shrunk = cap.limit
    assert shrunk < 32  # cut on 429s (by 0.7, at most once a second)

    sim.configure(error_429=0.0)  # 429s over
    run(sim, "aimd", rows=ROWS[:60], **limits)
    after = sim.stats()["peak_in_flight"]
    assert after <= shrunk + 4 and after < 32, (after, shrunk)  # the smaller cap, at first
    rows = [Row(str(i), i, {"question": f"question {i % 300}?"}, "", {}) for i in range(1200)]
    run(sim, "aimd", rows=rows, **limits)
    assert cap.limit == 32  # grown back one by one, after a cap's worth of clean answers
    sim.reset()
    run(sim, "aimd", **limits)
    assert sim.stats()["peak_in_flight"] == 32  # the endpoint sees all of it again


def test_request_bodies_are_what_the_sdks_own_transform_sends(
    sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """evalflow skips the openai SDK's body transform for plain bodies: the body must be the
    one the SDK would have sent, and any other body must still go through the SDK."""
    import openai.resources.chat.completions.completions as chat_completions
    from openai._utils import async_maybe_transform as sdk_transform

    from evalflow.patches.openai import plain_chat_body, skip_plain_chat_transform

    skip_plain_chat_transform()  # installed now, so that answer_chunk keeps `compare` below
    seen: list[tuple[object, object]] = []

    async def compare(data: object, expected_type: object) -> object:
        fast, sdk = plain_chat_body(data), await sdk_transform(data, expected_type)
        seen.append((fast, sdk))
        return sdk if fast is None else fast  # the fast body is the one sent

    monkeypatch.setattr(chat_completions, "async_maybe_transform", compare)
    sim.configure(answer_key=KEY)
    spec = ModelSpec(name="oracle", model="oracle", endpoint=sim.base_url)
    generation = Generation(temperature=0.0, max_tokens=16, seed=7, stop=["\n", "###"])
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "an example"},
        {"role": "assistant", "content": "its answer"},
        {"role": "user", "content": ROWS[0].inputs["question"]},
    ]
    answers = asyncio.run(
        answer_chunk(ROWS[:1], Target(spec, sim.base_url), [messages], generation, "t")
    )
    assert answers[0].output == ROWS[0].target
    (fast, sdk), *_ = seen
    assert fast == sdk and isinstance(sdk, dict) and sdk["stop"] == ["\n", "###"]
    assert "tools" not in sdk and sdk["messages"] == messages
    # Content parts (not plain strings) are left to the SDK's transform.
    parts = {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    assert plain_chat_body({"model": "m", "messages": [parts]}) is None


def test_each_request_is_traced_with_its_inputs_and_output_and_journaled_whole(
    sim: SimEndpoint, evalflow_home: Path, tmp_path: Path
) -> None:
    """What the CPU work on the request path must keep: one Weave call per request, with the
    messages, model, output and evalflow's attributes, and one journal line per answer holding
    every field of the Answer."""
    from evalflow.weave_setup import flush_weave, init_weave

    sim.configure(answer_key=KEY)
    project = "local/traced-requests"
    client = init_weave(project)
    rows = ROWS[:20]
    messages = [[{"role": "user", "content": r.inputs["question"]}] for r in rows]
    spec = ModelSpec(name="oracle", model="oracle", endpoint=sim.base_url)
    journal = Journal(tmp_path / "answers.jsonl")
    answers = asyncio.run(
        answer_chunk(
            rows,
            Target(spec, sim.base_url),
            messages,
            Generation(max_tokens=16),
            "traced",
            RunContext("traced-requests"),
            journal,
        )
    )
    assert [a.output for a in answers] == [r.target for r in rows]
    flush_weave(client)
    op = f"weave:///{project}/op/openai.chat.completions.create:*"
    calls = {
        c.attributes["evalflow.row_id"]: c
        for c in client.get_calls(filter={"op_names": [op]})
        if c.attributes.get("evalflow.suite") == "traced"
    }
    assert sorted(calls) == sorted(r.id for r in rows)
    for row, sent, answer in zip(rows, messages, answers, strict=True):
        call = calls[row.id]
        assert call.inputs["messages"] == sent
        assert (call.inputs["model"], call.inputs["max_tokens"]) == ("oracle", 16)
        assert call.output["choices"][0]["message"]["content"] == answer.output
        assert (call.attributes["evalflow.model"], call.attributes["evalflow.epoch"]) == (
            "oracle",
            0,
        )
        assert call.ended_at is not None and call.exception is None
    lines = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    by_row = {line["row_id"]: line for line in lines}
    assert len(lines) == len(rows)
    assert [by_row[a.row_id] for a in answers] == [asdict(a) for a in answers]
    assert Journal(tmp_path / "answers.jsonl").load() == {a.request: a for a in answers}
