"""The read process's garbage collection: what ages is frozen, cycles still collected
at the full pass."""

from __future__ import annotations

import gc
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


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_a_step_freezes_what_survived_it(unfrozen: None) -> None:
    clock = [0.0]
    freezer = FreezeAsItAges(full_every_s=60.0, clock=lambda: clock[0])
    kept = [Node() for _ in range(1000)]
    before = gc.get_freeze_count()
    assert freezer.step() is None
    assert gc.get_freeze_count() >= before + len(kept)
    # Frozen, the model's objects are out of the oldest generation's passes.
    assert not any(node is kept[0] for node in gc.get_objects(generation=2))


def test_cyclic_garbage_frozen_with_the_rest_is_freed_by_the_full_pass(unfrozen: None) -> None:
    clock = [0.0]
    freezer = FreezeAsItAges(full_every_s=60.0, clock=lambda: clock[0])
    holder = [Node()]
    holder[0].other = Node()
    holder[0].other.other = holder[0]  # a cycle, reachable while held
    dead = weakref.ref(holder[0])
    freezer.step()  # frozen while reachable
    holder.clear()  # now garbage, frozen: no collection sees it
    gc.collect()
    assert dead() is not None
    clock[0] = 59.0
    assert freezer.step() is None
    assert dead() is not None
    clock[0] = 60.0
    took = freezer.step()
    assert took is not None and took >= 0.0
    assert dead() is None
    # And frozen again after it: the next steps start from a small oldest generation.
    assert gc.get_freeze_count() > 0


def test_a_step_collects_the_young_cycles_before_freezing(unfrozen: None) -> None:
    freezer = FreezeAsItAges(full_every_s=3600.0)
    dead = a_cycle()
    assert dead() is not None
    freezer.step()
    assert dead() is None


def test_what_is_frozen_growing_by_a_quarter_brings_the_full_pass_forward(
    unfrozen: None,
) -> None:
    clock = [0.0]
    freezer = FreezeAsItAges(full_every_s=3600.0, clock=lambda: clock[0], growth=1.25)
    holder = [Node()]
    holder[0].other = Node()
    holder[0].other.other = holder[0]
    dead = weakref.ref(holder[0])
    assert freezer.step() is None
    holder.clear()
    assert freezer.step() is None  # not grown: the cycle waits
    assert dead() is not None
    kept = [Node() for _ in range(gc.get_freeze_count() // 3)]
    assert freezer.step() is not None  # grown by more than a quarter: collected now
    assert dead() is None
    assert freezer.step() is None  # and measured again from there
    assert len(kept) > 0


def test_the_longest_pass_is_measured_and_taken_once() -> None:
    passes = LongestPass()
    try:
        garbage = [a_cycle() for _ in range(1000)]
        gc.collect()
        took, generation = passes.take()
        assert took > 0.0 and generation == 2
        assert all(dead() is None for dead in garbage)
        assert passes.take() == (0.0, 0)
    finally:
        passes.close()
