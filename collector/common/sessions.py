"""The collector's own broker sessions — ingest, config publisher, dynamic-security admin:
connected, refused, or taken over; for /healthz, /metrics and the collector's alerts.

The shipped broker configs bind every connection's client id to its account
(``use_username_as_clientid``): only someone holding one of the collector's own
credentials can take one of its sessions over, so a takeover is an alarm, not a glitch.

MQTT 5 lets a broker say why it ended a connection (0x8E: session taken over) and why it
refused one (0x86 bad user name or password, 0x87 not authorised, 0x8A banned). Mosquitto
2.0.11 (Debian 12's) closes a taken-over connection without a word, as it does when the
plugin changes an account's rights and when it stops. So a close without a reason is
kept until the broker's uptime (``$SYS/broker/uptime``, which the ingest reads) tells
whether the broker restarted since: if not, the session was kicked. A kick alone may be
an administrator changing the account; two within ``FIGHT_S`` are the collector and an
intruder logging each other out: taken over.
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
#: Two kicks this close together: two clients logging each other out.
FIGHT_S = 60.0
#: The broker's uptime is published every ``sys_interval`` (10 s by default): a start
#: estimated from it may be this late.
UPTIME_SLACK_S = 15.0


class SessionWatch:
    """One broker session of the collector's, as its network thread sees it."""

    def __init__(self, name: str, clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.clock = clock
        self.takeovers_total = 0
        self.refusals_total = 0
        self.kicks_total = 0
        """Closes without a reason while the broker kept running."""
        self.last_problem = ""
        """The broker's last word against this session, for the log and the console."""
        self._connected = False
        self._refused = False
        self._takeovers: deque[float] = deque(maxlen=KEPT)
        self._closes: deque[float] = deque(maxlen=KEPT)
        """Closes without a reason not yet told apart (a kick, or the broker stopping)."""
        self._last_kick = -2 * FIGHT_S
        self._lock = threading.Lock()

    def up(self) -> None:
        with self._lock:
            self._connected, self._refused = True, False

    def down(self, reason: int | None = None, text: str = "", *, unexplained: bool = False) -> None:
        """The connection ended; ``reason``: the broker's DISCONNECT reason code, if any;
        ``unexplained``: the broker closed a sound connection without one."""
        with self._lock:
            self._connected = False
            now = self.clock()
            if reason == TAKEN_OVER:
                self._taken(now, text or "session taken over (0x8e)")
            elif unexplained:
                self._closes.append(now)

    def broker_started(self, at: float) -> None:
        """The broker has been running since ``at``: the closes before are told apart."""
        with self._lock:
            for closed in self._closes:
                if at >= closed - UPTIME_SLACK_S:
                    continue  # the broker stopped, or may have: not a kick
                self.kicks_total += 1
                if closed - self._last_kick < FIGHT_S:
                    self._taken(closed, "the broker keeps closing the session while it runs: "
                                        "another client logs in with its account")  # fmt: skip
                self._last_kick = closed
            self._closes.clear()

    def _taken(self, at: float, problem: str) -> None:
        self.takeovers_total += 1
        self._takeovers.append(at)
        self.last_problem = problem

    def refused(self, reason: int, text: str = "") -> None:
        """The broker answered the CONNECT with a failure (a CONNACK reason >= 0x80)."""
        with self._lock:
            self._connected, self._refused = False, True
            self.refusals_total += 1
            self.last_problem = text or f"refused (0x{reason:02x})"

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._connected

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


class BrokerUptime:
    """When the broker started, from its ``$SYS/broker/uptime`` ("N seconds"): told to
    every watch, so that each may tell a kick from the broker's restart."""

    TOPIC = "$SYS/broker/uptime"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.watches: list[SessionWatch] = []
        self.started: float | None = None

    def seen(self, payload: bytes) -> None:
        """A message on ``TOPIC``; anything that is not "<seconds> seconds" is ignored."""
        word = payload[:32].split(b" ", 1)[0]
        if not word.isdigit() or len(word) > 10:  # ASCII digits, at most three centuries
            return
        self.started = self.clock() - int(word)
        for watch in self.watches:
            watch.broker_started(self.started)
