"""What the simulated endpoint does: latency, limits, faults, and which models answer how well."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from evalflow.errors import ConfigError

FAULT_KINDS = (
    "error_500",
    "error_502",
    "error_503",
    "error_429",
    "quota",
    "hang",
    "drop",
    "malformed",
)


class SimProfile(BaseModel):
    """A profile of the simulated OpenAI-compatible endpoint.

    Faults are drawn per request from a hash of (seed, model, prompt, how many times this
    server has seen that model and prompt), so a rerun of the same requests meets the same
    faults whatever the order they arrive in, and a retry gets a fresh draw.
    """

    model_config = ConfigDict(extra="forbid")

    latency_ms: float = Field(0.0, ge=0, description="mean latency of an answer")
    jitter_ms: float = Field(0.0, ge=0, description="uniform jitter around the mean latency")
    rpm: int | None = Field(None, gt=0, description="requests per minute (sliding 60 s window)")
    tpm: int | None = Field(None, gt=0, description="tokens per minute (sliding 60 s window)")
    error_500: float = Field(0.0, ge=0, le=1)
    error_502: float = Field(0.0, ge=0, le=1)
    error_503: float = Field(0.0, ge=0, le=1)
    error_429: float = Field(0.0, ge=0, le=1, description="429s not caused by the limits")
    quota: float = Field(0.0, ge=0, le=1, description="429 insufficient_quota (not retryable)")
    hang: float = Field(0.0, ge=0, le=1, description="fraction of requests that hang")
    hang_seconds: float = Field(120.0, gt=0, description="how long a hung request hangs")
    drop: float = Field(0.0, ge=0, le=1, description="fraction of connections dropped")
    malformed: float = Field(0.0, ge=0, le=1, description="fraction of 200s with a broken body")
    judge_garbled: float = Field(
        0.0, ge=0, le=1, description="fraction of a judge's replies that carry no grade"
    )
    seed: int = 0
    models: dict[str, float] = Field(
        default_factory=lambda: {"oracle": 1.0, "sim-good": 0.8, "sim-half": 0.5},
        description="model id -> probability of a right answer (a judge: of a right grade)",
    )
    answer_key: dict[str, str] = Field(
        default_factory=dict, description="prompt text (last user message) -> right answer"
    )
    api_key: str | None = Field(None, description="if set, requests must bear this key (401)")
    echo_key: bool = Field(
        False, description="a 401 quotes the key it was sent, as some providers do"
    )

    @model_validator(mode="after")
    def _faults_fit(self) -> SimProfile:
        total = sum(getattr(self, kind) for kind in FAULT_KINDS)
        if total > 1.0:
            raise ValueError(f"fault rates add up to {total:.3f}, more than 1")
        for name, p in self.models.items():
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"model {name!r}: accuracy {p} is not between 0 and 1")
        return self


def load_answer_key(path: str | Path) -> dict[str, str]:
    """Read an answer key: a JSON object {prompt: answer} or JSONL rows {"prompt", "answer"}."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"answer key {path}: cannot read it ({exc.strerror})") from None
    stripped = text.lstrip()
    if stripped.startswith("{") and "\n{" not in stripped:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"answer key {path}: not valid JSON ({exc})") from None
        return {str(k): str(v) for k, v in data.items()}
    key: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            key[str(row["prompt"])] = str(row["answer"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ConfigError(
                f'answer key {path}, line {lineno}: expected {{"prompt": ..., "answer": ...}}'
            ) from None
    return key


def parse_model_specs(specs: list[str]) -> dict[str, float]:
    """Turn ["oracle=1", "weak=0.3"] into {"oracle": 1.0, "weak": 0.3}."""
    models: dict[str, float] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        try:
            models[name] = float(value) if sep else 1.0
        except ValueError:
            raise ConfigError(f"--model {spec!r}: expected NAME=ACCURACY, e.g. weak=0.3") from None
    return models
