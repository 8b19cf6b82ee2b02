"""EVALFLOW_HOME: the one folder where evalflow keeps models, stores, results and logs."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

DATABASE_URL_VAR = "PREFECT_SERVER_DATABASE_CONNECTION_URL"


def evalflow_home_path() -> Path:
    """The folder named by EVALFLOW_HOME (default ~/.evalflow), not created."""
    raw = os.environ.get("EVALFLOW_HOME") or str(Path.home() / ".evalflow")
    return Path(raw).expanduser().resolve()


def evalflow_home() -> Path:
    """The folder named by EVALFLOW_HOME (default ~/.evalflow), created if missing."""
    home = evalflow_home_path()
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


def temporary_server_database_url() -> str:
    """The database of the temporary Prefect servers evalflow's runs start (without
    PREFECT_API_URL): apart from prefect.db, the database of `evalflow up`'s long-lived server."""
    return f"sqlite+aiosqlite:///{evalflow_home_path() / 'prefect' / 'temporary-server.db'}"


def evalflow_prefect_defaults() -> dict[str, str]:
    """Where evalflow puts Prefect's state when the user has not chosen: PREFECT_HOME is
    EVALFLOW_HOME/prefect, and holds what Prefect writes (the temporary server's database, its
    memo store, local result storage); the user's own Prefect configuration (profiles, such as a
    server set with `prefect config set PREFECT_API_URL=...`, and logging.yml) is still read
    from ~/.prefect."""
    user_config = Path.home() / ".prefect"
    return {
        "PREFECT_HOME": str(evalflow_home_path() / "prefect"),
        "PREFECT_PROFILES_PATH": str(user_config / "profiles.toml"),
        "PREFECT_LOGGING_CONFIG_PATH": str(user_config / "logging.yml"),
        DATABASE_URL_VAR: temporary_server_database_url(),
    }


def prefect_home_environment() -> dict[str, str]:
    """evalflow_prefect_defaults(), or nothing when the user set PREFECT_HOME or a
    PREFECT_SERVER_DATABASE_* setting."""
    chosen = ("PREFECT_HOME", "PREFECT_SERVER_DATABASE_", "PREFECT_API_DATABASE_")
    if any(key.startswith(chosen) for key in os.environ):
        return {}
    return evalflow_prefect_defaults()


def apply_offline_environment() -> None:
    """Set the offline settings and Prefect's home in this process where the user has not set
    them. Call it before prefect is imported: Prefect reads its settings once, at import."""
    for key, value in {**offline_environment(), **prefect_home_environment()}.items():
        os.environ.setdefault(key, value)


def make_prefect_home() -> None:
    """Create evalflow's PREFECT_HOME when it is the one in use (Prefect creates its home only
    when the parent folder exists). A home that can't be written is reported by what writes."""
    folder = os.environ.get("PREFECT_HOME")
    if folder and folder == evalflow_prefect_defaults()["PREFECT_HOME"]:
        with contextlib.suppress(OSError):
            Path(folder).mkdir(parents=True, exist_ok=True)
