"""A command that succeeded exits without the interpreter's teardown, but after everything the
interpreter would run first: threading's exit hooks (Prefect drains its events and logs
there), the wait for non-daemon threads, the exit handlers, and its output flushed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

PROGRAM = textwrap.dedent(
    """
    import atexit, sys, threading, time
    from pathlib import Path
    from evalflow.cli import _exit_done

    folder = Path(sys.argv[1])
    threading._register_atexit(lambda: (folder / "threading").write_text("drained"))
    atexit.register(lambda: (folder / "atexit").write_text("flushed"))

    def late() -> None:
        time.sleep(0.5)
        (folder / "thread").write_text("finished")

    threading.Thread(target=late).start()  # not a daemon: the exit waits for it
    sys.stdout.write("x" * 100_000)  # partly still in the buffer
    _exit_done()
    raise SystemExit(3)  # never reached
    """
)


def test_a_finished_command_exits_0_after_every_hook_thread_and_byte_of_output(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "x" * 100_000
    assert (tmp_path / "threading").read_text() == "drained"
    assert (tmp_path / "thread").read_text() == "finished"
    assert (tmp_path / "atexit").read_text() == "flushed"
