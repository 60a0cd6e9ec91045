"""The event loop of the checks that need one, on a thread of its own.

SNMP (pysnmp is asyncio's), Polycom and the shared systems' probes are coroutines: the
first of them started starts this loop, and every one runs on it, as their engines and
sockets are the loop's. A PC's checks (host, anti-malware, line probes) are plain reads
on threads (agent/scheduler.py): a PC's agent never imports asyncio, 1.5 MB of modules
kept for as long as it runs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="asyncio", daemon=True)
        self._thread.start()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` on the loop and wait for its result."""
        return self.submit(coroutine).result(timeout)

    def stop(self) -> None:
        """After its coroutines: the tasks left are cancelled, the loop closed."""
        self.call(_cancel_the_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


async def _cancel_the_rest() -> None:
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


_lock = threading.Lock()
_running: list[LoopThread] = []  # the one started, until stopped


def loop_thread() -> LoopThread:
    """The agent's loop thread, started on the first call."""
    with _lock:
        if not _running:
            _running.append(LoopThread())
        return _running[0]


def stop_loop_thread() -> None:
    """The agent stops: its loop too, if it was started."""
    with _lock:
        running = _running[:]
        _running.clear()
    for thread in running:
        thread.stop()
