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


# The environment known_secrets last read (its (name, value) pairs) and the secrets in it.
_last_read: tuple[tuple[tuple[bytes, bytes], ...], list[str]] | None = None


def known_secrets() -> list[str]:
    """Values of environment variables that hold keys (long enough to be keys).

    Read again at every call, so a key set later is still redacted. Where the environment is
    bytes (POSIX), the secrets are found again only when it changed: a tuple of its pairs is
    compared with the last one read (the same objects while nothing changed: 2-3 us), where
    finding them by name takes 20 us, twice per traced call (its start and end)."""
    global _last_read
    raw = getattr(os.environ, "_data", None)  # CPython's bytes mapping behind os.environ
    if os.supports_bytes_environ and isinstance(raw, dict):
        pairs = tuple(raw.items())
        last = _last_read
        if last is not None and last[0] == pairs:
            return list(last[1])
        found = [
            os.fsdecode(value)
            for name, value in pairs
            if name.upper().endswith(_SUFFIXES_BYTES) and len(value) >= 8
        ]
        _last_read = (pairs, found)
        return list(found)
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
