"""Plain values skip weave's per-value dispatch in three walks of every traced call.

At each call start and end weave walks the inputs and the output three times: looking for
objects to save (`WeaveClient._save_nested_objects`), turning objects into refs
(`map_to_refs`) and encoding for the server (`to_json`, bound by name in
`weave.trace.weave_client`). Each walk asks every value a ladder of type checks (pydantic
model, dataclass, table, op, ref, namedtuple...). A traced chat request's inputs and output
are plain JSON values (dicts with string keys, lists, strings, numbers, booleans, None), for
which those walks change nothing: the first finds nothing to save and the other two return
a copy of the containers with the same leaves. For a value made only of exactly those types
(subclasses excluded: an enum or a namedtuple takes weave's own path), the patched functions
give that result directly; anything else goes to weave's own function, unchanged.

Installed for the local Weave store only (as the is_op patch, where it was measured), on the
verified weave versions, when weave's functions are still the ones read (their source is
compared with what was verified: any upstream change makes the patch stand aside).
"""

from __future__ import annotations

import functools
from typing import Any

from evalflow.patches._gate import source_digest, stand_aside, version_problem

DISTRIBUTION = "weave"
VERIFIED = ">=0.54,<0.55"
PATCH = "weave: plain values skip the per-value dispatch of a call's walks"
# sha256 (16 hex digits) of the source of every weave function the fast path stands for.
VERIFIED_SOURCES = {
    "serialize.to_json": "c4b6ff817bbc2aa2",
    "serialize._encode_ref": "0f29311b89f830a0",
    "serialize._encode_object_record": "1998159faa6292e9",
    "serialize._encode_container": "eff641123cdab711",
    "serialize._encode_pydantic_schema": "c5723011de05d8ff",
    "serialize._encode_primitive": "d8e11949e1e49c80",
    "weave_client.map_to_refs": "ad19cb91a7fb5316",
    "weave_client._get_direct_ref": "48f7ce7dd845cba8",
    "weave_client.WeaveClient._save_nested_objects": "76a90715ea37ba0b",
    "ref_util.get_ref": "148d36c27052cf6f",
}
ENCODERS_FIRST = (
    "_encode_ref",
    "_encode_object_record",
    "_encode_container",
    "_encode_pydantic_schema",
    "_encode_primitive",
)
_LEAVES: frozenset[type] = frozenset({str, int, float, bool, type(None)})
_MISS = object()


def is_plain(value: Any) -> bool:
    """Whether `value` is made only of exactly dict (string keys), list, tuple, str, int,
    float, bool and None."""
    kind = type(value)
    if kind in _LEAVES:
        return True
    if kind is dict:
        return all(type(key) is str and is_plain(item) for key, item in value.items())
    if kind is list or kind is tuple:
        return all(is_plain(item) for item in value)
    return False


def plain_copy(value: Any) -> Any:
    """What weave's `to_json` and `map_to_refs` give for a plain value (dicts and lists
    copied, tuples as lists, leaves kept), or _MISS when `value` is not plain."""
    kind = type(value)
    if kind in _LEAVES:
        return value
    if kind is dict:
        copied: dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is not str:
                return _MISS
            item = plain_copy(item)
            if item is _MISS:
                return _MISS
            copied[key] = item
        return copied
    if kind is list or kind is tuple:
        items = []
        for item in value:
            item = plain_copy(item)
            if item is _MISS:
                return _MISS
            items.append(item)
        return items
    return _MISS


def _modules() -> dict[str, Any]:
    import weave.trace.ref_util as ref_util
    import weave.trace.serialization.serialize as serialize
    import weave.trace.weave_client as weave_client

    return {"serialize": serialize, "weave_client": weave_client, "ref_util": ref_util}


def _original(value: Any) -> Any:
    return getattr(value, "__weave_plain_original__", value)


def drift() -> list[str]:
    """What differs upstream from what the fast path was verified against (empty: nothing)."""
    modules = _modules()
    problems: list[str] = []
    for name, expected in VERIFIED_SOURCES.items():
        found: Any = modules
        for part in name.split("."):
            found = found.get(part) if isinstance(found, dict) else getattr(found, part, None)
        if found is None:
            problems.append(f"weave's {name} is gone")
        elif source_digest(_original(found)) != expected:
            problems.append(f"weave's {name} changed")
    encoders = tuple(e.__name__ for e in getattr(modules["serialize"], "_ENCODERS", []))
    if encoders[: len(ENCODERS_FIRST)] != ENCODERS_FIRST:
        problems.append(f"to_json's first encoders changed: {encoders[: len(ENCODERS_FIRST)]}")
    if _original(modules["weave_client"].to_json) is not modules["serialize"].to_json:
        problems.append("weave.trace.weave_client no longer binds serialize.to_json")
    return problems


@functools.cache
def _problems() -> tuple[str, ...]:
    problem = version_problem(DISTRIBUTION, VERIFIED)
    return (problem,) if problem else tuple(drift())


def _fast_copy(original: Any) -> Any:
    @functools.wraps(original)
    def patched(obj: Any, *args: Any, **kwargs: Any) -> Any:
        copied = plain_copy(obj)
        return original(obj, *args, **kwargs) if copied is _MISS else copied

    patched.__weave_plain_original__ = original  # type: ignore[attr-defined]
    return patched


def _fast_save(original: Any) -> Any:
    @functools.wraps(original)
    def patched(self: Any, obj: Any, name: str | None = None) -> Any:
        if is_plain(obj):
            return None  # nothing in it to save
        return original(self, obj, name)

    patched.__weave_plain_original__ = original  # type: ignore[attr-defined]
    return patched


def use_plain_fast_path() -> bool:
    """Install the fast path (once a process) on the verified weave versions; return whether
    it is installed."""
    modules = _modules()
    client_module = modules["weave_client"]
    if hasattr(client_module.to_json, "__weave_plain_original__"):
        return True
    if problems := _problems():
        stand_aside(PATCH, list(problems))
        return False
    _rebind(client_module, _fast_copy, _fast_save)
    return True


def restore_weave_walks() -> bool:
    """Give weave its own functions back; return whether the fast path was installed."""
    modules = _modules()
    client_module = modules["weave_client"]
    if not hasattr(client_module.to_json, "__weave_plain_original__"):
        return False
    _rebind(client_module, _original, _original)
    return True


def _rebind(client_module: Any, walks: Any, save: Any) -> None:
    """Rebind the three walks: `walks` of `to_json` and `map_to_refs`, `save` of
    `WeaveClient._save_nested_objects`."""
    client_module.to_json = walks(client_module.to_json)
    client_module.map_to_refs = walks(client_module.map_to_refs)
    client = client_module.WeaveClient
    client._save_nested_objects = save(client._save_nested_objects)
