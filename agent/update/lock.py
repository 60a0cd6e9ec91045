"""The update lock: ``state/update.lock``, held by whoever changes ``versions/`` and the
state files outside the launcher's own loop (the update process while it stages a
release; the Windows installer while it lays out or removes a home).

An OS lock on an open file (``fcntl.flock``; ``msvcrt.locking`` on Windows), not a file
that exists: a process killed mid-update releases it with its handles, so no stale lock
ever needs clearing by hand.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

LOCK_NAME: Final = "update.lock"
POLL_S: Final = 0.5


class UpdateLock:
    """``try_acquire`` / ``acquire(wait_s)`` / ``release``; not re-entrant."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if _lock(fd):
            self._fd = fd
            return True
        os.close(fd)
        return False

    def acquire(self, wait_s: float, sleep: Callable[[float], None] = time.sleep) -> bool:
        """Try until ``wait_s`` has passed; False if another process still holds it."""
        deadline = time.monotonic() + wait_s
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                return False
            sleep(POLL_S)
        return True

    def release(self) -> None:
        if self._fd is not None:
            _unlock(self._fd)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> UpdateLock:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


if sys.platform == "win32":
    import msvcrt

    def _lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
