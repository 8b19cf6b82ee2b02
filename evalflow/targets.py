"""Where a model is answered: its spec, base URL, key and headers. Light to import (no
openai, no weave), so the CLI checks endpoints before the heavy imports."""

from __future__ import annotations

import os
from dataclasses import dataclass

from evalflow.config import ModelSpec, wandb_base_url
from evalflow.errors import ConfigError
from evalflow.weave_local.redact import known_secrets, redact

LOCAL_LLM_ENV = "EVALFLOW_LOCAL_LLM_URL"  # a local LLM already running (evalflow up)


@dataclass(frozen=True)
class Target:
    """Where a model is reached: its spec and base URL (the local LLM's is known at run time)."""

    spec: ModelSpec
    base_url: str

    @staticmethod
    def of(spec: ModelSpec, local_url: str | None) -> Target:
        if spec.endpoint == "wandb":
            return Target(spec, wandb_base_url())
        if spec.endpoint == "local":
            local_url = local_url or os.environ.get(LOCAL_LLM_ENV)
            if local_url is None:
                raise ConfigError(f"model {spec.name!r} needs the local LLM, which is not running")
            return Target(spec, local_url)
        return Target(spec, spec.endpoint)

    def redact(self, text: str) -> str:
        """The text without any key this process knows: the model's own and the environment's
        (an endpoint may echo the key it was sent in an error message)."""
        env = self.spec.key_env
        own = os.environ.get(env, "") if env else ""
        secrets = [*known_secrets(), *([own] if len(own) >= 4 else [])]
        return str(redact(text, secrets))

    def headers(self) -> dict[str, str]:
        """Extra headers: W&B Inference attributes usage to the W&B project sent as
        `OpenAI-Project` (the registry entry's `project`, else the run's W&B Weave project,
        filled in when the run is planned)."""
        project = self.spec.project if self.spec.endpoint == "wandb" else None
        return {"OpenAI-Project": project} if project else {}

    def api_key(self) -> str:
        """The key, read from the environment when needed; never stored or passed around."""
        env = self.spec.key_env
        if env is None:
            return "not-needed"
        key = os.environ.get(env)
        if not key:
            raise ConfigError(
                f"model {self.spec.name!r} needs an API key: set the environment variable {env}"
            )
        return key
