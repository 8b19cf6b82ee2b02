"""Shared fixtures: a private EVALFLOW_HOME; one simulated endpoint and one local LLM a session.

Tests come in two layers. `uv run --frozen pytest -m "not slow"` runs the fast one (unit tests
of the pure logic in tests/unit/, and the tests that only need the in-process simulated
endpoint or the local Weave store). A test is marked `slow` here, at collection, when it uses
a fixture in SLOW_FIXTURES, when it (or a tests helper or fixture it uses) starts a process,
or when its module is in SLOW_MODULES. `uv run --frozen pytest` runs both (CI does).
"""

from __future__ import annotations

import os
import tempfile
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Set before evalflow is imported anywhere, so nothing touches the user's ~/.evalflow.
_HOME = Path(tempfile.mkdtemp(prefix="evalflow-test-home-"))
os.environ["EVALFLOW_HOME"] = str(_HOME)
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from evalflow.endpoints import SimEndpoint, SimProfile, local_llm, sim_endpoint  # noqa: E402
from tests.servers import S3Server, s3_on_moto  # noqa: E402


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


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on a free loopback port, with the AWS_* settings set for it."""
    with s3_on_moto(_HOME / "moto.log") as server:
        saved = {key: os.environ.get(key) for key in server.env()}
        os.environ.update(server.env())
        try:
            yield server
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@pytest.fixture
def s3_storage(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """EVALFLOW_STORAGE set, for this test, to a prefix in a fresh bucket; returns its URL."""
    url = s3_server.new_bucket()
    monkeypatch.setenv("EVALFLOW_STORAGE", url)
    return url


@pytest.fixture(scope="session")
def prefect_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Prefect server of its own (`prefect server start`) on PostgreSQL 15, started in a
    temporary directory (as the `postgres` user when run as root); on SQLite, saying so, when
    PostgreSQL cannot start here. Yields tests.servers.PrefectServer (api_url, database)."""
    from tests.servers import prefect_on_postgres

    with prefect_on_postgres(tmp_path_factory.mktemp("prefect-postgres")) as server:
        yield server


SLOW_FIXTURES = {"prefect_server", "llm_url", "prefect_postgres"}
# Modules whose tests start the local LLM (through evalflow) or a browser.
SLOW_MODULES = {"test_local_llm", "test_ui"}
_PROCESS_NAMES = {"subprocess", "Popen"}


def _names(code: types.CodeType) -> set[str]:
    """The global and attribute names a function's code uses, nested functions included."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _starts_a_process(func: Callable[..., Any], seen: set[object]) -> bool:
    """Whether `func`, or a function of the tests it calls by name, starts a process."""
    code = getattr(func, "__code__", None)
    if code is None or func in seen:
        return False
    seen.add(func)
    names = _names(code)
    if names & _PROCESS_NAMES:
        return True
    scope = getattr(func, "__globals__", {})
    return any(
        _starts_a_process(helper, seen)
        for name in names
        if isinstance(helper := scope.get(name), types.FunctionType)
        and helper.__module__.split(".")[0] == "tests"
    )


def _is_slow(item: pytest.Item) -> bool:
    module = getattr(item, "module", None)
    if module is not None and module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES:
        return True
    fixtures = set(getattr(item, "fixturenames", ()))
    if fixtures & SLOW_FIXTURES:
        return True
    funcs = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    for definitions in getattr(info, "name2fixturedefs", {}).values():
        funcs.extend(d.func for d in definitions)
    seen: set[object] = set()
    return any(f is not None and _starts_a_process(f, seen) for f in funcs)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _is_slow(item):
            item.add_marker(pytest.mark.slow)
