"""Two costs weave's tracing pays at every call on this Python, removed without changing what
is traced. Both were found by profiling bench/scale.py (see bench/RESULTS.md, Scale).

- weave looks for a wandb run with `import wandb` at every call start and end. Without wandb
  installed a failed import is not cached, so each one searches sys.path again under the
  import lock. A None in sys.modules makes that import fail at once, as it would anyway.
- weave's `is_op` is `isinstance(obj, Op)` against a runtime-checkable Protocol on Python
  3.11, which walks the Protocol's members at every check (~45 us; a fifth of a traced call).
  On 3.12+ weave itself checks that the object has the Protocol's attributes instead; on
  3.11 evalflow gives weave's modules that same check.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any


def remember_wandb_is_absent() -> None:
    if "wandb" not in sys.modules and importlib.util.find_spec("wandb") is None:
        sys.modules["wandb"] = None  # type: ignore[assignment]


def use_attribute_is_op() -> int:
    """Give weave's loaded modules the attribute check of `is_op` (weave's own on 3.12+);
    return how many modules now use it. Nothing to do on 3.12+."""
    if sys.version_info >= (3, 12):
        return 0
    # Loaded first, so that the modules binding is_op by name are in sys.modules.
    for name in ("weave.evaluation.eval", "weave.flow.scorer"):
        importlib.import_module(name)
    import weave.trace.op as op_module

    original = getattr(op_module.is_op, "__wrapped_is_op__", op_module.is_op)
    attributes = tuple(op_module.Op.__annotations__)

    def is_op(obj: Any) -> bool:
        return all(hasattr(obj, name) for name in attributes)

    is_op.__wrapped_is_op__ = original  # type: ignore[attr-defined]
    patched = 0
    for loaded, module in list(sys.modules.items()):
        if loaded.split(".", 1)[0] == "weave" and getattr(module, "is_op", None) is original:
            module.is_op = is_op  # type: ignore[attr-defined]
            patched += 1
    return patched
