"""Log lines that an attacker could multiply, one per reason per interval.

A flood of refused connections or malformed requests must not become a flood of
log lines (a review saw 206 MB in a minute): the first line of a reason is
written, the next ones within ``every_s`` are only counted, and the count is
written with the next line of that reason, or on its own once the interval is
over (``ThrottledLog.flush``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

EVERY_S = 60.0


@dataclass
class _Reason:
    written_at: float
    suppressed: int = 0


class Throttle:
    """Which lines of each reason to write; safe from any thread."""

    def __init__(self, every_s: float = EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.every_s = every_s
        self.clock = clock
        self._reasons: dict[str, _Reason] = {}
        self._lock = threading.Lock()

    def admit(self, reason: str) -> int | None:
        """None: count this line and write nothing; else how many were left out before it."""
        now = self.clock()
        with self._lock:
            seen = self._reasons.get(reason)
            if seen is None:
                self._reasons[reason] = _Reason(now)
                return 0
            if now - seen.written_at < self.every_s:
                seen.suppressed += 1
                return None
            left_out, seen.suppressed, seen.written_at = seen.suppressed, 0, now
            return left_out

    def overdue(self) -> list[tuple[str, int, float]]:
        """(reason, lines left out, over how many seconds) for each reason whose count has
        waited a whole interval; counted as written."""
        now = self.clock()
        due = []
        with self._lock:
            for reason, seen in self._reasons.items():
                if seen.suppressed and now - seen.written_at >= self.every_s:
                    due.append((reason, seen.suppressed, now - seen.written_at))
                    seen.suppressed, seen.written_at = 0, now
        return due


class ThrottledLog:
    """A logger's lines through a Throttle: ``log(level, reason, message)``."""

    def __init__(self, logger: logging.Logger, throttle: Throttle | None = None) -> None:
        self.logger = logger
        self.throttle = throttle or Throttle()

    def log(self, level: int, reason: str, message: str) -> None:
        left_out = self.throttle.admit(reason)
        if left_out is None:
            return
        if left_out:
            message += f" ({left_out} more {reason} left out of the log before this one)"
        self.logger.log(level, message)

    def flush(self) -> None:
        for reason, count, seconds in self.throttle.overdue():
            self.logger.warning(
                "%d more %s left out of the log in the last %.0f s", count, reason, seconds
            )


class ThrottleFilter(logging.Filter):
    """For a logger this project does not write to (uvicorn's, asyncio's): its warnings
    and errors throttled by their message's first line, and for an exception by where it
    was raised (two different bugs each get their traceback written)."""

    def __init__(self, throttle: Throttle | None = None) -> None:
        super().__init__()
        self.throttle = throttle or Throttle()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        reason = str(record.msg).split("\n", 1)[0][:200]
        if record.exc_info and record.exc_info[2] is not None:
            frame = record.exc_info[2]
            while frame.tb_next is not None:
                frame = frame.tb_next
            code = frame.tb_frame.f_code
            reason += f" {record.exc_info[0]} at {code.co_filename}:{frame.tb_lineno}"
        left_out = self.throttle.admit(reason)
        if left_out is None:
            return False
        if left_out:
            record.msg = f"{record.msg} ({left_out} more like it left out of the log before)"
        return True


_installed: dict[str, ThrottleFilter] = {}
_installing = threading.Lock()


def quiet(logger_name: str) -> ThrottleFilter:
    """Throttle the warnings of a library's logger, once per process (loggers are)."""
    with _installing:
        installed = _installed.get(logger_name)
        if installed is None:
            installed = _installed[logger_name] = ThrottleFilter()
            logging.getLogger(logger_name).addFilter(installed)
        return installed
