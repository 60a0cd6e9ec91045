"""The applied record: every envelope the store applied, by agent and seq, and how often;
and every envelope the ingest refused whole, and why.

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

_RECORD = """INSERT INTO applied_envelopes VALUES (?1, ?2, 1, ?3, ?3, '')
    ON CONFLICT (agent_key, seq) DO UPDATE SET applied = applied + 1, last_at = ?3"""
_REFUSED = """INSERT INTO applied_envelopes VALUES (?1, ?2, 0, ?4, ?4, ?3)
    ON CONFLICT (agent_key, seq) DO UPDATE SET refused = ?3, last_at = ?4"""


def record(db: sqlite3.Connection, envelopes: Sequence[Envelope], received: float) -> None:
    db.executemany(
        _RECORD,
        [
            (agent_key(envelope.province, envelope.commune, envelope.agent), envelope.seq, received)
            for envelope in envelopes
        ],
    )


def record_refused(
    db: sqlite3.Connection, refused: Sequence[tuple[str, int, str]], received: float
) -> None:
    """Envelopes the ingest refused whole, by (agent key, seq, reason): an agent's clock
    too far ahead or behind, or an envelope the store could not apply."""
    db.executemany(_REFUSED, [(key, seq, reason, received) for key, seq, reason in refused])


def install(store: StateStore) -> None:
    """Record every envelope the store applies from now on (once per store)."""
    if record not in store.observers:
        store.observers.append(record)


def applied_counts(db: sqlite3.Connection) -> dict[str, dict[int, int]]:
    """Agent key -> seq -> how many times it was applied."""
    counts: dict[str, dict[int, int]] = {}
    for key, seq, times in db.execute(
        "SELECT agent_key, seq, applied FROM applied_envelopes WHERE applied > 0"
    ):
        counts.setdefault(str(key), {})[int(seq)] = int(times)
    return counts


def refusals(db: sqlite3.Connection) -> dict[str, dict[int, str]]:
    """Agent key -> seq -> why the ingest refused it (last reason)."""
    found: dict[str, dict[int, str]] = {}
    for key, seq, reason in db.execute(
        "SELECT agent_key, seq, refused FROM applied_envelopes WHERE refused != ''"
    ):
        found.setdefault(str(key), {})[int(seq)] = str(reason)
    return found
