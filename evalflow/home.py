"""EVALFLOW_HOME: the one folder where evalflow keeps models, stores, results and logs."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

DATABASE_URL_VAR = "PREFECT_SERVER_DATABASE_CONNECTION_URL"
DEFAULTS_FOR_VAR = "EVALFLOW_PREFECT_DEFAULTS_FOR"  # the home whose Prefect defaults are set


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


def temporary_server_database_url(home: Path | None = None) -> str:
    """The database of the temporary Prefect servers evalflow's runs start (without
    PREFECT_API_URL): apart from prefect.db, the database of `evalflow up`'s long-lived server."""
    home = home or evalflow_home_path()
    return f"sqlite+aiosqlite:///{home / 'prefect' / 'temporary-server.db'}"


def evalflow_prefect_defaults(home: Path | None = None) -> dict[str, str]:
    """Where evalflow puts Prefect's state when the user has not chosen: PREFECT_HOME is
    EVALFLOW_HOME/prefect, and holds what Prefect writes (the temporary server's database, its
    memo store, local result storage); the user's own Prefect configuration (profiles, such as a
    server set with `prefect config set PREFECT_API_URL=...`, and logging.yml) is still read
    from ~/.prefect."""
    home = home or evalflow_home_path()
    user_config = Path.home() / ".prefect"
    return {
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_PROFILES_PATH": str(user_config / "profiles.toml"),
        "PREFECT_LOGGING_CONFIG_PATH": str(user_config / "logging.yml"),
        DATABASE_URL_VAR: temporary_server_database_url(home),
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
    inherited = os.environ.get(DEFAULTS_FOR_VAR)
    if inherited is not None and inherited != str(evalflow_home_path()):
        # Set by an evalflow process for another EVALFLOW_HOME (a parent that started this
        # one), not chosen by the user: this home gets its own. Values changed since are kept.
        for key, value in evalflow_prefect_defaults(Path(inherited)).items():
            if os.environ.get(key) == value:
                del os.environ[key]
        del os.environ[DEFAULTS_FOR_VAR]
    for key, value in offline_environment().items():
        os.environ.setdefault(key, value)
    if defaults := prefect_home_environment():
        for key, value in defaults.items():
            os.environ.setdefault(key, value)
        os.environ[DEFAULTS_FOR_VAR] = str(evalflow_home_path())


def make_prefect_home() -> None:
    """Create evalflow's PREFECT_HOME when it is the one in use (Prefect creates its home only
    when the parent folder exists). A home that can't be written is reported by what writes."""
    folder = os.environ.get("PREFECT_HOME")
    if folder and folder == evalflow_prefect_defaults()["PREFECT_HOME"]:
        with contextlib.suppress(OSError):
            Path(folder).mkdir(parents=True, exist_ok=True)
