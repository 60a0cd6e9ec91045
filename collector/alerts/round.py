"""What a round of the agent and commune rules reads: only what can change an alert.

A national collector knows 166,050 agents. Reading each one every 10 s to find
that almost all of them are online, refused nothing and updated fine cost ~1 s of
CPU a round beside ingest. The rules of an agent are a function of a handful of
facts (``FACT_NAMES``), and the agents share few distinct combinations of them; so
a round asks the store for the combinations (one grouped query), judges each
once, and reads in full only the agents whose combination some rule holds for,
and those with an alert state not yet back to "ok". A commune's rules need its
counts only: one grouped query as well.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from collector.state.store import REFUSALS_WINDOW_S, AgentState, UpdateStanding

FACT_NAMES = ("state", "reason", "samples_refused", "update_state", "update_failures")
"""What an agent rule may name, in the order of a ``Facts`` tuple."""

Facts = tuple[str, str, int, str, int]


@dataclass(frozen=True)
class AgentFacts:
    """An agent as its rules see it."""

    agent: AgentState
    refused: int
    """Samples refused in the last ``REFUSALS_WINDOW_S``."""
    update: UpdateStanding | None

    @property
    def facts(self) -> Facts:
        update = self.update
        return (
            self.agent.state,
            self.agent.reason,
            self.refused,
            update.state if update else "",
            update.failures if update else 0,
        )


@dataclass(frozen=True)
class CommuneTally:
    """A commune's agents as its rules see them."""

    province: str
    commune: str
    agents: int
    online: int
    lost: int
    """Offline and not stopped on purpose (silent, or the broker's last will)."""
    changed: float | None
    """The latest change of state of any of its agents (None: none known)."""


# The agents with their facts: the refusals in the window and the last update report
# joined to each. ``?1`` is the start of the refusals' window.
_FACTS = """
    WITH refused AS (
        SELECT agent_key, SUM(samples) AS samples FROM agent_refusals
        WHERE last_at >= ?1 GROUP BY agent_key
    ), facts AS (
        SELECT a.agent_key, a.province, a.commune, a.agent, a.state, a.state_since, a.reason,
               a.version, a.last_seen, a.last_seq, a.interval,
               COALESCE(r.samples, 0) AS refused,
               u.state AS update_state, u.version AS update_version, u.reason AS update_reason,
               u.ts AS update_ts, u.failures AS update_failures
        FROM agents a
        LEFT JOIN refused r ON r.agent_key = a.agent_key
        LEFT JOIN agent_updates u ON u.agent_key = a.agent_key
    )"""


def fact_combinations(db: sqlite3.Connection, now: float) -> list[Facts]:
    """Every combination of facts some agent has now."""
    sql = _FACTS + _DISTINCT_FACTS
    rows = db.execute(sql, (now - REFUSALS_WINDOW_S,)).fetchall()
    return [(str(s), str(r), int(n), str(us), int(uf)) for s, r, n, us, uf in rows]


_DISTINCT_FACTS = """
    SELECT DISTINCT state, reason, refused, COALESCE(update_state, ''),
           COALESCE(update_failures, 0)
    FROM facts"""


def agents_to_judge(
    db: sqlite3.Connection, now: float, fine: Sequence[Facts], keys: Iterable[str]
) -> list[AgentFacts]:
    """The agents whose facts are not among ``fine``, and those of ``keys`` whatever
    their facts; by agent key."""
    params: list[object] = [now - REFUSALS_WINDOW_S, json.dumps(sorted(keys))]
    excluded = "0"
    if fine:
        width = len(FACT_NAMES)
        rows_of_marks = (
            "(" + ", ".join(f"?{3 + i * width + j}" for j in range(width)) + ")"
            for i in range(len(fine))
        )
        excluded = (
            "(state, reason, refused, COALESCE(update_state, ''), COALESCE(update_failures, 0))"
            f" IN (VALUES {', '.join(rows_of_marks)})"
        )
        params.extend(value for facts in fine for value in facts)
    sql = _FACTS + _NOTABLE.format(excluded=excluded)
    rows = db.execute(sql, params).fetchall()
    return [
        AgentFacts(
            AgentState(*row[:11]),
            int(row[11]),
            None if row[12] is None else UpdateStanding(*row[12:17]),
        )
        for row in rows
    ]


# ``excluded``: a condition made of placeholders only.
_NOTABLE = """
    SELECT * FROM facts
    WHERE NOT {excluded} OR agent_key IN (SELECT value FROM json_each(?2))
    ORDER BY agent_key"""


def commune_tallies(db: sqlite3.Connection) -> list[CommuneTally]:
    """Every commune with an agent, by province and commune."""
    rows = db.execute(
        """SELECT province, commune, COUNT(*), SUM(state = 'online'),
                  SUM(state = 'offline' AND reason != 'stopped'), MAX(state_since)
           FROM agents GROUP BY province, commune ORDER BY province, commune"""
    ).fetchall()
    return [CommuneTally(str(p), str(c), int(n), int(on), int(lost), since)
            for p, c, n, on, lost, since in rows]  # fmt: skip
