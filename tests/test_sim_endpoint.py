"""The simulated endpoint, through the real openai client over real HTTP."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import httpx2
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from evalflow.endpoints import SimEndpoint

KEY = {f"question {i}?": f"answer {i}" for i in range(200)}


def ask(client: OpenAI, model: str, prompt: str) -> str:
    response = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}]
    )
    return response.choices[0].message.content or ""


def client_for(sim: SimEndpoint, **kwargs: object) -> OpenAI:
    return OpenAI(base_url=sim.base_url, api_key="test", max_retries=0, **kwargs)  # type: ignore[arg-type]


def test_oracle_is_always_right_and_others_at_their_rate(sim: SimEndpoint) -> None:
    sim.configure(answer_key=KEY, models={"oracle": 1.0, "coin": 0.5, "never": 0.0})
    client = client_for(sim)
    oracle = [ask(client, "oracle", q) == a for q, a in KEY.items()]
    coin = [ask(client, "coin", q) == a for q, a in KEY.items()]
    never = [ask(client, "never", q) == a for q, a in list(KEY.items())[:20]]
    assert all(oracle)
    assert 0.4 <= sum(coin) / len(coin) <= 0.6
    assert not any(never)
    again = [ask(client, "coin", q) == a for q, a in KEY.items()]
    assert again == coin  # decided by a hash of the prompt: reruns agree


def test_every_answer_reports_token_usage(sim: SimEndpoint) -> None:
    sim.configure(answer_key=KEY)
    response = client_for(sim).chat.completions.create(
        model="oracle", messages=[{"role": "user", "content": "question 1?"}]
    )
    assert response.usage is not None
    assert (
        response.usage.total_tokens
        == response.usage.prompt_tokens + response.usage.completion_tokens
    )
    assert response.usage.completion_tokens > 0
    assert sim.stats()["tokens"] == {
        "prompt": response.usage.prompt_tokens,
        "completion": response.usage.completion_tokens,
    }


def test_rpm_limit_answers_429_with_retry_after_once_the_window_is_full(sim: SimEndpoint) -> None:
    sim.configure(rpm=30)
    client = client_for(sim)
    for i in range(30):
        ask(client, "oracle", f"q{i}")
    with pytest.raises(openai.RateLimitError) as caught:
        ask(client, "oracle", "one too many")
    headers = caught.value.response.headers
    assert 1 <= int(headers["retry-after"]) <= 60
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-limit-requests"] == "30"
    assert (
        isinstance(caught.value.body, dict) and caught.value.body["code"] == "rate_limit_exceeded"
    )
    assert sim.stats()["by_status"] == {"200": 30, "429": 1}


def test_tpm_limit_counts_prompt_and_answer_tokens(sim: SimEndpoint) -> None:
    sim.configure(tpm=100)
    client = client_for(sim)
    long_prompt = "x" * 300  # about 75 prompt tokens
    ask(client, "oracle", long_prompt)
    with pytest.raises(openai.RateLimitError) as caught:
        ask(client, "oracle", long_prompt)
    assert "x-ratelimit-remaining-tokens" in caught.value.response.headers


async def _send_all(sim: SimEndpoint, n: int, timeout: float) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    semaphore = asyncio.Semaphore(100)
    async with AsyncOpenAI(
        base_url=sim.base_url,
        api_key="t",
        max_retries=0,
        # Only the answer may time out: on a busy machine, waiting for a connection must not.
        timeout=httpx2.Timeout(timeout, connect=60.0, pool=60.0),
    ) as client:

        async def one(i: int) -> None:
            async with semaphore:
                try:
                    await client.chat.completions.create(
                        model="oracle", messages=[{"role": "user", "content": f"row {i}"}]
                    )
                    outcomes["200"] += 1
                except openai.APITimeoutError:
                    outcomes["hang"] += 1
                except openai.APIConnectionError:
                    outcomes["drop"] += 1
                except openai.APIStatusError as exc:
                    outcomes[str(exc.status_code)] += 1
                except ValueError:  # a 200 whose body is not JSON
                    outcomes["malformed"] += 1

        await asyncio.gather(*(one(i) for i in range(n)))
    return outcomes


def test_fault_rates_over_2000_requests_match_the_profile(sim: SimEndpoint) -> None:
    rates = {
        "error_500": 0.10,
        "error_502": 0.05,
        "error_503": 0.05,
        "hang": 0.02,
        "drop": 0.03,
        "malformed": 0.05,
    }
    sim.configure(**rates, hang_seconds=3.0, seed=7)
    outcomes = asyncio.run(_send_all(sim, 2000, timeout=1.0))
    assert sum(outcomes.values()) == 2000
    labels = {
        "error_500": "500",
        "error_502": "502",
        "error_503": "503",
        "hang": "hang",
        "drop": "drop",
        "malformed": "malformed",
    }
    for kind, rate in rates.items():
        observed = outcomes[labels[kind]] / 2000
        assert abs(observed - rate) <= 0.03, (kind, observed, rate)
    stats = sim.stats()
    assert stats["total"] == 2000  # exactly the requests sent
    assert stats["by_status"] == dict(outcomes)  # and the endpoint saw what the client saw


def test_faults_are_reproducible_with_the_same_seed(sim: SimEndpoint) -> None:
    sim.configure(error_500=0.3, seed=11)
    first = asyncio.run(_send_all(sim, 300, timeout=5.0))
    sim.configure(error_500=0.3, seed=11)
    second = asyncio.run(_send_all(sim, 300, timeout=5.0))
    assert first == second and first["500"] > 0


def test_unknown_model_is_a_404_with_an_openai_shaped_error(sim: SimEndpoint) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        ask(client_for(sim), "no-such-model", "hello")
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "model_not_found"
    assert "no-such-model" in str(caught.value)


def test_malformed_request_bodies_are_400s(sim: SimEndpoint) -> None:
    url = f"{sim.base_url}/chat/completions"
    not_json = httpx.post(url, content=b"{not json", headers={"Content-Type": "application/json"})
    no_messages = httpx.post(url, json={"model": "oracle"})
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["error"]["message"]
    assert no_messages.status_code == 400 and "messages" in no_messages.json()["error"]["message"]


def test_wrong_key_is_a_401(sim: SimEndpoint) -> None:
    sim.configure(api_key="right-key")
    with pytest.raises(openai.AuthenticationError):
        ask(client_for(sim), "oracle", "hello")
    assert (
        ask(OpenAI(base_url=sim.base_url, api_key="right-key", max_retries=0), "oracle", "q") != ""
    )


def test_lists_models(sim: SimEndpoint) -> None:
    sim.configure(models={"a": 1.0, "b": 0.2})
    assert [m.id for m in client_for(sim).models.list()] == ["a", "b"]


def test_latency_is_applied(sim: SimEndpoint) -> None:
    import time

    sim.configure(latency_ms=200)
    client = client_for(sim)
    started = time.monotonic()
    ask(client, "oracle", "slow")
    assert time.monotonic() - started >= 0.19
