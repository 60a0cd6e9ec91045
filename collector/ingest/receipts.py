"""Receipts: telling each agent which of its envelopes the store has committed.

The broker's PUBACK only says the broker holds an envelope. A broker killed before
it saved its queues (Mosquitto saves them every ``autosave_interval``), or one
restarted with the collector's session lost, drops what it held, and the agent had
forgotten it. So an enrolled agent keeps what the broker acknowledged until a
receipt covers it (agent/outbox.py), and a receipt that passes over a seq brings it
back to be sent again; the store applies a seq once (state/seqranges.py).

A receipt is the agent's seqs as the store holds them (``agents.seqs``: committed,
or refused for good), at most one per agent every ``every_s``: an agent keeps a few
minutes of envelopes more, and a province's collector sends a receipt a second or
so. Receipts are QoS 0 and not retained: each one says everything, so the next one
makes up for one lost.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Mapping

from agent.wire import SCHEMA_VERSION, Receipt, encode, topic

#: The least time between two receipts to one agent.
RECEIPT_EVERY_S = 300.0


def receipt_payload(seqs: str) -> bytes:
    """A receipt's bytes from ``agents.seqs``' text (``"lo-hi lo-hi"``)."""
    ranges = []
    for part in seqs.split():
        first, _, last = part.partition("-")
        ranges.append([int(first), int(last)])
    return encode(Receipt(v=SCHEMA_VERSION, seqs=ranges))


class ReceiptBook:
    """Which agents are owed a receipt, and when: told by the ingest after each commit,
    read by the sender (a housekeeping task)."""

    def __init__(
        self,
        root: str,
        every_s: float = RECEIPT_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = root
        self.every_s = every_s
        self.clock = clock
        self.sent = 0
        self._lock = threading.Lock()
        self._owed: dict[str, str] = {}  # agent key -> its seqs, newest
        self._due: list[tuple[float, str]] = []  # (when, agent key), one per owed agent
        self._last_sent: dict[str, float] = {}

    def note(self, seqs: Mapping[str, str]) -> None:
        """A batch committed: ``seqs`` is each of its agents' seqs handled after it."""
        now = self.clock()
        with self._lock:
            for key, text in seqs.items():
                if key not in self._owed:
                    last = self._last_sent.get(key)
                    due = now if last is None else max(now, last + self.every_s)
                    heapq.heappush(self._due, (due, key))
                self._owed[key] = text

    def owed(self) -> int:
        with self._lock:
            return len(self._owed)

    def take_due(self, limit: int = 5000) -> list[tuple[str, bytes]]:
        """The receipts due now, as (topic, payload), at most ``limit``; each agent's next
        one is then not due before ``every_s``."""
        now = self.clock()
        out: list[tuple[str, str]] = []
        with self._lock:
            while self._due and self._due[0][0] <= now and len(out) < limit:
                _, key = heapq.heappop(self._due)
                text = self._owed.pop(key)
                self._last_sent[key] = now
                province, commune, agent = key.split("/")
                out.append((topic(self.root, province, commune, agent, "receipt"), text))
            self.sent += len(out)
        return [(name, receipt_payload(text)) for name, text in out]

    def send(self, publish: Callable[[str, bytes], bool]) -> int:
        """Send what is due through ``publish`` (False: not connected, so nothing is taken
        this time); returns how many were sent."""
        sent = 0
        for name, payload in self.take_due():
            if not publish(name, payload):
                break
            sent += 1
        return sent
