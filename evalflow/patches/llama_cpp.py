"""Load the local LLM's weights without llama.cpp's extra buffer types (weight repacking).

On CPUs that advertise AMX inside VMs that do not grant AMX tile state (this machine kind),
the AMX matmul of the repacked weights segfaults at the first decode. Repacking gains little
for a 270M model, so the local LLM process (evalflow/endpoints/llama_server.py) loads weights
plainly: llama-cpp-python's `llama_model_default_params` then returns its defaults with the
ctypes field `use_extra_bufts` off. The field is checked first: on a ctypes Structure, setting
a field that was renamed would silently create a plain attribute, and the segfault would return.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

from evalflow.patches._gate import stand_aside, version_problem

DISTRIBUTION = "llama-cpp-python"
VERIFIED = ">=0.3.36,<0.4"
PATCH = "llama-cpp-python: weights loaded without repacking"
FIELD = "use_extra_bufts"
ORIGINAL = "__evalflow_original__"  # on the patched function: the one it wraps


def drift() -> list[str]:
    """What differs upstream from the internals this patch relies on (empty: nothing)."""
    import llama_cpp.llama_cpp as native

    params = getattr(native, "llama_model_params", None)
    fields = dict(getattr(params, "_fields_", []))
    problems: list[str] = []
    if fields.get(FIELD) is not ctypes.c_bool:
        problems.append(f"llama_model_params has no c_bool field {FIELD!r} (has {sorted(fields)})")
    default = getattr(native, "llama_model_default_params", None)
    original = getattr(default, ORIGINAL, default)
    if original is None or getattr(original, "restype", None) is not params:
        problems.append("llama_model_default_params no longer returns a llama_model_params")
    elif getattr(original, "argtypes", None):
        problems.append("llama_model_default_params now takes arguments")
    import inspect

    import llama_cpp.llama as high_level

    init = inspect.getsource(high_level.Llama.__init__)
    if high_level.llama_cpp is not native or "llama_cpp.llama_model_default_params()" not in init:
        problems.append("Llama() no longer takes its defaults from llama_model_default_params")
    return problems


@functools.cache
def disable_weight_repacking() -> bool:
    """Make llama-cpp-python load weights without repacking (once a process, on the verified
    versions and only if the ctypes field is there; else as shipped, with a warning). Returns
    whether the patch is installed."""
    problem = version_problem(DISTRIBUTION, VERIFIED)
    problems = [problem] if problem else drift()
    if problems:
        stand_aside(PATCH, problems)
        return False
    import llama_cpp.llama_cpp as native

    default_params = native.llama_model_default_params
    if hasattr(default_params, ORIGINAL):
        return True  # installed already

    def plain_params() -> Any:
        params = default_params()
        setattr(params, FIELD, False)
        return params

    setattr(plain_params, ORIGINAL, default_params)
    native.llama_model_default_params = plain_params
    return True
