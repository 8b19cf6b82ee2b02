"""A run's budgets: tokens and money spent, rows failed. Past any, no new request is started."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class RunBudget:
    total_rows: int = 0
    max_tokens: int | None = None
    max_error_fraction: float = 1.0
    max_cost: float | None = None
    tokens: int = 0
    cost: float = 0.0
    errors: int = 0
    halted: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def spend(self, tokens: int, cost: float = 0.0) -> None:
        with self._lock:
            self.tokens += tokens
            self.cost += cost

    def fail(self) -> None:
        with self._lock:
            self.errors += 1

    def halt(self, reason: str) -> None:
        """Start no new request from now on (the run failed)."""
        self.halted = reason

    def exceeded(self) -> str | None:
        """Which budget is spent and by how much, or None while both hold."""
        if self.halted is not None:
            return self.halted
        if self.max_tokens is not None and self.tokens >= self.max_tokens:
            over = self.tokens - self.max_tokens
            return f"the token budget of {self.max_tokens:,} ({self.tokens:,} spent, {over:,} over)"
        if self.max_cost is not None and self.cost >= self.max_cost:
            return f"the cost budget of ${self.max_cost:,.2f} (${self.cost:,.4f} spent)"
        allowed = self.max_error_fraction * self.total_rows
        if self.total_rows and self.errors > allowed:
            return (
                f"the error budget of {self.max_error_fraction:.0%} of {self.total_rows:,} rows "
                f"({self.errors:,} failed, {self.errors - int(allowed):,} over)"
            )
        return None
