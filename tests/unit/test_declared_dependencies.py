"""Every third-party module evalflow, flows and tasks import comes from a declared dependency
(pyproject.toml's [project] dependencies), not from whatever another package pulled in."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"evalflow", "flows", "tasks", "evals", "bench", "tests"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_canonical(Requirement(line).name) for line in project["dependencies"]}


def _optional(tree: ast.AST) -> set[ast.AST]:
    """Imports inside `try: ... except ImportError:` (used when there, skipped otherwise)."""
    found: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
            for h in node.handlers
        ):
            found.update(n for stmt in node.body for n in ast.walk(stmt))
    return found


def imported_modules() -> dict[str, set[str]]:
    """Top-level module -> the files that import it (absolute imports at any depth, optional
    imports left out)."""
    found: dict[str, set[str]] = {}
    for folder in ("evalflow", "flows", "tasks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            optional = _optional(tree)
            for node in ast.walk(tree):
                if node in optional:
                    continue
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_a_declared_dependency() -> None:
    providers = importlib.metadata.packages_distributions()
    wanted = declared()
    undeclared = {}
    for module, files in imported_modules().items():
        if module in sys.stdlib_module_names or module in FIRST_PARTY:
            continue
        distributions = {_canonical(d) for d in providers.get(module, [])}
        if not distributions & wanted:
            undeclared[module] = (sorted(distributions), sorted(files))
    assert undeclared == {}, f"module -> (its distributions, importers): {undeclared}"


def test_the_walk_sees_the_imports_it_checks() -> None:
    modules = imported_modules()
    assert {"openai", "weave", "prefect", "httpx2", "packaging"} <= modules.keys()
    assert "uvloop" not in modules  # imported only if installed (evalflow/endpoints/sim.py)
