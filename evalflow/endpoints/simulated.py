"""Run the simulated endpoint in a child process and talk to its control routes."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from evalflow.endpoints.process import ServerProcess
from evalflow.endpoints.sim import API_KEY_ENV
from evalflow.endpoints.sim_profile import SimProfile
from evalflow.errors import EndpointError


@dataclass
class SimEndpoint:
    """A running simulated endpoint: its OpenAI base URL and its control routes."""

    base_url: str

    @property
    def root(self) -> str:
        return self.base_url.removesuffix("/v1")

    def stats(self) -> dict[str, Any]:
        """What reached the endpoint since the last reset: totals by model and status, tokens."""
        return dict(httpx.get(f"{self.root}/_stats", timeout=10).json())

    def reset(self) -> None:
        httpx.post(f"{self.root}/_stats/reset", timeout=10).raise_for_status()

    def configure(self, **changes: Any) -> None:
        """Change the running server's profile (and reset its counters and windows)."""
        response = httpx.post(f"{self.root}/_profile", json=changes, timeout=10)
        if response.status_code != 200:
            raise EndpointError(f"simulated endpoint refused the profile: {response.text}")


def start_sim_process(
    profile: SimProfile, host: str = "127.0.0.1", port: int = 0, log_path: Path | None = None
) -> tuple[ServerProcess, str]:
    """Start the server process; return it and its base URL once it listens."""
    with tempfile.TemporaryDirectory(prefix="evalflow-sim-") as tmp:
        profile_file = Path(tmp) / "profile.json"
        profile_file.write_text(profile.model_dump_json(exclude={"api_key"}), encoding="utf-8")
        env = {API_KEY_ENV: profile.api_key} if profile.api_key else {}
        proc = ServerProcess(
            "simulated endpoint",
            [
                "-m",
                "evalflow.endpoints.sim",
                "--host",
                host,
                "--port",
                str(port),
                "--profile",
                str(profile_file),
            ],
            env=env,
            log_path=log_path,
        )
        try:
            url = proc.wait_url(timeout=30)
        except EndpointError:
            proc.stop()
            raise
    return proc, url


@contextmanager
def sim_endpoint(profile: SimProfile | None = None, **fields: Any) -> Iterator[SimEndpoint]:
    """Start the simulated endpoint on a free loopback port; stop it on exit.

    Takes a SimProfile or its fields as keyword arguments:
    `with sim_endpoint(latency_ms=50, rpm=600, answer_key={...}) as sim: ...`
    """
    profile = profile or SimProfile(**fields)
    proc, url = start_sim_process(profile)
    try:
        yield SimEndpoint(base_url=url)
    finally:
        proc.stop()
