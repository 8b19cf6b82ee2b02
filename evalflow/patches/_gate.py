"""The guard every patch goes through: the installed version it was verified against, a check
of the upstream internals it relies on, and a one-time warning when it stands aside."""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import warnings
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

_warned: set[str] = set()


def version_problem(distribution: str, verified: str) -> str | None:
    """Why the installed `distribution` is outside the `verified` specifier set, or None."""
    try:
        installed = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return f"{distribution} is not installed"
    try:
        inside = Version(installed) in SpecifierSet(verified)
    except InvalidVersion:
        inside = False
    return None if inside else f"{distribution} {installed} is not in the verified {verified}"


def source_digest(function: Any) -> str:
    """sha256 (16 hex digits) of `function`'s source: what a patch compares with the source it
    was verified against, so that any upstream change makes it stand aside."""
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]


def stand_aside(patch: str, problems: list[str]) -> None:
    """Say once a process that `patch` is not installed (the library keeps its own behaviour)."""
    if patch in _warned:
        return
    _warned.add(patch)
    message = (
        f"evalflow patch {patch!r} not installed, the library's own behaviour is kept: "
        f"{'; '.join(problems)}. See evalflow/patches/__init__.py"
    )
    warnings.warn(message, RuntimeWarning, stacklevel=3)
