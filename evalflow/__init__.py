"""evalflow: LLM evaluations as scheduled, orchestrated batch jobs.

The public API (each name is imported on first use, so `import evalflow` stays fast and the
library never imports the flows until asked):

- `evalflow.init_weave(project=None)`: the project's weave.init (`local/<name>`: the local
  store; `<entity>/<project>`: W&B);
- `evalflow.evaluate(suite, models, ...)`: the evaluation flow (flows/evaluate.py);
- `evalflow.read_leaderboard(suite)`: a suite's leaderboard as Weave holds it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from evalflow.home import apply_offline_environment

if TYPE_CHECKING:
    from evalflow.evaluation import read_leaderboard
    from evalflow.weave_setup import init_weave
    from flows.evaluate import evaluate

# Before weave, prefect or wandb are imported anywhere: no telemetry leaves the machine.
apply_offline_environment()

_PUBLIC = {
    "init_weave": "evalflow.weave_setup",
    "evaluate": "flows.evaluate",
    "read_leaderboard": "evalflow.evaluation",
}
__all__ = ["evaluate", "init_weave", "read_leaderboard"]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'evalflow' has no attribute {name!r}")
    if _PUBLIC[name].startswith("flows."):
        from evalflow.project import make_flows_importable

        make_flows_importable()  # installed from a wheel, the project ships inside evalflow
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
