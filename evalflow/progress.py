"""Live counters of one run, read by the CLI's progress line and the Prefect artifact.

Answers and a judge's requests count apart: `done`, `reused`, `errors` are answers (of
`total`, rows x models x epochs); `judged`, `judge_reused`, `judge_errors` are judge requests
(of `judge_total`, which grows as answers arrive to be judged), a judge's unparseable grades
among its errors."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

_COUNTS = (
    "total",
    "done",
    "errors",
    "retries",
    "reused",
    "waiting",
    "judge_total",
    "judged",
    "judge_reused",
    "judge_errors",
)


@dataclass
class Progress:
    total: int = 0
    done: int = 0
    errors: int = 0
    retries: int = 0
    reused: int = 0
    waiting: int = 0
    judge_total: int = 0
    judged: int = 0
    judge_reused: int = 0
    judge_errors: int = 0
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            data: dict[str, float] = {name: getattr(self, name) for name in _COUNTS}
        elapsed = max(time.monotonic() - self.started, 1e-9)
        data["rows_per_s"] = (self.done - self.reused) / elapsed
        data["elapsed_s"] = elapsed
        return data

    def describe(self) -> str:
        """The run's progress in one line (the CLI and the Prefect artifact show it)."""
        s = self.snapshot()
        line = (
            f"{int(s['done'])}/{int(s['total'])} rows answered, reused {int(s['reused'])}, "
            f"{int(s['errors'])} failed, "
        )
        if s["judge_total"]:
            line += (
                f"{int(s['judged'])}/{int(s['judge_total'])} judged, reused "
                f"{int(s['judge_reused'])}, {int(s['judge_errors'])} ungraded, "
            )
        return line + (
            f"{int(s['retries'])} retries, "
            f"{int(s['waiting'])} waiting on limits, {s['rows_per_s']:.1f} rows/s"
        )
