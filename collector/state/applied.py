"""The applied record: every envelope the store applied, by agent and seq, and how often.

The chaos soak's seam (``[store] ledger = true``, off by default): its checker
(fleet/soakcheck.py) compares each agent's creation ledger with this record to prove
that nothing created was lost. Written by a store observer, in the transaction that
applies the envelope: what it says was applied was committed, and nothing committed
is missing from it. Off, nothing is installed and nothing is written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from agent.wire import Envelope
from collector.state.store import StateStore, agent_key

_RECORD = """INSERT INTO applied_envelopes VALUES (?1, ?2, 1, ?3, ?3)
    ON CONFLICT (agent_key, seq) DO UPDATE SET applied = applied + 1, last_at = ?3"""


def record(db: sqlite3.Connection, envelopes: Sequence[Envelope], received: float) -> None:
    db.executemany(
        _RECORD,
        [
            (agent_key(envelope.province, envelope.commune, envelope.agent), envelope.seq, received)
            for envelope in envelopes
        ],
    )


def install(store: StateStore) -> None:
    """Record every envelope the store applies from now on (once per store)."""
    if record not in store.observers:
        store.observers.append(record)


def applied_counts(db: sqlite3.Connection) -> dict[str, dict[int, int]]:
    """Agent key -> seq -> how many times it was applied."""
    counts: dict[str, dict[int, int]] = {}
    for key, seq, times in db.execute("SELECT agent_key, seq, applied FROM applied_envelopes"):
        counts.setdefault(str(key), {})[int(seq)] = int(times)
    return counts
