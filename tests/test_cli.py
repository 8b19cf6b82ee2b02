"""The evalflow command: help everywhere, user mistakes as one line without a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest


def evalflow(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evalflow.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("command", [[], ["serve"], ["serve", "llm"], ["serve", "sim"], ["ask"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = evalflow(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_port_in_use_is_one_line_without_traceback() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = evalflow("serve", "sim", "--port", str(port))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"127.0.0.1:{port}" in result.stderr and "--port" in result.stderr


def test_bad_profile_is_refused_with_a_clear_message() -> None:
    result = evalflow("serve", "sim", "--error-500", "0.8", "--drop", "0.5")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "more than 1" in result.stderr


def test_ask_answers_through_an_endpoint(llm_url: str) -> None:
    result = evalflow("ask", "What is the capital of France?", "--base-url", llm_url)
    assert result.returncode == 0, result.stderr
    assert "A: Paris" in result.stdout


def test_ask_unknown_model_is_one_line(sim: object) -> None:
    from evalflow.endpoints import SimEndpoint

    assert isinstance(sim, SimEndpoint)  # reset to the default profile (no key required)
    result = evalflow("ask", "hi", "--base-url", sim.base_url, "--model", "nope")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "nope" in result.stderr


def test_workers_setup_without_a_prefect_server_is_one_line(tmp_path: object) -> None:
    import os

    env = {**os.environ, "PREFECT_API_URL": "", "EVALFLOW_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "evalflow.cli", "workers", "setup"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "PREFECT_API_URL" in result.stderr and "evalflow workers setup" in result.stderr
