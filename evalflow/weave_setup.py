"""`init_weave`: evalflow's weave.init. Local store for `local/<name>`, W&B otherwise."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

from evalflow.errors import WeaveStoreError
from evalflow.home import apply_offline_environment, home_dir
from evalflow.patches.weave import (
    remember_wandb_is_absent,
    restore_is_op,
    use_attribute_is_op,
)
from evalflow.patches.weave_plain import restore_weave_walks, use_plain_fast_path

DEFAULT_PROJECT = "local/evalflow"
PROJECT_ENV = "EVALFLOW_WEAVE_PROJECT"
WEAVE_STORE_ENV = "EVALFLOW_WEAVE_STORE"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_lock = threading.Lock()
_current: tuple[str, Any] | None = None


def project_name(project: str | None = None) -> str:
    name = project or os.environ.get(PROJECT_ENV) or DEFAULT_PROJECT
    parts = name.split("/")
    if len(parts) != 2 or not all(_NAME.match(p) for p in parts):
        raise WeaveStoreError(
            f"weave project {name!r} should be 'local/<name>' (the local store) or "
            f"'<entity>/<project>' (W&B); letters, digits, '.', '_' and '-' only"
        )
    return name


def init_weave(project: str | None = None) -> Any:
    """The weave client for the project, set as weave's global client."""
    global _current
    name = project_name(project)
    with _lock:
        if _current is not None and _current[0] == name:
            return _current[1]
        apply_offline_environment()
        remember_wandb_is_absent()
        from weave.trace.context.weave_client_context import set_weave_client_global

        if _current is not None:  # switching projects: finish with the old client first
            flush_weave(_current[1])
        entity, proj = name.split("/")
        if entity == "local":
            # Links to wandb.ai mean nothing for a local store; keep weave's output quiet.
            os.environ.setdefault("WEAVE_PRINT_CALL_LINK", "false")
            os.environ.setdefault("WEAVE_LOG_LEVEL", "WARNING")
            client = _local_client(proj)
            # Made first, then swapped in: weave's global client is never unset for the time
            # a client takes to make (another run of this process, tracing meanwhile, found
            # none: "You must call weave.init"). weave sets its global only when unset.
            set_weave_client_global(None)
            set_weave_client_global(client)
            _patch_calls()
        else:
            if not os.environ.get("WANDB_API_KEY"):
                raise WeaveStoreError(
                    f"weave project {name!r} is on W&B and needs a key: set WANDB_API_KEY, "
                    f"or use a local project such as 'local/{proj}'"
                )
            import weave

            set_weave_client_global(None)  # weave.init sets its own client only when unset
            client = weave.init(name)
        # The is_op and plain-value patches were measured and verified on the local store;
        # W&B runs weave as is.
        if entity == "local":
            use_attribute_is_op()
            use_plain_fast_path()
        else:
            restore_is_op()
            restore_weave_walks()
        _current = (name, client)
        return client


def weave_store_folder() -> Path:
    """The local Weave store's folder (one SQLite file per project): EVALFLOW_WEAVE_STORE, else
    EVALFLOW_HOME/weave. Processes on one machine with homes of their own (workers) share it
    by naming one folder."""
    chosen = os.environ.get(WEAVE_STORE_ENV, "").strip()
    if not chosen:
        return home_dir("weave")
    folder = Path(chosen).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def check_local_store(project: str | None = None) -> bool:
    """Open the project's local Weave store without importing weave: a folder that cannot be
    made, a file that is not a usable SQLite database raise WeaveStoreError naming it. False
    (nothing checked) for a W&B project."""
    from evalflow.weave_local.db import Database

    entity, proj = project_name(project).split("/")
    if entity != "local":
        return False
    Database(_store_path(proj))  # closed when dropped; init_weave opens it again (a few ms)
    return True


def _store_path(project: str) -> Path:
    """The local store's file of a project (WeaveStoreError if its folder cannot be made)."""
    try:
        folder = weave_store_folder()
    except OSError as exc:
        raise WeaveStoreError(
            f"Weave store folder: cannot create it ({exc}); set {WEAVE_STORE_ENV} (or "
            f"EVALFLOW_HOME) to a writable folder"
        ) from None
    return folder / f"{project}.sqlite"


def _local_client(project: str) -> Any:
    """A weave client on the project's local store (not yet weave's global client)."""
    from weave.trace.settings import override_settings
    from weave.trace.weave_client import WeaveClient

    from evalflow.weave_local.server import LocalTraceServer

    # An unusable file (a directory, not a database, damaged) raises WeaveStoreError naming it.
    server = LocalTraceServer(_store_path(project))
    # The store implements the part of the interface the client uses (not the W&B-only parts).
    # Its call starts and ends only queue a row (written behind by the store's own thread), so
    # weave sends them in the calling thread (client_parallelism 0) rather than handing each
    # to its thread pool: the hand-over cost more CPU than the work (bench/scale_findings.md,
    # "CPU per row"). WEAVE_CLIENT_PARALLELISM, when set, still wins.
    with override_settings(client_parallelism=0):
        client = WeaveClient(
            "local",
            project,
            server,  # type: ignore[arg-type]
            ensure_project_exists=False,
        )
    return client


def _patch_calls() -> None:
    """weave's integrations (openai's calls traced), as weave.init sets them up."""
    from weave.integrations.patch import implicit_patch, register_import_hook

    implicit_patch()
    register_import_hook()


def store_location(client: Any) -> str:
    """Where the client's project is stored: the local store's file, or the W&B project."""
    db = getattr(client.server, "db", None)
    path = getattr(db, "path", None)
    return str(path) if path is not None else f"W&B project {client.project_id}"


def flush_weave(client: Any | None = None) -> None:
    """Wait until the client has sent everything and the store has written it (other processes
    read the same file). WeaveStoreError, naming the file and the OS error, if a write of the
    local store failed (a full disk, a read-only file)."""
    if client is None:
        from weave.trace.context.weave_client_context import require_weave_client

        client = require_weave_client()
    client.flush()
    store_flush = getattr(client.server, "flush", None)
    if callable(store_flush):
        store_flush()
