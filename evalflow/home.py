"""EVALFLOW_HOME: the one folder where evalflow keeps models, stores, results and logs."""

from __future__ import annotations

import os
from pathlib import Path


def evalflow_home() -> Path:
    """The folder named by EVALFLOW_HOME (default ~/.evalflow), created if missing."""
    raw = os.environ.get("EVALFLOW_HOME") or str(Path.home() / ".evalflow")
    home = Path(raw).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def home_dir(*parts: str) -> Path:
    """A folder below EVALFLOW_HOME, created if missing."""
    path = evalflow_home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def offline_environment() -> dict[str, str]:
    """Settings that keep telemetry on this machine, for processes evalflow starts itself, and
    a patient start of the ephemeral Prefect server (its 20 s default fails on a busy 2-core
    machine, seen while a compiler ran beside it)."""
    return {
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "WANDB_ERROR_REPORTING": "false",
        "WEAVE_DISABLED_TELEMETRY": "true",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }


def apply_offline_environment() -> None:
    """Set the offline settings in this process where the user has not set them."""
    for key, value in offline_environment().items():
        os.environ.setdefault(key, value)
