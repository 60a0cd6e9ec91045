"""SIGTERM and SIGINT stop the running agent: its service stopping, Ctrl-C.

The event loop's ``add_signal_handler`` would do it, but to check that a handler is not
a coroutine function it imports ``inspect``, and ``ast`` and ``dis`` with it: 0.6 MB of a
PC agent's memory kept for as long as it runs, for one check of one callback of ours.
Here Python's own handlers ask the loop to set the stop event, and a wakeup fd the loop
watches wakes it whichever thread the signal reached (Python runs the handlers in the
main thread, the loop's, once it runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import threading
from collections.abc import Callable
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def take_interrupt() -> None:
    """Before ``asyncio.run``: SIGINT raises KeyboardInterrupt, as Python's own handler does,
    from a handler of the agent's. asyncio.run puts a handler of its own only in place of
    Python's, and replacing that one (``stop_on_signals``) formats the task it names,
    which imports inspect. Not on Windows, where the agent takes no signal (asyncio.run's
    handler stays: Ctrl-C in a console cancels the run)."""
    if sys.platform != "win32" and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _interrupt)


def stop_on_signals(stop: asyncio.Event) -> Callable[[], None]:
    """SIGTERM and SIGINT set ``stop`` until the returned function is called, which puts
    back the handlers there were. Nothing outside the main thread (Python takes signals
    there only) or on Windows (the service stops the agent there)."""
    if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    loop.add_reader(reader.fileno(), _empty, reader)
    wakeup = signal.set_wakeup_fd(writer.fileno())

    def handler(_signum: int, _frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(stop.set)

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}

    def restore() -> None:
        for signum, handled in previous.items():
            signal.signal(signum, handled)
        signal.set_wakeup_fd(wakeup)
        loop.remove_reader(reader.fileno())
        reader.close()
        writer.close()

    return restore


def _empty(reader: socket.socket) -> None:
    """The wakeup fd's bytes (the signals' numbers) only woke the loop."""
    with contextlib.suppress(OSError):  # nothing more to read
        while reader.recv(4096):
            pass
