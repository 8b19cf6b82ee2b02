"""A lease on remote run storage: one holder of a run id at a time, across machines.

The lease is one small JSON object (the holder's pid, host, since, a random token, and when it
expires), renewed by a thread of the holder every third of its time to live and given up at the
end. A second holder is refused while the lease is live; a lease past its expiry (its holder
died) is taken over.

On S3 (s3fs) every change is a conditional write: the first holder creates the object with
`If-None-Match: *`, and renewing, taking over and giving up replace it with
`If-Match: <the ETag read>`, so of two processes racing for the same lease exactly one wins.
On other fsspec stores the lease is written, read back after a pause and kept only if it is
still ours: two processes whose write and read-back interleave within that pause could both
hold it (README, "Run storage").
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from evalflow.errors import StorageError
from evalflow.storage import Remote, storage_failure

TTL_ENV = "EVALFLOW_LEASE_TTL_S"
DEFAULT_TTL_S = 30.0
SETTLE_S = 1.0  # the read-back pause on stores without conditional writes
_TAKE_TRIES = 3


def lease_ttl() -> float:
    """The lease's time to live, seconds: EVALFLOW_LEASE_TTL_S (at least 2), else 30."""
    text = os.environ.get(TTL_ENV, "").strip()
    try:
        return max(2.0, float(text)) if text else DEFAULT_TTL_S
    except ValueError:
        return DEFAULT_TTL_S


def holder_text(info: dict[str, Any]) -> str:
    """Who holds a lease or lock, as the refusal names it."""
    if not info:
        return "another process"
    return f"process {info.get('pid')} on {info.get('host')}, since {info.get('since')}"


@dataclass
class Lease:
    """A lease held by this process; `lost` says why, once another holder took it."""

    where: Remote
    ttl: float
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    since: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    )
    etag: str | None = None
    lost: str | None = None
    on_lost: Callable[[str], None] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def body(self, expires: float) -> bytes:
        return json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": self.since,
                "token": self.token,
                "expires": expires,
            }
        ).encode()


def _read(where: Remote) -> tuple[dict[str, Any], str | None] | None:
    """The lease's content and ETag, or None when there is none."""
    fs = where.fs
    try:
        fs.invalidate_cache(where.path)
        etag = fs.info(where.path, refresh=True).get("ETag") if where.conditional else None
        data = fs.cat_file(where.path)
    except FileNotFoundError:
        return None
    try:
        info = json.loads(data or b"{}")
    except ValueError:
        info = {}
    return (info if isinstance(info, dict) else {}), etag


def _live(info: dict[str, Any]) -> bool:
    try:
        return float(info.get("expires", 0)) > time.time()
    except (TypeError, ValueError):
        return False


def _put(lease: Lease, expires: float, match: str | None, create: bool = False) -> bool:
    """Write the lease conditionally: created only if absent, or replaced only if its ETag is
    still `match`. False when the condition failed (someone else wrote it)."""
    fs, path = lease.where.fs, lease.where.path
    try:
        if create:
            out = fs.pipe_file(path, lease.body(expires), mode="create")
        else:
            out = fs.pipe_file(path, lease.body(expires), IfMatch=match)
    except FileExistsError:
        return False
    except OSError as exc:  # 412 Precondition Failed (s3fs: EINVAL), or a missing object
        if "Precondition" in str(exc) or isinstance(exc, FileNotFoundError) or exc.errno == 22:
            return False
        raise
    lease.etag = out.get("ETag") if isinstance(out, dict) else None
    return True


def _take_conditional(lease: Lease) -> dict[str, Any] | None:
    """Take the lease; None when taken, else the live holder's content."""
    for _ in range(_TAKE_TRIES):
        if _put(lease, time.time() + lease.ttl, None, create=True):
            return None
        found = _read(lease.where)
        if found is None:
            continue  # given up meanwhile: create it again
        info, etag = found
        if _live(info) and info.get("token") != lease.token:
            return info
        if _put(lease, time.time() + lease.ttl, etag):
            return None  # an expired (or given up) lease taken over
    found = _read(lease.where)
    return found[0] if found else {}


def _take_unconditional(lease: Lease) -> dict[str, Any] | None:
    """As _take_conditional, by writing, pausing and reading back."""
    found = _read(lease.where)
    if found is not None and _live(found[0]) and found[0].get("token") != lease.token:
        return found[0]
    lease.where.fs.pipe_file(lease.where.path, lease.body(time.time() + lease.ttl))
    time.sleep(SETTLE_S)
    found = _read(lease.where)
    if found is None or found[0].get("token") != lease.token:
        return found[0] if found else {}
    return None


def _renew(lease: Lease) -> None:
    """Extend the lease, or note that it was lost (another holder replaced it)."""
    expires = time.time() + lease.ttl
    if lease.where.conditional:
        if _put(lease, expires, lease.etag):
            return
    else:
        found = _read(lease.where)
        if found is not None and found[0].get("token") == lease.token:
            lease.where.fs.pipe_file(lease.where.path, lease.body(expires))
            return
    found = _read(lease.where)
    holder = holder_text(found[0] if found else {})
    lease.lost = f"its lease on run storage was taken over by {holder}"
    if lease.on_lost is not None:
        lease.on_lost(lease.lost)


def _keep(lease: Lease) -> None:
    """The renewing thread: every third of the TTL; a failed renewal is tried again at the next
    tick (the lease stays ours until it expires)."""
    while not lease._stop.wait(lease.ttl / 3):
        with contextlib.suppress(Exception):
            _renew(lease)
        if lease.lost is not None:
            return


def _give_up(lease: Lease) -> None:
    """Let the next holder in at once: the lease rewritten as expired, if still ours."""
    with contextlib.suppress(Exception):
        if lease.where.conditional:
            _put(lease, 0.0, lease.etag)
            return
        found = _read(lease.where)
        if found is not None and found[0].get("token") == lease.token:
            lease.where.fs.pipe_file(lease.where.path, lease.body(0.0))


@contextlib.contextmanager
def hold_lease(
    where: Remote,
    refused: Callable[[dict[str, Any]], Exception],
    ttl: float | None = None,
    on_lost: Callable[[str], None] | None = None,
) -> Iterator[Lease]:
    """Hold the lease at `where` while the body runs (renewed in the background, given up at
    the end; `on_lost` is called if another holder takes it over meanwhile). While another
    holder's lease is live, raises `refused(its content)` before the body; a StorageError
    when the store can't be used."""
    lease = Lease(where, ttl or lease_ttl(), on_lost=on_lost)
    try:
        holder = _take_conditional(lease) if where.conditional else _take_unconditional(lease)
    except StorageError:
        raise
    except Exception as exc:
        raise storage_failure(where, "take the run's lease at", exc) from None
    if holder is not None:
        raise refused(holder)
    keeper = threading.Thread(target=_keep, args=(lease,), name="run-lease", daemon=True)
    keeper.start()
    try:
        yield lease
    finally:
        lease._stop.set()
        keeper.join()
        if lease.lost is None:
            _give_up(lease)
