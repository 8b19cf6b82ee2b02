"""Local OpenAI-compatible endpoints: the local LLM and the simulated endpoint."""

from evalflow.endpoints.llm import MODEL_ID as LOCAL_MODEL_ID
from evalflow.endpoints.llm import ensure_weights, local_llm
from evalflow.endpoints.sim_profile import SimProfile
from evalflow.endpoints.simulated import SimEndpoint, sim_endpoint

__all__ = [
    "LOCAL_MODEL_ID",
    "SimEndpoint",
    "SimProfile",
    "ensure_weights",
    "local_llm",
    "sim_endpoint",
]
