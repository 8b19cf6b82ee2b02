"""Suites and registries written for a test, pointing at the simulated endpoint."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from evalflow.endpoints.sim import unit_hash


def questions(n: int) -> list[dict[str, str]]:
    return [
        {"id": f"q{i:04d}", "question": f"What is {i} plus {i}?", "answer": str(2 * i)}
        for i in range(n)
    ]


def answer_key(rows: list[dict[str, str]]) -> dict[str, str]:
    return {r["question"]: r["answer"] for r in rows}


def expected_accuracy(model: str, accuracy: float, rows: list[dict[str, str]]) -> float:
    """What the simulated endpoint's rule gives: right when hash(model, prompt) < accuracy."""
    right = sum(unit_hash("answer", model, r["question"]) < accuracy for r in rows)
    return right / len(rows)


def write_suite(
    folder: Path,
    name: str,
    rows: list[dict[str, str]] | list[str],
    base_url: str,
    models: dict[str, dict[str, object]],
    **suite: object,
) -> Path:
    """evals/<name>.yaml, its dataset and models.yaml in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{name}.jsonl"
    data.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    body = {
        "dataset": {"path": data.name, "id_field": "id"},
        "scorers": [{"kind": "exact_match"}],
        "models": list(models),
        **suite,
    }
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(body))
    registry = [
        {"name": model, "model": model, "endpoint": base_url, **extra}
        for model, extra in models.items()
    ]
    (folder / "models.yaml").write_text(yaml.safe_dump({"models": registry}))
    return folder
