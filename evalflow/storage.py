"""Run storage: where runs and the history live, on this disk or behind an fsspec URL.

`EVALFLOW_STORAGE` unset: runs under EVALFLOW_HOME/runs and the history under
EVALFLOW_HOME/history, plain local paths (as `Path`). Set to a local folder (or a `file://` URL,
e.g. a shared NFS mount): runs there, the history in its `_history` folder, still as `Path`. Set
to any other fsspec URL (`s3://bucket/prefix` through s3fs, with the standard AWS settings from
the environment): the same layout as objects, as `Remote` locations. Both kinds join with `/`
and have `.name` and `.parent`; the functions here read and write either, whole objects only.

A location is shown as `protocol://bucket/key`: no credentials, no query string, ever.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from evalflow.errors import ConfigError, StorageError
from evalflow.home import evalflow_home_path, home_dir

STORAGE_ENV = "EVALFLOW_STORAGE"
HISTORY = "_history"  # under EVALFLOW_STORAGE (a run id starts with a letter or a digit)
# Object stores whose single PUT is atomic (a reader sees the old object or the new one).
_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory"}
_CONDITIONAL = {"s3", "s3a"}  # PutObject with If-None-Match / If-Match (s3fs, botocore)


@dataclass(frozen=True)
class Remote:
    """A location on an fsspec filesystem: `path` is the filesystem's own (bucket/key)."""

    fs: Any = field(compare=False, repr=False)
    protocol: str
    path: str

    def __truediv__(self, name: str) -> Remote:
        return Remote(self.fs, self.protocol, f"{self.path.rstrip('/')}/{name}")

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> Remote:
        return Remote(self.fs, self.protocol, self.path.rstrip("/").rsplit("/", 1)[0])

    @property
    def conditional(self) -> bool:
        """Whether the store takes conditional writes (create-only, replace-if-unchanged)."""
        return self.protocol in _CONDITIONAL

    def __str__(self) -> str:
        return f"{self.protocol}://{self.path}"


Location: TypeAlias = Path | Remote


def shown(url: str) -> str:
    """A URL as it may be shown: scheme, host and path; no user, password or query."""
    parts = urlsplit(url)
    if not parts.scheme:
        return url
    return f"{parts.scheme}://{parts.hostname or ''}{parts.path}"


def configured() -> str | None:
    """EVALFLOW_STORAGE, or None when unset (or blank)."""
    return os.environ.get(STORAGE_ENV, "").strip() or None


def runs_root() -> Location:
    """Where runs live: EVALFLOW_STORAGE, else EVALFLOW_HOME/runs (a local one created)."""
    url = configured()
    if url is None:
        return home_dir("runs")
    return make_folder(_root(url))


def history_root() -> Location:
    """Where the history lives: EVALFLOW_STORAGE/_history, else EVALFLOW_HOME/history."""
    url = configured()
    if url is None:
        return evalflow_home_path() / "history"
    return _root(url) / HISTORY


@functools.cache
def _root(url: str) -> Location:
    """The storage root a URL names (a local path, or a Remote on its filesystem)."""
    if "://" not in url:
        return Path(url).expanduser().resolve()
    parts = urlsplit(url)
    protocol = parts.scheme.lower()
    if protocol in ("file", "local"):
        return Path(parts.path).resolve()
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError(
            f"{STORAGE_ENV}={shown(url)}: give credentials and settings in the environment "
            f"(AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL...), not in the URL"
        )
    import fsspec

    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError:
        raise ConfigError(
            f"{STORAGE_ENV}={shown(url)}: unknown storage protocol {protocol!r}; use a local "
            f"folder, file://, s3://bucket/prefix or another fsspec URL"
        ) from None
    except ImportError as exc:
        raise ConfigError(
            f"{STORAGE_ENV}={shown(url)}: the {protocol!r} protocol needs a package that is "
            f"not installed ({exc.name or exc})"
        ) from None
    if protocol in _OBJECT_STORES - {"memory"} and not parts.hostname:
        raise ConfigError(
            f"{STORAGE_ENV}={shown(url)}: no bucket; give it as {protocol}://bucket/prefix"
        )
    options: dict[str, Any] = {}
    if protocol in _CONDITIONAL:
        # Short waits: a store that does not answer is named in seconds, and a lease is
        # renewed well within its time to live.
        config: dict[str, Any] = {"connect_timeout": 5, "read_timeout": 20}
        if not {"AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"} & set(os.environ):
            config["retries"] = {"mode": "standard", "max_attempts": 3}
        options["config_kwargs"] = config
    try:
        fs, path = fsspec.core.url_to_fs(url, **options)
    except Exception as exc:
        raise ConfigError(
            f"{STORAGE_ENV}={shown(url)}: cannot use this storage ({type(exc).__name__})"
        ) from None
    return Remote(fs, protocol, str(path).rstrip("/"))


def _why(exc: BaseException) -> str:
    """What went wrong, in a few words: no query string, no credential."""
    if isinstance(exc, PermissionError):
        return "access denied: check the credentials (AWS_* settings) and the bucket's policy"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = re.sub(r"\?[^\s\"']*", "", str(exc).split("\n", 1)[0])[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def storage_failure(where: Location, doing: str, exc: BaseException) -> StorageError:
    """One line naming the location, the operation and why (never a credential)."""
    return StorageError(
        f"cannot {doing} {where} ({_why(exc)}); what was written before is kept. Fix the "
        f"storage ({STORAGE_ENV}, or EVALFLOW_HOME when unset) and run the same command again"
    )


@contextlib.contextmanager
def _remote(where: Remote, doing: str) -> Iterator[None]:
    """Any failure of a remote call but a missing object as a StorageError."""
    try:
        yield
    except FileNotFoundError:
        raise
    except StorageError:
        raise
    except Exception as exc:
        raise storage_failure(where, doing, exc) from None


def check_storage() -> None:
    """Reach the configured remote storage once (one listing): a malformed URL is a
    ConfigError, a store that can't be reached or refuses the credentials a StorageError,
    before anything is sent. Nothing for local storage (its writes say what is wrong)."""
    url = configured()
    if url is None:
        return
    root = _root(url)
    if isinstance(root, Remote):
        _probe(root)


@functools.cache
def _probe(root: Remote) -> None:
    fs = root.fs
    bucket, _, prefix = root.path.partition("/")
    try:
        if root.conditional:
            fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=prefix, MaxKeys=1)
        else:
            fs.ls(root.path)
    except FileNotFoundError:
        if root.conditional:
            raise StorageError(
                f"{STORAGE_ENV}={root}: the bucket {bucket!r} does not exist (or is not "
                f"visible with these credentials); create it or fix the URL"
            ) from None
    except Exception as exc:
        raise StorageError(
            f"{STORAGE_ENV}={root} cannot be used ({_why(exc)}): nothing was sent. Check the "
            f"URL and the AWS_* settings (AWS_ENDPOINT_URL for an S3-compatible server)"
        ) from None


def make_folder(where: Location) -> Location:
    """A local folder is created (with its parents); an object store has no folders."""
    if isinstance(where, Path):
        try:
            where.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_failure(where, "create the folder", exc) from None
    return where


def write_bytes(where: Location, data: bytes) -> None:
    """Write a file or object whole or not at all. Locally: a temporary file of this process,
    then a rename (a second writer never sees, or removes, another's temporary file)."""
    if isinstance(where, Remote):
        with _remote(where, "write"):
            if where.protocol in _OBJECT_STORES:
                where.fs.pipe_file(where.path, data)
            else:  # a filesystem behind the URL: a temporary name, then a move
                partial = f"{where.path}.{uuid.uuid4().hex}.partial"
                where.fs.pipe_file(partial, data)
                where.fs.mv(partial, where.path)
        return
    tmp = where.with_name(f".{where.name}.{os.getpid()}-{time.monotonic_ns()}.partial")
    try:
        where.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        tmp.replace(where)
    except OSError as exc:
        raise StorageError(
            f"cannot write {where} ({exc.strerror}); what was written before is kept. Free "
            f"space (or make EVALFLOW_HOME writable) and run the same command again"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def write_built(where: Location, build: Callable[[Path], None]) -> None:
    """A file `build` writes at a temporary local path, moved into place whole: a rename here,
    one upload on an object store (for files too large to hold in memory as bytes)."""
    folder = where.parent if isinstance(where, Path) else Path(tempfile.gettempdir())
    tmp = folder / f".{where.name}.{os.getpid()}-{uuid.uuid4().hex}.partial"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        build(tmp)
        if isinstance(where, Path):
            tmp.replace(where)
        else:
            with _remote(where, "write"):
                where.fs.put_file(str(tmp), where.path)
    except OSError as exc:
        raise storage_failure(where, "write", exc) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def read_bytes(where: Location) -> bytes:
    """A whole file or object; FileNotFoundError when there is none."""
    if isinstance(where, Path):
        return where.read_bytes()
    with _remote(where, "read"):
        data: bytes = where.fs.cat_file(where.path)
        return data


def exists(where: Location) -> bool:
    """Whether a file or object is there."""
    if isinstance(where, Path):
        return where.is_file()
    with _remote(where, "look up"):
        where.fs.invalidate_cache(where.path)
        return bool(where.fs.isfile(where.path))


@dataclass(frozen=True)
class Entry:
    """A file or object found by `listing`: where it is, and when it was last written."""

    where: Location
    modified: float


def listing(where: Location, pattern: str = "*") -> list[Entry]:
    """The files or objects under a folder matching a glob pattern (relative to it, e.g.
    `*/parameters.json`), in name order; none when the folder does not exist."""
    if isinstance(where, Path):
        found = sorted(where.glob(pattern)) if where.is_dir() else []
        return [Entry(p, p.stat().st_mtime) for p in found if p.is_file()]
    fs = where.fs
    with _remote(where, "list"):
        fs.invalidate_cache(where.path)
        try:
            details = fs.glob(f"{where.path}/{pattern}", detail=True)
        except FileNotFoundError:
            return []
    entries = []
    for name, info in sorted(details.items()):
        if info.get("type", "file") != "file":
            continue
        entries.append(Entry(Remote(fs, where.protocol, name), _modified(info)))
    return entries


def _modified(info: dict[str, Any]) -> float:
    when = info.get("LastModified") or info.get("mtime") or info.get("created") or 0
    return float(when.timestamp()) if hasattr(when, "timestamp") else float(when)


def read_all(found: list[Entry]) -> dict[str, bytes]:
    """Several remote objects at once (concurrently where the filesystem can), by location
    text; local files are read one by one."""
    local = [e.where for e in found if isinstance(e.where, Path)]
    out = {str(p): p.read_bytes() for p in local}
    remote = [e.where for e in found if isinstance(e.where, Remote)]
    if remote:
        first = remote[0]
        with _remote(first, "read"):
            data = first.fs.cat([r.path for r in remote], on_error="raise")
        out.update({str(r): data[r.path] for r in remote if r.path in data})
    return out


def writer_name() -> str:
    """A name no other writer uses: the host, the process and a random part."""
    host = "".join(c if c.isalnum() or c in "-." else "_" for c in socket.gethostname())[:40]
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class SegmentLog:
    """Lines appended to remote storage, which has no append: each batch of lines is its own
    object under the log's location, `<time ns>-<host>-<pid>-<random>-<seq>.jsonl`, so two
    writers never overwrite each other and the names sort in the order they were written.

    `append` only buffers; a thread of the log writes the buffer as one object when it holds
    `batch` lines or its oldest line has waited `wait_s`, and `close` writes what is left. A
    process killed at once loses the lines of the last `wait_s` (and of a write under way)."""

    def __init__(self, where: Remote, batch: int = 32, wait_s: float = 0.25) -> None:
        self.where = where
        self.batch = batch
        self.wait_s = wait_s
        self._writer = writer_name()
        self._seq = 0
        self._buffer: list[bytes] = []
        self._oldest = 0.0
        self._error: StorageError | None = None
        self._closing = False
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def read(self) -> bytes:
        """Every segment's lines, in the order they were written."""
        found = listing(self.where, "*.jsonl")
        data = read_all(found)
        return b"".join(data[str(e.where)] for e in found if str(e.where) in data)

    def append(self, data: bytes) -> None:
        """Buffer whole lines; raises the StorageError of a failed earlier write."""
        with self._wake:
            if self._error is not None:
                raise self._error
            if not self._buffer:
                self._oldest = time.monotonic()
            self._buffer.append(data)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"journal-{self.where.name}", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def _due(self) -> float | None:
        """Seconds until the buffer is due (0: now), None when it is empty."""
        if not self._buffer:
            return None
        if self._closing or len(self._buffer) >= self.batch:
            return 0.0
        return max(0.0, self._oldest + self.wait_s - time.monotonic())

    def _run(self) -> None:
        while True:
            with self._wake:
                while (due := self._due()) != 0.0:
                    if due is None and self._closing:
                        return
                    self._wake.wait(due)
                taken, self._buffer = self._buffer, []
            try:
                self._write(b"".join(taken))
            except StorageError as exc:
                with self._wake:
                    self._error = exc
                return

    def _write(self, data: bytes) -> None:
        self._seq += 1
        name = f"{time.time_ns():020d}-{self._writer}-{self._seq:06d}.jsonl"
        write_bytes(self.where / name, data)

    def close(self) -> None:
        """Write what is buffered and stop the thread; raises if any write failed."""
        with self._wake:
            self._closing = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join()
        self._thread = None
        with self._wake:
            self._closing = False
            if self._error is not None:
                raise self._error
