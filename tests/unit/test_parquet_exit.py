"""A command that reads Parquet bytes (`evalflow failures`, `compare`, `history`, a Parquet
dataset) exits 0: pyarrow's threads never hold a Python object at the interpreter's exit.

Before evalflow.parquet, 5 of 100 such processes aborted here ("terminate called without an
active exception", exit code 134, apache/arrow#34314), `evalflow failures` in CI among them.
The race is at the exit, once per process, so the test starts many processes, four at a time
(contention on two cores made it likelier); with the old read, 60 processes see an abort with
a probability of about 0.95.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

READ_AND_EXIT = """
import sys
from evalflow.parquet import read_frame
frame = read_frame(open(sys.argv[1], "rb").read())
print(len(frame), frame["output"].iloc[-1])
"""


def test_processes_that_read_parquet_bytes_then_exit_all_exit_0(tmp_path: Path) -> None:
    path = tmp_path / "results.parquet"
    rows = 200
    pd.DataFrame(
        {
            "row_id": [f"r{i}" for i in range(rows)],
            "output": [f"answer {i}" for i in range(rows)],
            "score:exact_match": [i % 2 == 0 for i in range(rows)],
        }
    ).to_parquet(path)

    def read_in_a_process(_: int) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-c", READ_AND_EXIT, str(path)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    with ThreadPoolExecutor(4) as pool:
        done = list(pool.map(read_in_a_process, range(60)))
    failed = [(p.returncode, p.stderr.strip()[-200:]) for p in done if p.returncode != 0]
    assert not failed, f"{len(failed)} of {len(done)} processes failed: {failed[:3]}"
    assert {p.stdout.strip() for p in done} == {f"{rows} answer {rows - 1}"}
