"""Reading and changing recorded alerts and silences: for the API, the CLI and the console."""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from agent.wire import IDENT_PATTERN
from collector.state import maintenance
from collector.state.store import StateStore


@dataclass
class Alert:
    id: int
    rule: str
    severity: str
    state: str
    """firing or resolved."""
    province: str
    commune: str
    agent: str
    name: str
    target: str
    value: str
    started_at: float
    """When the condition began (not when the alert fired)."""
    fired_at: float
    resolved_at: float | None
    late: bool
    """Fired from data that arrived late (a replayed backlog): recorded, not paged."""
    suppressed: bool
    """Held back under another alert (e.g. the commune is unreachable)."""
    silenced: bool
    maintenance: bool
    """In a maintenance window now: not sent, like a silenced one."""
    flaps: int
    acked_by: str | None
    acked_at: float | None
    ack_comment: str | None
    labels: dict[str, str]


@dataclass
class Silence:
    id: int
    province: str
    commune: str
    agent: str
    rule: str
    """Empty fields match everything."""
    starts: float
    ends: float
    created_by: str
    created_at: float
    comment: str


class NotFound(LookupError):
    pass


T = TypeVar("T")
#: Called inside the action's transaction with what it did (the audit's row goes there):
#: what it writes commits, or rolls back, with the action; raising undoes the action.
Also = Callable[[sqlite3.Connection, T], None]


def place_clause(places: Sequence[tuple[str, str]]) -> tuple[str, list[str]]:
    """``(province = ? AND commune = ?) OR …`` for (province, commune) pairs, "" for any."""
    either: list[str] = []
    params: list[str] = []
    for province, commune in places:
        parts = [f"{c} = ?" for c, v in (("province", province), ("commune", commune)) if v]
        either.append("(" + (" AND ".join(parts) or "1 = 1") + ")")
        params.extend(v for v in (province, commune) if v)
    return "(" + " OR ".join(either) + ")", params


#: Queries are this fixed text plus fixed clauses; every value is a bound parameter.
_SELECT_ALERTS = (
    "SELECT id, rule, severity, state, province, commune, agent, name, target, value, "
    "started_at, fired_at, resolved_at, late, suppressed, flaps, acked_by, acked_at, "
    "ack_comment, labels FROM alerts"
)
_SELECT_SILENCES = "SELECT * FROM silences"


def _silenced(db: sqlite3.Connection, row: tuple[Any, ...], now: float) -> bool:
    _, rule, _, _, province, commune, agent = row[:7]
    found = db.execute(
        """SELECT 1 FROM silences WHERE starts <= ?1 AND ends > ?1
             AND province IN ('', ?2) AND commune IN ('', ?3) AND agent IN ('', ?4)
             AND rule IN ('', ?5) LIMIT 1""",
        (now, province, commune, agent, rule),
    ).fetchone()
    return found is not None


def _in_maintenance(db: sqlite3.Connection, row: tuple[Any, ...], now: float) -> bool:
    """Whether a maintenance window in force covers the alert's place and device (by
    the device's words: ``tslcd`` holds the line's checks whatever their names)."""
    province, commune, agent, name = row[4:8]
    rows = db.execute(
        maintenance.SELECT
        + " WHERE province = ? AND commune IN ('', ?) AND agent IN ('', ?) AND starts <= ?",
        (province, commune, agent, now),
    ).fetchall()
    active = [w for w in (maintenance.Window(*found) for found in rows) if w.active(now)]
    if not active:
        return False
    device = maintenance.device_of(db, province, commune, agent, name)
    return any(w.covers(province, commune, device) for w in active)


def muted(db: sqlite3.Connection, alert_id: int, now: float) -> bool:
    """Silenced, or in a maintenance window: recorded, not sent."""
    row = db.execute(_SELECT_ALERTS + " WHERE id = ?", (alert_id,)).fetchone()
    return row is not None and (_silenced(db, row, now) or _in_maintenance(db, row, now))


def _alert(db: sqlite3.Connection, row: tuple[Any, ...], now: float) -> Alert:
    return Alert(
        id=row[0],
        rule=row[1],
        severity=row[2],
        state=row[3],
        province=row[4],
        commune=row[5],
        agent=row[6],
        name=row[7],
        target=row[8],
        value=row[9],
        started_at=row[10],
        fired_at=row[11],
        resolved_at=row[12],
        late=bool(row[13]),
        suppressed=bool(row[14]),
        silenced=_silenced(db, row, now),
        maintenance=_in_maintenance(db, row, now),
        flaps=row[15],
        acked_by=row[16],
        acked_at=row[17],
        ack_comment=row[18],
        labels=msgspec.json.decode(row[19]),
    )


def list_alerts(
    store: StateStore,
    now: float,
    *,
    state: str | None = None,
    province: str | None = None,
    commune: str | None = None,
    severity: str | None = None,
    rule: str | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int = 500,
    places: Sequence[tuple[str, str]] | None = None,
) -> list[Alert]:
    """Newest first. ``since``/``until``: alerts active at some time in that window.
    ``places``: only alerts of these (province, commune) pairs, "" for any."""
    clauses: list[str] = []
    params: list[str | float] = []
    if places is not None:
        if not places:
            return []
        clause, place_params = place_clause(places)
        clauses.append(clause)
        params.extend(place_params)
    for column, value in (
        ("state", state),
        ("province", province),
        ("commune", commune),
        ("severity", severity),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if rule is not None:
        clauses.append("rule = ?")
        params.append(rule)
    if since is not None:
        clauses.append("(resolved_at IS NULL OR resolved_at > ?)")
        params.append(since)
    if until is not None:
        clauses.append("started_at < ?")
        params.append(until)
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    with store.reading() as db:
        rows = db.execute(
            _SELECT_ALERTS + where + " ORDER BY started_at DESC, id DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [_alert(db, row, now) for row in rows]


def firing_not_suppressed(
    store: StateStore, places: Sequence[tuple[str, str]] | None = None, limit: int = 500
) -> int:
    """How many of ``list_alerts(state="firing", places=places, limit=limit)`` are not
    suppressed: counted, without reading each one's silences and maintenance windows."""
    if places is not None and not places:
        return 0
    clause, params = place_clause(places) if places is not None else ("1 = 1", [])
    with store.reading() as db:
        (count,) = db.execute(
            f"""SELECT COUNT(*) FROM (SELECT suppressed FROM alerts
                  WHERE {clause} AND state = 'firing'
                  ORDER BY started_at DESC, id DESC LIMIT ?)
                WHERE NOT suppressed""",  # noqa: S608 - fixed clauses, placeholders
            (*params, limit),
        ).fetchone()
    return int(count)


def firing_by_severity(store: StateStore) -> dict[str, int]:
    with store.reading() as db:
        rows = db.execute(
            "SELECT severity, COUNT(*) FROM alerts WHERE state = 'firing' GROUP BY 1"
        ).fetchall()
    return {str(severity): int(count) for severity, count in rows}


def read_alert(db: sqlite3.Connection, alert_id: int, now: float) -> Alert | None:
    """On a connection already held (inside ``store.reading()`` or a transaction)."""
    row = db.execute(_SELECT_ALERTS + " WHERE id = ?", (alert_id,)).fetchone()
    return None if row is None else _alert(db, row, now)


def get_alert(store: StateStore, alert_id: int, now: float) -> Alert:
    with store.reading() as db:
        alert = read_alert(db, alert_id, now)
    if alert is None:
        raise NotFound(f"no alert {alert_id}")
    return alert


@dataclass
class Step:
    """One thing that happened to an alert: fired, notified (which routes), escalated,
    acknowledged, resolved."""

    at: float
    step: str
    detail: str


def record_step(
    db: sqlite3.Connection, alert_id: int, at: float, step: str, detail: str = ""
) -> None:
    db.execute(
        "INSERT INTO alert_steps (alert_id, at, step, detail) VALUES (?, ?, ?, ?)",
        (alert_id, at, step, detail[:500]),
    )


def steps(store: StateStore, alert_id: int) -> list[Step]:
    with store.reading() as db:
        rows = db.execute(
            "SELECT at, step, detail FROM alert_steps WHERE alert_id = ? ORDER BY at, id",
            (alert_id,),
        ).fetchall()
    return [Step(float(at), str(step), str(detail)) for at, step, detail in rows]


def acknowledge(
    store: StateStore,
    alert_id: int,
    by: str,
    comment: str,
    now: float,
    also: Also[bool] | None = None,
) -> Alert:
    """Who, when, why. Acknowledging stops repeats; acknowledging twice keeps the first.
    ``also`` is told whether this call acknowledged it (False: it was already)."""
    if len(comment) > MAX_COMMENT:
        raise ValueError(f"a comment is at most {MAX_COMMENT} characters")
    with store.transaction() as db:
        found = db.execute("SELECT acked_at FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        if found is None:
            raise NotFound(f"no alert {alert_id}")
        if found[0] is None:
            acknowledge_in(db, alert_id, by, comment, now)
        if also is not None:
            also(db, found[0] is None)
    return get_alert(store, alert_id, now)


def acknowledge_in(
    db: sqlite3.Connection, alert_id: int, by: str, comment: str, now: float, how: str = ""
) -> None:
    """Inside a transaction: who, when, why; the step recorded."""
    db.execute(
        "UPDATE alerts SET acked_by = ?, acked_at = ?, ack_comment = ? WHERE id = ?",
        (by, now, comment, alert_id),
    )
    # What is still queued to remind or escalate has no more reason to go.
    db.execute(
        "DELETE FROM notifications WHERE alert_id = ? AND event != 'resolved' "
        "AND event != 'firing'",
        (alert_id,),
    )
    said = f"{by}: {comment}" if comment else by
    record_step(db, alert_id, now, "acked", f"{said} {how}".rstrip())


#: Longest comment (an acknowledgement, a silence) kept.
MAX_COMMENT = 1000
#: Longest silence: a year. A silence meant "for ever" is a rule turned off.
MAX_SILENCE_S = 366 * 86400.0


def add_silence(
    store: StateStore,
    *,
    starts: float,
    ends: float,
    created_by: str,
    now: float,
    province: str = "",
    commune: str = "",
    agent: str = "",
    rule: str = "",
    comment: str = "",
    also: Also[Silence] | None = None,
) -> Silence:
    if not (math.isfinite(starts) and math.isfinite(ends)):
        raise ValueError("a silence's start and end must be times, not infinite")
    if ends <= starts:
        raise ValueError("a silence must end after it starts")
    if ends - starts > MAX_SILENCE_S:
        raise ValueError("a silence lasts at most a year: turn the rule off instead")
    if abs(starts - now) > MAX_SILENCE_S:
        raise ValueError("a silence must start within a year of now")
    for what, value in (("province", province), ("commune", commune), ("agent", agent)):
        if value and not re.fullmatch(IDENT_PATTERN, value):
            raise ValueError(f"{what} {value[:64]!r}: not a slug")
    if len(rule) > 64 or len(comment) > MAX_COMMENT or len(created_by) > 64:
        raise ValueError(f"a rule name is at most 64 characters, a comment {MAX_COMMENT}")
    if not (province or commune or agent or rule):
        raise ValueError("a silence needs a commune, an agent or a rule: it cannot mute everything")
    with store.transaction() as db:
        cursor = db.execute(
            """INSERT INTO silences (province, commune, agent, rule, starts, ends, created_by,
                                     created_at, comment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (province, commune, agent, rule, starts, ends, created_by, now, comment),
        )
        silence = Silence(
            int(cursor.lastrowid or 0), province, commune, agent, rule, starts, ends,
            created_by, now, comment,
        )  # fmt: skip
        if also is not None:
            also(db, silence)
    return silence


def list_silences(store: StateStore, now: float, active_only: bool = True) -> list[Silence]:
    query = _SELECT_SILENCES + (" WHERE ends > ?" if active_only else "") + " ORDER BY id"
    with store.reading() as db:
        rows = db.execute(query, (now,) if active_only else ()).fetchall()
    return [Silence(*row) for row in rows]


def delete_silence(store: StateStore, silence_id: int, also: Also[Silence] | None = None) -> None:
    """``also`` is given the silence, before it goes."""
    with store.transaction() as db:
        row = db.execute(_SELECT_SILENCES + " WHERE id = ?", (silence_id,)).fetchone()
        if row is None:
            raise NotFound(f"no silence {silence_id}")
        if also is not None:
            also(db, Silence(*row))
        db.execute("DELETE FROM silences WHERE id = ?", (silence_id,))
