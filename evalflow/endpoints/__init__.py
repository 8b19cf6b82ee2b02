"""Local OpenAI-compatible endpoints: the local LLM and the simulated endpoint.

The names below are imported on first use, so that `evalflow.endpoints.shutdown` (which the
CLI imports at every start) costs no more than itself."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evalflow.endpoints.llm import MODEL_ID as LOCAL_MODEL_ID
    from evalflow.endpoints.llm import ensure_weights, local_llm
    from evalflow.endpoints.sim_profile import SimProfile
    from evalflow.endpoints.simulated import SimEndpoint, sim_endpoint

_WHERE = {
    "LOCAL_MODEL_ID": ("evalflow.endpoints.llm", "MODEL_ID"),
    "ensure_weights": ("evalflow.endpoints.llm", "ensure_weights"),
    "local_llm": ("evalflow.endpoints.llm", "local_llm"),
    "SimProfile": ("evalflow.endpoints.sim_profile", "SimProfile"),
    "SimEndpoint": ("evalflow.endpoints.simulated", "SimEndpoint"),
    "sim_endpoint": ("evalflow.endpoints.simulated", "sim_endpoint"),
}

__all__ = [
    "LOCAL_MODEL_ID",
    "SimEndpoint",
    "SimProfile",
    "ensure_weights",
    "local_llm",
    "sim_endpoint",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'evalflow.endpoints' has no attribute {name!r}")
    module, attribute = _WHERE[name]
    return getattr(importlib.import_module(module), attribute)
