"""A lock handed to the threads that wait for it in the order they came.

``threading.Lock`` is not fair: a thread that releases it and asks again at once
usually takes it again before a waiter wakes. The store's writer lock is held by
ingest once a batch and by the live model once a province it loads: loading the
country's 34 provinces one after another kept ingest out for the whole loading, seconds
against a p99 of a second. In the order they came, a waiting batch goes between two
provinces.

Unlike ``threading.Lock``, it is made of Python steps: an exception raised into a
waiter while it waits (KeyboardInterrupt) passes its turn on, but one raised between
those steps of ``acquire`` or ``release`` may leave it held. The collector's signals
only set an event, so its threads never see one.
"""

from __future__ import annotations

import threading


class FifoLock:
    def __init__(self) -> None:
        self._state = threading.Condition(threading.Lock())
        self._issued = 0
        self._serving = 0
        self._abandoned: set[int] = set()
        """Tickets whose holders gave up waiting (interrupted): skipped when reached."""

    def acquire(self) -> None:
        with self._state:
            ticket = self._issued
            self._issued += 1
            try:
                while ticket != self._serving:
                    self._state.wait()
            except BaseException:  # interrupted while waiting: the turn passes on
                if ticket == self._serving:
                    self._advance()
                else:
                    self._abandoned.add(ticket)
                raise

    def waiting(self) -> int:
        """How many threads wait for it now."""
        with self._state:
            return max(0, self._issued - self._serving - 1) - len(self._abandoned)

    def release(self) -> None:
        with self._state:
            if self._serving == self._issued:  # as threading.Lock: a bug, not a no-op
                raise RuntimeError("release unlocked lock")
            self._advance()

    def _advance(self) -> None:
        self._serving += 1
        while self._serving in self._abandoned:
            self._abandoned.discard(self._serving)
            self._serving += 1
        self._state.notify_all()

    def __enter__(self) -> FifoLock:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()
