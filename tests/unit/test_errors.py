"""evalflow's exceptions form one documented tree: every one is an EvalflowError, the tree in
errors.py's docstring is the real hierarchy, and every class is raised or caught somewhere."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import evalflow.errors as errors

ROOT = Path(__file__).resolve().parents[2]
# Exception classes defined outside errors.py on purpose, with the reason.
NOT_ERRORS: dict[str, str] = {}


def defined() -> dict[str, type[BaseException]]:
    return {
        name: value
        for name, value in vars(errors).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == errors.__name__
    }


def drawn() -> dict[str, str | None]:
    """Class -> parent, as the docstring draws it ('+' marks a class, indented under its parent)."""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        match = re.match(r"^(\s*(?:\|\s*)*)[*+] (\w+)", line)
        if not match:
            continue
        depth, name = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[name] = stack[-1][1] if stack else None
        stack.append((depth, name))
    return parents


def test_every_error_is_an_evalflow_error() -> None:
    assert all(issubclass(c, errors.EvalflowError) for c in defined().values())


def test_the_docstring_draws_the_real_tree() -> None:
    real = {
        name: (None if c is errors.EvalflowError else c.__bases__[0].__name__)
        for name, c in defined().items()
    }
    assert drawn() == real, "draw each class of errors.py under its parent in its docstring"


def test_no_exception_class_lives_outside_errors_py() -> None:
    found = {}
    for folder in ("evalflow", "flows", "tasks"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "errors.py" and path.parent.name == "evalflow":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef) and any(
                    isinstance(b, ast.Name) and b.id.endswith(("Exception", "Error"))
                    for b in node.bases
                ):
                    found[node.name] = str(path.relative_to(ROOT))
    assert found == NOT_ERRORS


def test_every_error_class_is_used() -> None:
    sources = [
        p.read_text()
        for folder in ("evalflow", "flows", "tasks")
        for p in (ROOT / folder).rglob("*.py")
        if p != ROOT / "evalflow" / "errors.py"
    ]
    unused = [
        name
        for name in defined()
        if not any(re.search(rf"\b{name}\b", source) for source in sources)
    ]
    assert unused == []
