"""The wheel installs one package, evalflow: the Prefect project (flows/, tasks/, evals/,
prefect.yaml) ships inside it, and no generic top-level package lands in site-packages."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_wheel_holds_only_evalflow_and_its_project(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    assert uv is not None, "uv runs the tests (README), so it is on PATH"
    subprocess.run(
        [uv, "build", "--wheel", "-o", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"evalflow", "evalflow-0.1.0.dist-info"}
    for shipped in (
        "flows/evaluate.py",
        "tasks/inference.py",
        "evals/qa-basics.yaml",
        "evals/data/qa-basics.jsonl",
        "prefect.yaml",
    ):
        assert f"evalflow/_project/{shipped}" in names
    assert not any("/bench/" in n for n in names)


def test_the_project_is_found_in_a_checkout() -> None:
    from evalflow.config import evals_dir
    from evalflow.project import project_root

    assert project_root() == ROOT
    assert evals_dir() == ROOT / "evals"
