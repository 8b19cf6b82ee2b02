"""`evalflow run` pauses Python's cyclic garbage collector while it imports (evalflow/cli.py):
it must come back on however the command ends, and leave what lives then out of every later
collection (frozen, not walked again)."""

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


def test_the_collector_is_paused_then_resumes_with_what_lives_frozen() -> None:
    with _collector_paused() as imports_done:
        assert not gc.isenabled()
        node = weakref.ref(_Node())
        for _ in range(10 * gc.get_threshold()[0]):
            _Node()  # past the threshold at which a running collector would collect
        assert node() is not None  # no collection while paused
        imports_done()
        assert gc.isenabled()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        made_after = weakref.ref(_Node())
        gc.collect()
        assert node() is not None  # frozen uncollected: no walk of what lived at the resume
        assert made_after() is None  # the collector works again for what comes next
        kept = [_Node() for _ in range(100)]
        imports_done()  # a second call changes nothing: what lives now is not frozen
        assert gc.isenabled()
        assert gc.get_freeze_count() <= frozen
        assert len(kept) == 100
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
