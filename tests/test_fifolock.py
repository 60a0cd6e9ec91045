"""The store's writer lock, handed out in the order its waiters came."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from collector.state.fifolock import FifoLock
from tests.servers import wait_for


def start(target: Callable[[], object], name: str = "") -> threading.Thread:
    thread = threading.Thread(target=target, name=name or None, daemon=True)
    thread.start()
    return thread


def waiting(lock: FifoLock, count: int) -> Callable[[], bool]:
    return lambda: lock.waiting() == count


def test_a_waiter_goes_between_two_holds_of_a_thread_that_asks_again_at_once() -> None:
    """What the live model does loading provinces one by one: a plain lock usually went
    back to the loader, and the batch waiting for it waited for every province."""
    lock = FifoLock()
    order: list[str] = []

    def batch() -> None:
        with lock:
            order.append("batch")

    with lock:
        waiter = start(batch)
        wait_for(lambda: lock.waiting() == 1, 30, "the batch never waited")
    with lock:
        order.append("next province")
    waiter.join(30)
    assert order == ["batch", "next province"]


def test_waiters_are_served_in_the_order_they_came() -> None:
    lock = FifoLock()
    order: list[int] = []

    def take(n: int) -> Callable[[], None]:
        def run() -> None:
            with lock:
                order.append(n)

        return run

    threads = []
    with lock:
        for n in range(5):
            threads.append(start(take(n)))
            wait_for(waiting(lock, n + 1), 30, f"waiter {n} never waited")
    for thread in threads:
        thread.join(30)
    assert order == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("served_first", [False, True])
def test_a_waiter_interrupted_passes_its_turn_on(
    monkeypatch: pytest.MonkeyPatch, served_first: bool
) -> None:
    """One that gives up waiting (an exception in the wait) must not keep the others out:
    interrupted while its turn is still to come, or once woken for it (``served_first``),
    before it took it."""
    lock = FifoLock()
    condition = lock._state
    wait = condition.wait

    def interrupted_wait(timeout: float | None = None) -> bool:
        woken = wait(timeout) if served_first else False
        if threading.current_thread().name == "interrupted":
            raise KeyboardInterrupt
        return woken or wait(timeout)

    monkeypatch.setattr(condition, "wait", interrupted_wait)
    raised: list[BaseException] = []
    served = threading.Event()

    def gives_up() -> None:
        try:
            lock.acquire()
        except KeyboardInterrupt as error:
            raised.append(error)

    def patient() -> None:
        with lock:
            served.set()

    with lock:
        interrupted = start(gives_up, "interrupted")
        if served_first:
            wait_for(waiting(lock, 1), 30, "the one to be interrupted never waited")
        else:
            interrupted.join(30)
            assert raised, "the wait was not interrupted"
        start(patient)
        wait_for(waiting(lock, 1 + served_first), 30, "the patient waiter never waited")
    interrupted.join(30)
    assert raised, "the wait was not interrupted"
    assert served.wait(30), "the turn of the one that gave up was never passed on"
    with lock:  # and it is free again
        assert lock.waiting() == 0


def test_releasing_it_unheld_is_an_error_and_leaves_it_whole() -> None:
    """As ``threading.Lock``: a turn passed on by no one's hold would shut out every later
    taker for good."""
    lock = FifoLock()
    with pytest.raises(RuntimeError, match="release unlocked lock"):
        lock.release()
    with lock:
        assert lock.waiting() == 0
    with pytest.raises(RuntimeError):
        lock.release()
