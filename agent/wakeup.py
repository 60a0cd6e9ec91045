"""Where the agent's main thread sleeps between two checks, and what wakes it.

A check's run ending on its thread, a config arriving on the broker's, a stop asked by
the service or by a signal: each wakes the main thread, which then does what is due.
One socket pair carries the wakes: writing a byte takes no lock, so a signal handler
may write it (``signal.set_wakeup_fd`` has the interpreter do so as the signal arrives,
whichever thread it reached), and a sleeping ``select`` returns as soon as one is there.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time


class Wakeup:
    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._stopped = False

    @property
    def stopped(self) -> bool:
        return self._stopped

    def stop(self) -> None:
        """From any thread or a signal handler: the agent stops."""
        self._stopped = True
        self.wake()

    def wake(self) -> None:
        """From any thread: something is waiting for the main thread."""
        with contextlib.suppress(OSError):  # full: it is awake already; closed: it ended
            self._writer.send(b"\0")

    def sleep(self, timeout: float | None) -> None:
        """Until woken, or ``timeout`` seconds (None: until woken)."""
        if self._stopped:
            return
        select.select([self._reader], [], [], None if timeout is None else max(0.0, timeout))
        with contextlib.suppress(OSError):  # nothing more to read
            while self._reader.recv(4096):
                pass

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Sleep until stopped or ``timeout``; whether it stopped."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stopped:
            if deadline is None:
                self.sleep(None)
            elif (left := deadline - time.monotonic()) > 0:
                self.sleep(left)
            else:
                break
        return self._stopped

    def signal_fd(self) -> int:
        """The file descriptor for ``signal.set_wakeup_fd``."""
        return self._writer.fileno()

    def close(self) -> None:
        self._reader.close()
        self._writer.close()
