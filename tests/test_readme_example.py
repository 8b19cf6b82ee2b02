"""The README's Python example runs as written, on the simulated endpoint (with the answer key
the README makes) and a Prefect server, and prints the leaderboard it promises."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from evalflow.endpoints import SimEndpoint
from tests.suites import expected_accuracy

ROOT = Path(__file__).resolve().parents[1]
README_URL = '"http://127.0.0.1:8001/v1"'


def readme_example() -> str:
    """The first Python block of the README's "In Python" section."""
    section = (ROOT / "README.md").read_text().split("## In Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the README has no Python example under 'In Python'"
    return match.group(1)


def test_the_readme_example_evaluates_two_models_and_prints_the_leaderboard(
    prefect_server: str,
    sim: SimEndpoint,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = [json.loads(line) for line in (ROOT / "evals/data/qa-basics.jsonl").open()]
    sim.configure(answer_key={r["question"]: r["answer"] for r in rows})  # the README's key.json
    monkeypatch.delenv("EVALFLOW_EVALS_DIR", raising=False)  # the suites shipped in evals/
    code = readme_example()
    assert code.count(README_URL) == 1
    exec(compile(code.replace(README_URL, repr(sim.base_url)), "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("results in ") and Path(printed[0][11:]).is_dir()
    half = expected_accuracy("sim-half", 0.5, rows)
    board = {line.split()[0]: [float(x) for x in line.split()[1:]] for line in printed[1:]}
    assert board["oracle"] == [1.0, 1.0]
    assert board["sim-half"] == [pytest.approx(half), pytest.approx(half)]
    assert sim.stats()["by_model"] == {"oracle": {"200": 120}, "sim-half": {"200": 120}}


def test_import_evalflow_loads_no_flow_and_evaluate_is_the_flow() -> None:
    """`import evalflow` stays light (no flows, Prefect or Weave); `evalflow.evaluate` is the
    evaluate flow, imported when first asked for."""
    code = (
        "import sys, evalflow\n"
        "evalflow.init_weave\n"
        "print(sorted(m for m in ('flows', 'prefect', 'weave') if m in sys.modules))\n"
        "from evalflow import evaluate\n"
        "import flows.evaluate\n"
        "print(evaluate is flows.evaluate.evaluate, evaluate.name)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "True evaluate"]
