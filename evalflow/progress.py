"""Live counters of a run in this process, read by the CLI's progress bar and the artifacts."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class Progress:
    total: int = 0
    done: int = 0
    errors: int = 0
    retries: int = 0
    reused: int = 0
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            data: dict[str, float] = {
                name: getattr(self, name)
                for name in ("total", "done", "errors", "retries", "reused")
            }
        from evalflow.limiter import waiting

        data["waiting"] = waiting()
        elapsed = max(time.monotonic() - self.started, 1e-9)
        data["rows_per_s"] = (self.done - self.reused) / elapsed
        data["elapsed_s"] = elapsed
        return data


PROGRESS = Progress()


def reset(total: int) -> Progress:
    """Start counting a new run of `total` rows."""
    global PROGRESS
    PROGRESS = Progress(total=total)
    return PROGRESS


def current() -> Progress:
    return PROGRESS
