"""Suites and registries written for a test, pointing at the simulated endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import weave
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


def start_shared_runs(
    folder: Path, rows: list[dict[str, str]], base_url: str, api_url: str, rpm: int
) -> list[subprocess.Popen[str]]:
    """Two `evalflow run` processes at once (suites shared0 and shared1, chunks of 20) whose
    model has `limits.rpm`, so they share one Prefect limit on the server at api_url."""
    limits = {"limits": {"rpm": rpm, "max_concurrency": 16, "timeout_s": 5.0}}
    procs = []
    for i in range(2):
        evals = write_suite(folder / f"p{i}", f"shared{i}", rows, base_url, {"oracle": limits})
        command = ["run", f"shared{i}", "--chunk-size", "20", "--weave-project", f"local/shared{i}"]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "evalflow.cli", *command],
                env={**os.environ, "EVALFLOW_EVALS_DIR": str(evals), "PREFECT_API_URL": api_url},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


@weave.op
def answer_is_even(output: str | None, target: str) -> dict[str, bool]:
    """A `kind: python` scorer for the tests: is the answer an even number."""
    return {"even": str(output).strip().isdigit() and int(str(output)) % 2 == 0}
