"""Two costs weave's tracing pays at every call on this Python, removed without changing what
is traced. Both were found by profiling bench/scale.py (see bench/RESULTS.md, Scale).

- weave looks for a wandb run with `import wandb` at every call start and end
  (`weave.trace.wandb_run_context._get_global_wandb_run`). Without wandb installed a failed
  import is not cached, so each one searches sys.path again under the import lock. A None in
  sys.modules makes that import fail at once, as it would anyway.
- weave's `is_op` is `isinstance(obj, Op)` against a runtime-checkable Protocol on Python
  3.11, which walks the Protocol's members at every check (~45 us; a fifth of a traced call).
  On 3.12+ weave itself checks that the object has the attributes annotated on `Op` instead;
  on 3.11 evalflow gives weave's modules that same check, for the local store only (a W&B
  project runs weave's own `is_op`).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import sys
import typing
from typing import Any

from evalflow.patches._gate import stand_aside, version_problem

DISTRIBUTION = "weave"
VERIFIED = ">=0.54,<0.55"
WANDB_PATCH = "weave: a missing wandb is remembered"
IS_OP_PATCH = "weave: is_op checks Op's attributes on Python 3.11"
# The modules that bind is_op by name, loaded before patching so that they are in sys.modules.
IS_OP_USERS = ("weave.evaluation.eval", "weave.flow.scorer")
# What Op's annotations were when the patch was verified (the attributes is_op then checks),
# and the members isinstance() checks besides them (every function and op has those).
OP_ANNOTATIONS = frozenset(
    {
        "__self__",
        "_accumulator",
        "_code_capture_enabled",
        "_on_finish_handler",
        "_on_finish_post_processor",
        "_on_input_handler",
        "_on_output_handler",
        "_set_on_finish_handler",
        "_set_on_input_handler",
        "_set_on_output_handler",
        "_tracing_enabled",
        "attributes",
        "call",
        "call_display_name",
        "calls",
        "color",
        "eager_call_start",
        "kind",
        "name",
        "postprocess_inputs",
        "postprocess_output",
        "ref",
        "resolve_fn",
        "tracing_sample_rate",
    }
)
OP_METHODS = frozenset({"__call__", "__get__"})
# Values weave walks in every call's inputs and output, never ops: an instance of exactly one
# of these types has no attribute of its own, nor any of Op's on its class.
_PLAIN_TYPES: frozenset[type] = frozenset(
    {str, int, float, bool, type(None), bytes, list, tuple, dict, set}
)


def wandb_drift() -> list[str]:
    """What differs upstream from what remembering a missing wandb relies on (empty: nothing):
    weave's only wandb lookup on a call's path still treats a failed import as no run."""
    from weave.trace import wandb_run_context

    lookup = getattr(wandb_run_context, "_get_global_wandb_run", None)
    if lookup is None:
        return ["weave.trace.wandb_run_context._get_global_wandb_run is gone"]
    source = inspect.getsource(lookup)
    if "import wandb" not in source or "except ImportError" not in source:
        return ["_get_global_wandb_run no longer treats a failed `import wandb` as no run"]
    return []


def remember_wandb_is_absent() -> bool:
    """Make `import wandb` fail at once when wandb is not installed (once a process, on the
    verified weave versions). Returns whether wandb is now remembered as absent."""
    if sys.modules.get("wandb", False) is None:
        return True
    if "wandb" in sys.modules or importlib.util.find_spec("wandb") is not None:
        return False  # wandb is installed: nothing to remember
    problem = version_problem(DISTRIBUTION, VERIFIED)
    problems = [problem] if problem else wandb_drift()
    if problems:
        stand_aside(WANDB_PATCH, problems)
        return False
    sys.modules["wandb"] = None  # type: ignore[assignment]
    return True


def is_op_drift() -> list[str]:
    """What differs upstream from the internals the attribute is_op relies on (empty: nothing)."""
    import weave.trace.op as op_module

    original = getattr(op_module.is_op, "__wrapped_is_op__", op_module.is_op)
    problems: list[str] = []
    if list(inspect.signature(original).parameters) != ["obj"]:
        problems.append("weave.trace.op.is_op no longer takes one argument, obj")
    if "Op.__annotations__" not in inspect.getsource(original):
        problems.append("weave's own is_op (3.12+) no longer checks Op.__annotations__")
    op = op_module.Op
    if not getattr(op, "_is_runtime_protocol", False):
        problems.append("weave.trace.op.Op is no longer a runtime-checkable Protocol")
    annotations = frozenset(getattr(op, "__annotations__", {}))
    if annotations != OP_ANNOTATIONS:
        added, gone = sorted(annotations - OP_ANNOTATIONS), sorted(OP_ANNOTATIONS - annotations)
        problems.append(f"Op's annotated members changed (added {added}, gone {gone})")
    members = frozenset(typing._get_protocol_attrs(op))  # type: ignore[attr-defined]
    if members - annotations != OP_METHODS:
        problems.append(f"isinstance(x, Op) also checks {sorted(members - annotations)}")
    for plain in _PLAIN_TYPES:
        if found := sorted(name for name in annotations if hasattr(plain, name)):
            problems.append(f"{plain.__name__} has Op's members {found}: it may be an op")
    for name in IS_OP_USERS:
        if getattr(importlib.import_module(name), "is_op", None) is None:
            problems.append(f"{name} no longer binds is_op")
    return problems


@functools.cache
def _is_op_problems() -> tuple[str, ...]:
    problem = version_problem(DISTRIBUTION, VERIFIED)
    return (problem,) if problem else tuple(is_op_drift())


def _rebind(old: Any, new: Any) -> int:
    rebound = 0
    for loaded, module in list(sys.modules.items()):
        if loaded.split(".", 1)[0] == "weave" and getattr(module, "is_op", None) is old:
            module.is_op = new  # type: ignore[attr-defined]
            rebound += 1
    return rebound


def use_attribute_is_op() -> int:
    """Give weave's loaded modules the attribute check of `is_op` (weave's own on 3.12+), on
    the verified weave versions; return how many modules now use it. Nothing to do on 3.12+."""
    if sys.version_info >= (3, 12):
        return 0
    for name in IS_OP_USERS:
        importlib.import_module(name)
    if problems := _is_op_problems():
        stand_aside(IS_OP_PATCH, list(problems))
        return 0
    is_op = _attribute_is_op()
    return _rebind(is_op.__wrapped_is_op__, is_op)


@functools.cache
def _attribute_is_op() -> Any:
    import weave.trace.op as op_module

    attributes = tuple(op_module.Op.__annotations__)

    def is_op(obj: Any) -> bool:
        if type(obj) in _PLAIN_TYPES:  # no instance attributes, and their classes have none
            return False
        return all(hasattr(obj, name) for name in attributes)

    is_op.__wrapped_is_op__ = op_module.is_op  # type: ignore[attr-defined]
    return is_op


def restore_is_op() -> int:
    """Give weave's modules their own `is_op` back; return how many modules had the patch."""
    op_module = sys.modules.get("weave.trace.op")
    patched = getattr(op_module, "is_op", None)
    original = getattr(patched, "__wrapped_is_op__", None)
    return 0 if original is None else _rebind(patched, original)
