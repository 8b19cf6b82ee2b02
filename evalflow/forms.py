"""Help text for the Prefect UI's run form, from the flow's own parameter descriptions.

Prefect builds a deployment's form from the flow's signature, and takes each field's help
text from a pydantic `Field` given as the default value or from a Google-style `Args:`
section of the docstring; a `Field(description=...)` inside `Annotated[...]` keeps its
constraints but loses its description (prefect 3.9). `form_help` writes the `Args:` section
from those descriptions onto the flow object's `__doc__`, which is what Prefect's
parameter_schema reads; the flow's description (taken from the function when the flow was
made) stays as written.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any, TypeVar

from pydantic.fields import FieldInfo

F = TypeVar("F")


def descriptions(fn: Any) -> dict[str, str]:
    """Each parameter's `Field(description=...)` from its `Annotated[...]` type."""
    hints = typing.get_type_hints(fn, include_extras=True)
    found: dict[str, str] = {}
    for name in inspect.signature(fn).parameters:
        for meta in getattr(hints.get(name), "__metadata__", ()):
            if isinstance(meta, FieldInfo) and meta.description:
                found[name] = " ".join(meta.description.split())
    return found


def args_section(help_text: dict[str, str]) -> str:
    """A Google-style `Args:` section, one line per parameter."""
    return "\n\nArgs:\n" + "".join(f"    {name}: {text}\n" for name, text in help_text.items())


def form_help(flow: F) -> F:
    """Give a flow's run form the help text of its parameters' `Field` descriptions (apply it
    above `@flow`)."""
    fn = getattr(flow, "fn", flow)
    doc = inspect.getdoc(fn) or ""
    flow.__doc__ = doc + args_section(descriptions(fn))
    return flow
