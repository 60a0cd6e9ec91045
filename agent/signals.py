"""SIGTERM and SIGINT stop the running agent: its service stopping, Ctrl-C.

The agent's main thread sleeps in ``select`` on its wakeup (agent/wakeup.py) between
checks. Python runs a signal's handler in the main thread only, and only once that
thread runs again; the kernel may hand the signal to any thread. So the wakeup's
socket is also the interpreter's wakeup fd: the signal itself writes a byte there,
which ends the main thread's sleep whichever thread it reached, and the handler, run
then, asks the agent to stop.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from agent.wakeup import Wakeup

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def take_interrupt() -> None:
    """Until the agent runs: SIGINT raises KeyboardInterrupt, as Python's own handler does
    (from a handler of the agent's, as Python's may have been replaced by a library).
    Not on Windows, where the agent takes no signal."""
    if sys.platform != "win32" and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _interrupt)


def stop_on_signals(stop: Wakeup) -> Callable[[], None]:
    """SIGTERM and SIGINT stop ``stop`` until the returned function is called, which puts
    back the handlers there were. Nothing outside the main thread (Python takes signals
    there only); on Windows (where the service stops the agent) the wakeup fd only."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    wakeup = signal.set_wakeup_fd(stop.signal_fd(), warn_on_full_buffer=False)
    if sys.platform == "win32":
        # Ctrl-C in a console raises KeyboardInterrupt as Python's handler does; the wakeup
        # fd ends the main thread's sleep for it (a select on Windows is not interrupted).
        def restore_the_fd() -> None:
            signal.set_wakeup_fd(wakeup)

        return restore_the_fd

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.stop()

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}

    def restore() -> None:
        for signum, handled in previous.items():
            signal.signal(signum, handled)
        signal.set_wakeup_fd(wakeup)

    return restore
