"""Keep secrets out of everything the store writes: key-like fields and known key values."""

from __future__ import annotations

import os
from typing import Any

SECRET_KEYS = {
    "api_key",
    "apikey",
    "api-key",
    "x-api-key",
    "authorization",
    "openai_api_key",
    "wandb_api_key",
    "password",
    "secret",
    "access_token",
    "refresh_token",
}
SECRET_ENV_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET", "_PASSWORD")
REDACTED = "REDACTED"
_SUFFIXES_BYTES = tuple(s.encode() for s in SECRET_ENV_SUFFIXES)


def known_secrets() -> list[str]:
    """Values of environment variables that hold keys (long enough to be keys).

    Read again at every call, so a key set later is still redacted. Where the environment is
    bytes (POSIX), only the matching values are decoded: 6 vs 32 us here, paid by every call
    the store records."""
    raw = getattr(os.environ, "_data", None)  # CPython's bytes mapping behind os.environ
    if os.supports_bytes_environ and isinstance(raw, dict):
        return [
            os.fsdecode(value)
            for name, value in raw.items()
            if name.upper().endswith(_SUFFIXES_BYTES) and len(value) >= 8
        ]
    return [
        value
        for name, value in os.environ.items()
        if name.upper().endswith(SECRET_ENV_SUFFIXES) and len(value) >= 8
    ]


def redact(value: Any, secrets: list[str] | None = None) -> Any:
    """A copy of a JSON value with key-like fields and known secret values replaced."""
    if secrets is None:
        secrets = known_secrets()
    if isinstance(value, dict):
        return {
            k: REDACTED if str(k).lower() in SECRET_KEYS and v else redact(v, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    if isinstance(value, str) and secrets:
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
    return value
