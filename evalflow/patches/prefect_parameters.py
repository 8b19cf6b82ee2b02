"""A flow run's plain parameters recorded without importing FastAPI.

Prefect records a flow run's parameters through `Flow.serialize_parameters`, which passes each
value through FastAPI's `jsonable_encoder`, imported for it at the first flow run: 0.16 s of
CPU in `evalflow run`, taken from the rows then in flight. For a value made only of exactly
dict (string keys), list, tuple, str, int, float, bool and None, that encoder gives a copy
with the same leaves (tuples as lists), which `plain_copy` gives directly (for the whole
parameters dict at once: not a dict when any value is not plain). `plain_parameters`
makes one flow serialize its parameters so when every value is plain, and through Prefect's
own method otherwise (any other value, a method's bound instance).

Installed on the given flow object only (an attribute of that instance: other flows, and
copies made by `with_options`, keep Prefect's method), on the verified Prefect versions, while
the source of `Flow.serialize_parameters` is the one read (any upstream change makes the patch
stand aside).
"""

from __future__ import annotations

import functools
from typing import Any

from evalflow.patches._gate import source_digest, stand_aside, version_problem
from evalflow.patches.weave_plain import plain_copy

DISTRIBUTION = "prefect"
VERIFIED = ">=3.9,<3.10"
PATCH = "prefect: a flow's plain parameters recorded without FastAPI's encoder"
# sha256 (16 hex digits) of the source of the method the patch stands for.
VERIFIED_SOURCE = "bc3f3b9d6a4f8204"


def drift() -> list[str]:
    """What differs upstream from what the patch was verified against (empty: nothing)."""
    from prefect.flows import Flow

    method = getattr(Flow, "serialize_parameters", None)
    if method is None:
        return ["prefect's Flow.serialize_parameters is gone"]
    if source_digest(method) != VERIFIED_SOURCE:
        return ["prefect's Flow.serialize_parameters changed"]
    return []


@functools.cache
def _problems() -> tuple[str, ...]:
    problem = version_problem(DISTRIBUTION, VERIFIED)
    return (problem,) if problem else tuple(drift())


def plain_parameters(flow: Any) -> bool:
    """Make `flow` record plain parameters without FastAPI's encoder; return whether it does."""
    if getattr(flow, "ismethod", False) or getattr(flow, "isclassmethod", False):
        return False  # Prefect leaves out the bound instance: its own method does
    if problems := _problems():
        stand_aside(PATCH, list(problems))
        return False
    own = flow.serialize_parameters

    def serialize_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
        copied = plain_copy(parameters)  # one walk: a dict when every value is plain
        return copied if isinstance(copied, dict) else own(parameters)

    flow.serialize_parameters = serialize_parameters
    return True
