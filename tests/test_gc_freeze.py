"""The read process's garbage collection: what ages is frozen, cycles still collected
by the full pass; its longest pass measured."""

from __future__ import annotations

import gc
import itertools
import threading
import types
import weakref
from collections.abc import Iterator

import pytest

from collector.common.gctuning import FreezeAsItAges, LongestPass


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def a_cycle() -> weakref.ref[Node]:
    """An unreachable cycle: only a collection that looks at it frees it."""
    first, second = Node(), Node()
    first.other, second.other = second, first
    return weakref.ref(first)


def a_held_cycle(holder: list[Node]) -> weakref.ref[Node]:
    """A cycle reachable while ``holder`` holds it."""
    first, second = Node(), Node()
    first.other, second.other = second, first
    holder.append(first)
    return weakref.ref(first)


@pytest.fixture
def quiet_gc() -> Iterator[None]:
    """Nothing frozen, no automatic pass: each pass is one the test asks for (one in
    the middle could promote a cycle out of reach of the young collection)."""
    gc.unfreeze()
    gc.disable()
    yield
    gc.enable()
    gc.unfreeze()


def test_a_step_freezes_what_survived_it(quiet_gc: None) -> None:
    freezer = FreezeAsItAges(full_every_s=60.0, clock=lambda: 0.0)
    kept = [Node() for _ in range(1000)]
    before = gc.get_freeze_count()
    assert freezer.step() is None
    assert gc.get_freeze_count() >= before + len(kept)
    # Frozen, the model's objects are out of every generation's passes.
    assert not any(node is kept[0] for g in (0, 1, 2) for node in gc.get_objects(generation=g))


def test_a_step_collects_the_young_cycles_before_freezing(quiet_gc: None) -> None:
    freezer = FreezeAsItAges(full_every_s=3600.0, clock=lambda: 0.0)
    dead = a_cycle()
    assert dead() is not None
    freezer.step()
    assert dead() is None


def test_a_step_after_a_refresh_freezes_without_a_pass(quiet_gc: None) -> None:
    clock = [0.0]
    freezer = FreezeAsItAges(full_every_s=60.0, clock=lambda: clock[0])
    kept = [Node() for _ in range(1000)]
    dead = a_cycle()
    before = gc.get_freeze_count()
    assert freezer.step(collect=False) is None
    assert gc.get_freeze_count() >= before + len(kept)
    assert dead() is not None  # walked by no pass: frozen with what is kept...
    clock[0] = 60.0
    assert freezer.step(collect=False) is not None
    assert dead() is None  # ...until the full pass


def test_cyclic_garbage_frozen_with_the_rest_is_freed_by_the_full_pass(quiet_gc: None) -> None:
    clock = [0.0]
    freezer = FreezeAsItAges(full_every_s=60.0, clock=lambda: clock[0])
    holder: list[Node] = []
    dead = a_held_cycle(holder)
    freezer.step()  # frozen while reachable
    holder.clear()  # now garbage, frozen: no pass sees it
    gc.collect()
    assert dead() is not None
    clock[0] = 59.0
    assert freezer.step() is None
    assert dead() is not None
    clock[0] = 60.0
    took = freezer.step()
    assert took is not None and took >= 0.0
    assert dead() is None
    # Frozen again after it: the next steps start from a small oldest generation.
    assert gc.get_freeze_count() > 0


def test_what_is_frozen_growing_by_a_quarter_brings_the_full_pass_forward(
    quiet_gc: None,
) -> None:
    clock = [0.0]
    freezer = FreezeAsItAges(
        full_every_s=86400.0, clock=lambda: clock[0], growth=1.25, growth_checked_every_s=600.0
    )
    holder: list[Node] = []
    dead = a_held_cycle(holder)
    assert freezer.step() is None  # the first step measures what is frozen
    holder.clear()
    kept = [Node() for _ in range(gc.get_freeze_count() // 3)]
    clock[0] = 599.0
    # Grown by more than a quarter, but the count (a walk of all that is frozen) is
    # looked at only every 600 s.
    assert freezer.step() is None
    assert dead() is not None
    clock[0] = 600.0
    assert freezer.step() is not None
    assert dead() is None
    clock[0] = 1200.0
    assert freezer.step() is None  # measured again from the full pass
    assert kept


def test_the_longest_pass_is_measured_and_taken_once(quiet_gc: None) -> None:
    passes = LongestPass()
    try:
        garbage = [a_cycle() for _ in range(1000)]
        gc.collect()
        took, generation = passes.take()
        assert took > 0.0 and generation == 2
        assert all(dead() is None for dead in garbage)
        assert passes.take() == (0.0, 0)
        gc.collect(0)
        assert passes.take()[1] == 0
    finally:
        passes.close()


class RecordingFreezer:
    """``FreezeAsItAges`` as ``_keep_current`` drives it: each step's ``collect``, in
    the log the model's refreshes go to as well."""

    def __init__(self, log: list[tuple[str, bool]]) -> None:
        self.log = log

    def step(self, collect: bool = True) -> float | None:
        self.log.append(("step", collect))
        return None


class CountingModel:
    def __init__(self, log: list[tuple[str, bool]], leaving: threading.Event) -> None:
        self.log = log
        self.leaving = leaving

    def warm(self) -> None:
        pass

    def refresh(self) -> None:
        self.log.append(("refresh", True))
        if sum(1 for kind, _ in self.log if kind == "refresh") >= 3:
            self.leaving.set()


class QuietSystems:
    def reload_if_changed(self) -> None:
        pass


def test_the_read_process_freezes_without_a_pass_after_each_refresh_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from collector.web import readprocess

    log: list[tuple[str, bool]] = []
    leaving = threading.Event()
    # Its clock moves 10 ms a reading: a refresh every few steps, however busy the machine.
    ticks = itertools.count()
    monkeypatch.setattr(
        readprocess, "time", types.SimpleNamespace(monotonic=lambda: next(ticks) / 100)
    )
    monkeypatch.setattr(readprocess, "FREEZE_EVERY_S", 0.001)
    monkeypatch.setattr(readprocess, "REFRESH_S", 0.05)
    monkeypatch.setattr(readprocess, "FreezeAsItAges", lambda: RecordingFreezer(log))
    monkeypatch.setattr(readprocess.gc, "freeze", lambda: None)
    # The real one would stay among the collector's callbacks for the rest of the tests.
    monkeypatch.setattr(
        readprocess, "LongestPass", lambda: types.SimpleNamespace(take=lambda: (0.0, 0))
    )
    warmed = types.SimpleNamespace(value=0)
    readprocess._keep_current(CountingModel(log, leaving), QuietSystems(), leaving, warmed)
    steps_after = [
        (previous[0] == "refresh", step[1])
        for previous, step in itertools.pairwise(log)
        if step[0] == "step"
    ]
    assert warmed.value == 1
    assert sum(1 for refreshed, _ in steps_after if refreshed) == 3
    assert any(not refreshed for refreshed, _ in steps_after)
    # A step right after a refresh freezes without a pass; every other one collects.
    assert all(collect is not refreshed for refreshed, collect in steps_after)
