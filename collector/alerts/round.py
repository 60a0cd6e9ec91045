"""What a round of the agent and commune rules reads: only what can change an alert.

A national collector knows 166,050 agents. Reading each one every 10 s to find
that almost all of them are online, refused nothing and updated fine cost ~1 s of
CPU a round beside ingest. The rules of an agent are a function of a handful of
facts (``FACT_NAMES``), and the agents share few distinct combinations of them; a
commune's rules need its counts only. Both change only when an agent's state or
update report does, which is rare beside the data that arrives every minute: so
``HeldRound`` holds, between rounds, each commune's tally and the agents whose facts
some rule holds for, and reads again only the communes the store lists as changed
(``agent_changes``, kept by triggers in the writer's own transactions), the agents
refusing samples (a count over a window of time) and those with an alert state not
yet back to "ok". The first round, or one after most communes changed (every office
opening at once), reads everything in three grouped queries.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

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

    @functools.cached_property  # judged by every agent rule
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


def agents_to_judge(
    db: sqlite3.Connection, now: float, fine: Sequence[Facts], keys: Iterable[str]
) -> list[AgentFacts]:
    """The agents whose facts are not among ``fine``, and those of ``keys`` whatever
    their facts; by agent key. In one scan of every agent: what a ``HeldRound`` is held
    to (``fine`` empty: every agent)."""
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


Place = tuple[str, str]


# Agents with their update report (no refusals: those are read every round).
_AGENTS = """
    SELECT a.agent_key, a.province, a.commune, a.agent, a.state, a.state_since, a.reason,
           a.version, a.last_seen, a.last_seq, a.interval,
           u.state, u.version, u.reason, u.ts, u.failures
    FROM agents a LEFT JOIN agent_updates u ON u.agent_key = a.agent_key"""
_FACTS_OF = "a.state, a.reason, COALESCE(u.state, ''), COALESCE(u.failures, 0)"
#: A commune's agents: the key's range finds them, the columns make it exact.
_COMMUNE = (
    _AGENTS
    + """
    WHERE a.agent_key >= ?1 AND a.agent_key < ?2 AND a.province = ?3 AND a.commune = ?4"""
)
_BY_KEY = _AGENTS + " WHERE a.agent_key IN (SELECT value FROM json_each(?1))"  # noqa: S608 - fixed text


def _held(row: Sequence[Any]) -> AgentFacts:
    """An agent as read, its refusals aside (read every round)."""
    update = None if row[11] is None else UpdateStanding(*row[11:16])
    return AgentFacts(AgentState(*row[:11]), 0, update)


@contextlib.contextmanager
def one_snapshot(db: sqlite3.Connection) -> Iterator[None]:
    """The reads inside see one committed state of the store (``db`` in autocommit)."""
    db.execute("BEGIN")
    try:
        yield
    finally:
        db.execute("COMMIT")


class HeldRound:
    """The facts of the rounds, held between them and read again where they changed.

    Holds every commune's tally, and the agents whose facts some rule holds for as they
    stand without refusals (``notable``: a pure function of the facts). Read inside one
    snapshot (``one_snapshot``), it is exactly what reading every agent would give. An
    agent held keeps its row as last read: its last sign of life and seq move on with
    every batch without listing its commune, and no rule reads them.
    """

    def __init__(self, notable: Callable[[Facts], bool], few: int = 100) -> None:
        self.notable = notable
        self.few = few
        """Changed communes read one by one at most, and half of them: a query for one
        costs about twice its share of one read of every agent."""
        self.seq: int | None = None
        """The last change of ``agent_changes`` held (None: nothing read yet)."""
        self.reads_all = 0
        """Rounds that read every agent (the first, and those after most communes changed)."""
        self._tallies: dict[Place, CommuneTally] = {}
        self._ordered: list[CommuneTally] | None = []
        self._agents: dict[str, AgentFacts] = {}
        self._keys: list[str] | None = []
        self._of_commune: dict[Place, list[str]] = {}

    def refresh(self, db: sqlite3.Connection) -> None:
        """Hold the store's state as ``db`` reads it now."""
        if self.seq is not None:
            changed = db.execute(
                "SELECT province, commune, seq FROM agent_changes WHERE seq > ?", (self.seq,)
            ).fetchall()
            if len(changed) <= max(self.few, len(self._tallies) // 2):
                for province, commune, seq in changed:
                    self._read_commune(db, (str(province), str(commune)))
                    self.seq = max(self.seq, int(seq))
                return
        self._read_all(db)

    def tallies(self) -> list[CommuneTally]:
        """Every commune with an agent, by province and commune."""
        if self._ordered is None:
            self._ordered = [self._tallies[place] for place in sorted(self._tallies)]
        return self._ordered

    def agents_to_judge(
        self, db: sqlite3.Connection, now: float, keys: Iterable[str]
    ) -> list[AgentFacts]:
        """The agents whose facts some rule holds for, and those of ``keys`` whatever their
        facts; by agent key (as ``agents_to_judge`` of the fine combinations gives them)."""
        refused = {
            str(key): int(samples)
            for key, samples in db.execute(
                "SELECT agent_key, SUM(samples) FROM agent_refusals WHERE last_at >= ? "
                "GROUP BY agent_key",
                (now - REFUSALS_WINDOW_S,),
            )
        }
        keys = set(keys)
        unheld = sorted((keys | refused.keys()) - self._agents.keys())
        others: dict[str, AgentFacts] = {}
        if unheld:
            for row in db.execute(_BY_KEY, (json.dumps(unheld),)):
                others[str(row[0])] = _held(row)
        if self._keys is None:
            self._keys = sorted(self._agents)
        ordered = sorted([*self._keys, *others]) if others else self._keys
        judged = []
        for key in ordered:
            held = self._agents.get(key)
            count = refused.get(key, 0)
            if held is not None and not count:
                judged.append(held)  # notable, as held
                continue
            agent = held or others[key]
            if count:
                agent = AgentFacts(agent.agent, count, agent.update)
            if key in keys or self.notable(agent.facts):
                judged.append(agent)
        return judged

    def _read_commune(self, db: sqlite3.Connection, place: Place) -> None:
        province, commune = place
        prefix = f"{province}/{commune}/"
        rows = db.execute(_COMMUNE, (prefix, prefix[:-1] + "0", province, commune)).fetchall()
        for key in self._of_commune.pop(place, ()):
            del self._agents[key]
        self._keys = self._ordered = None
        if not rows:
            self._tallies.pop(place, None)
            return
        online = lost = 0
        changed: float | None = None
        notable = []
        # From the rows as read: most agents of a commune are counted, not held.
        for row in rows:
            key, state, since, reason = str(row[0]), row[4], row[5], row[6]
            online += state == "online"
            lost += state == "offline" and reason != "stopped"
            if since is not None and (changed is None or since > changed):
                changed = since
            update_state, failures = row[11], row[15]
            facts = (state, reason, 0, update_state or "", failures or 0)
            if self.notable(facts):
                self._agents[key] = _held(row)
                notable.append(key)
        if notable:
            self._of_commune[place] = notable
        self._tallies[place] = CommuneTally(province, commune, len(rows), online, lost, changed)

    def _read_all(self, db: sqlite3.Connection) -> None:
        self.reads_all += 1
        seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM agent_changes").fetchone()[0]
        tallies = commune_tallies(db)
        combinations = db.execute(
            f"SELECT DISTINCT {_FACTS_OF} FROM agents a "  # noqa: S608 - fixed text
            "LEFT JOIN agent_updates u ON u.agent_key = a.agent_key"
        ).fetchall()
        notable = [
            (str(s), str(r), str(us), int(uf))
            for s, r, us, uf in combinations
            if self.notable((str(s), str(r), 0, str(us), int(uf)))
        ]
        rows: list[Any] = []
        for start in range(0, len(notable), 1000):  # SQLite's bound on parameters
            chunk = notable[start : start + 1000]
            marks = ", ".join("(?, ?, ?, ?)" for _ in chunk)
            rows += db.execute(
                f"{_AGENTS} WHERE ({_FACTS_OF}) IN (VALUES {marks})",
                [value for facts in chunk for value in facts],
            ).fetchall()
        self._tallies = {(t.province, t.commune): t for t in tallies}
        self._ordered = tallies
        self._agents = {}
        self._of_commune = {}
        for row in rows:
            held = _held(row)
            agent = held.agent
            self._agents[agent.agent_key] = held
            self._of_commune.setdefault((agent.province, agent.commune), []).append(agent.agent_key)
        self._keys = None
        self.seq = int(seq)
