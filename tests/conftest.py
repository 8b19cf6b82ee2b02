"""Shared fixtures: a private EVALFLOW_HOME; one simulated endpoint and one local LLM a session."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Set before evalflow is imported anywhere, so nothing touches the user's ~/.evalflow.
_HOME = Path(tempfile.mkdtemp(prefix="evalflow-test-home-"))
os.environ["EVALFLOW_HOME"] = str(_HOME)
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from evalflow.endpoints import SimEndpoint, SimProfile, local_llm, sim_endpoint  # noqa: E402


@pytest.fixture(scope="session")
def evalflow_home() -> Path:
    return _HOME


@pytest.fixture(scope="session")
def sim_server() -> Iterator[SimEndpoint]:
    with sim_endpoint() as sim:
        yield sim


@pytest.fixture
def sim(sim_server: SimEndpoint) -> SimEndpoint:
    """The session's simulated endpoint, reset to a default profile for this test."""
    sim_server.configure(**SimProfile().model_dump())
    return sim_server


@pytest.fixture(scope="session")
def llm_url() -> Iterator[str]:
    with local_llm() as url:
        yield url


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """A real Prefect server for the session (SQLite, temporary); yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield str(PREFECT_API_URL.value())
