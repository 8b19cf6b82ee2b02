"""`evalflow run` pauses Python's cyclic garbage collector while it imports (evalflow/cli.py):
it must come back on however the command ends, and free what was made meanwhile."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from evalflow.cli import _collector_paused


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # the pause freezes what lives: give this test process its collector back
    gc.enable()


def test_the_collector_is_paused_then_frees_what_was_made_meanwhile() -> None:
    with _collector_paused() as imports_done:
        assert not gc.isenabled()
        node = weakref.ref(_Node())
        assert node() is not None  # no collection while paused
        imports_done()
        assert gc.isenabled()
        assert node() is None  # collected once, not frozen for the rest of the run
        imports_done()  # a second call changes nothing
        assert gc.isenabled()
    assert gc.isenabled()


def test_the_collector_comes_back_when_the_run_fails_before_its_imports() -> None:
    with pytest.raises(RuntimeError), _collector_paused():
        assert not gc.isenabled()
        raise RuntimeError("a user mistake, found while planning")
    assert gc.isenabled()


def test_a_collector_the_user_turned_off_stays_off() -> None:
    gc.disable()
    with _collector_paused() as imports_done:
        imports_done()
    assert not gc.isenabled()
