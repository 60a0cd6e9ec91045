"""Which online agents have fallen silent, without reading every agent each round.

An agent silent for ``intervals`` of its interval goes offline (``StateStore.mark_silent``,
every 10 s). Reading the 166,050 agents of the country for that, under the writer's
lock, cost ~30 ms a round. An agent's silence cannot come before its deadline (its last
sign of life, or its status, plus that many intervals), and a deadline only moves later
with the data that arrives every minute: what could bring one sooner (its last sign of
life known for the first time or moved back, its interval, its state) lists its commune
in ``agent_changes`` (triggers, migration 15). So each commune's soonest deadline is
held; a round reads again the communes whose soonest deadline has come and those
listed as changed, and finds there exactly what reading every agent would find.
"""

from __future__ import annotations

import sqlite3

Place = tuple[str, str]

#: A commune is read this much before its soonest deadline: the deadline is a sum of
#: floats, the test of silence a difference of them.
MARGIN_S = 1.0

_LAST = "COALESCE(last_seen, status_ts)"
_INTERVALS = "?2 * (CASE WHEN interval > 0 THEN interval ELSE ?3 END)"
_SILENT = f"{_LAST} < ?1 - {_INTERVALS}"
_IN_COMMUNE = "agent_key >= ?4 AND agent_key < ?5 AND province = ?6 AND commune = ?7"


class SilenceWatch:
    """Each commune's soonest silence of an online agent, held between rounds."""

    def __init__(self, few: int = 50) -> None:
        self.few = few
        """Changed communes read one by one at most (beyond, and past a sixteenth of them,
        a scan of all)."""
        self._soonest: dict[Place, float] = {}
        self._seq: int | None = None
        self._bound: tuple[float, float] | None = None
        """(intervals, default interval) the deadlines were computed with."""
        self._stale = False
        """Many communes changed: the deadlines held are not to be trusted until read again."""
        self.reads_all = 0

    def silent(
        self, db: sqlite3.Connection, now: float, intervals: float, default_interval: float
    ) -> list[str]:
        """The online agents silent for ``intervals`` of their interval (``default_interval``
        when unsaid) at ``now``, by key; ``db`` inside the transaction that marks them."""
        params = (now, intervals, default_interval)
        if self._seq is None or self._bound != (intervals, default_interval):
            return self._read_all(db, params)
        rows = db.execute(
            "SELECT province, commune, seq FROM agent_changes WHERE seq > ?", (self._seq,)
        ).fetchall()
        self._seq = max([self._seq, *(int(seq) for _, _, seq in rows)])
        # A query per commune costs some 3 µs an agent, one scan of all 0.2 µs: when the
        # offices open, most communes change each round, and one scan is read instead;
        # the deadlines are read again once the changes slow down.
        many = len(rows) > max(self.few, len(self._soonest) // 16)
        if many or self._stale:
            self._stale = many
            return self._read_all(db, params) if not many else self._scan(db, params)
        due = {place for place, soonest in self._soonest.items() if soonest <= now + MARGIN_S}
        silent: list[str] = []
        for place in due.union((str(p), str(c)) for p, c, _ in rows):
            silent += self._read_commune(db, place, params)
        return sorted(silent)

    def _read_commune(
        self, db: sqlite3.Connection, place: Place, params: tuple[float, float, float]
    ) -> list[str]:
        province, commune = place
        prefix = f"{province}/{commune}/"
        rows = db.execute(
            f"SELECT agent_key, {_SILENT}, {_LAST} + {_INTERVALS} FROM agents "  # noqa: S608 - fixed text
            f"WHERE {_IN_COMMUNE} AND state = 'online'",
            (*params, prefix, prefix[:-1] + "0", province, commune),
        ).fetchall()
        # The silent ones too: should the transaction marking them roll back, they are
        # still online, and due.
        deadlines = [float(deadline) for _, _, deadline in rows]
        if deadlines:
            self._soonest[place] = min(deadlines)
        else:
            self._soonest.pop(place, None)
        return [str(key) for key, silent, _ in rows if silent]

    def _read_all(self, db: sqlite3.Connection, params: tuple[float, float, float]) -> list[str]:
        self.reads_all += 1
        self._seq = int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM agent_changes").fetchone()[0])
        self._bound = params[1:]
        soonest = db.execute(
            f"SELECT province, commune, MIN({_LAST} + {_INTERVALS}) FROM agents "  # noqa: S608 - fixed text
            "WHERE state = 'online' GROUP BY province, commune",
            params,
        )
        self._soonest = {(str(p), str(c)): float(s) for p, c, s in soonest}
        return self._scan(db, params)

    @staticmethod
    def _scan(db: sqlite3.Connection, params: tuple[float, float, float]) -> list[str]:
        """Every online agent read for silence."""
        rows = db.execute(
            f"SELECT agent_key FROM agents WHERE state = 'online' AND {_SILENT}",  # noqa: S608 - fixed text
            params,
        )
        return sorted(str(key) for (key,) in rows)
