"""The collector's own broker sessions — ingest, config publisher, dynamic-security admin:
connected, refused, or taken over; for /healthz, /metrics and the collector's alerts.

The shipped broker configs bind every connection's client id to its account
(``use_username_as_clientid``): only someone holding one of the collector's own
credentials can take one of its sessions over, so a takeover is an alarm, not a glitch.
MQTT 5 says why the broker ended a connection (0x8E: session taken over) and why it
refused one (0x86 bad user name or password, 0x87 not authorised, 0x8A banned).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

#: MQTT 5 DISCONNECT reason: another connection with this client id took the session.
TAKEN_OVER = 0x8E
#: A session taken over within this long is reported as such (healthz, the alert).
RECENT_S = 900.0
#: Takeover times kept per session: enough to count a fight of two clients kicking each
#: other, bounded whatever happens.
KEPT = 1000


class SessionWatch:
    """One broker session of the collector's, as its network thread sees it."""

    def __init__(self, name: str, clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.clock = clock
        self.takeovers_total = 0
        self.refusals_total = 0
        self.last_problem = ""
        """The broker's last word against this session, for the log and the console."""
        self._connected = False
        self._refused = False
        self._takeovers: deque[float] = deque(maxlen=KEPT)
        self._lock = threading.Lock()

    def up(self) -> None:
        with self._lock:
            self._connected, self._refused = True, False

    def down(self, reason: int | None = None, text: str = "") -> None:
        """The connection ended; ``reason``: the broker's DISCONNECT reason code, if any."""
        with self._lock:
            self._connected = False
            if reason == TAKEN_OVER:
                self.takeovers_total += 1
                self._takeovers.append(self.clock())
                self.last_problem = text or "session taken over (0x8e)"

    def refused(self, reason: int, text: str = "") -> None:
        """The broker answered the CONNECT with a failure (a CONNACK reason >= 0x80)."""
        with self._lock:
            self._connected, self._refused = False, True
            self.refusals_total += 1
            self.last_problem = text or f"refused (0x{reason:02x})"

    def recent_takeovers(self, now: float | None = None) -> int:
        now = self.clock() if now is None else now
        with self._lock:
            return sum(1 for at in self._takeovers if now - at < RECENT_S)

    def state(self, now: float | None = None) -> str:
        """taken_over (within the last quarter of an hour), refused, ok or away."""
        if self.recent_takeovers(now):
            return "taken_over"
        with self._lock:
            if self._connected:
                return "ok"
            return "refused" if self._refused else "away"
