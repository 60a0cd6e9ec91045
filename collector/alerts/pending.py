"""Alerts on their way: a rule's condition holds, its ``for`` delay not yet over.

A commune turns critical the moment a PC reports it is unprotected; the alert follows
ten minutes later, when the condition has held that long. Until then the console shows
it as pending, so that the commune's colour and the alerts agree.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from collector.state.store import StateStore
from collector.state.systemhealth import SUBJECT_PREFIX


@dataclass(frozen=True)
class Pending:
    rule: str
    province: str
    commune: str
    agent: str
    target: str
    since: float
    """When the condition began to hold."""


def _place(subject: str) -> tuple[str, str, str, str] | None:
    """(province, commune, agent, target) of a subject key: "p/c/agent|name|item|target"
    for a sample's, "p/c/agent" for an agent's, "p/c" for a commune's; None for the
    collector's own subjects ("collector/…"), which are of no commune. A shared system's:
    "system:p/id" (of no commune), "system:p/c/id" (one commune's reach of it)."""
    if subject.startswith(SUBJECT_PREFIX):
        parts = subject[len(SUBJECT_PREFIX) :].split("/")
        if len(parts) == 3:
            return parts[0], parts[1], "", parts[2]
        return (parts[0], "", "", parts[-1]) if len(parts) == 2 else None
    place, _, rest = subject.partition("|")
    parts = place.split("/")
    if parts[0] == "collector" or len(parts) < 2:
        return None
    target = rest.rsplit("|", 1)[-1] if rest else ""
    return parts[0], parts[1], parts[2] if len(parts) > 2 else "", target


def pending(
    store: StateStore,
    places: Sequence[tuple[str, str]],
    commune: tuple[str, str] | None = None,
    limit: int = 500,
) -> list[Pending]:
    """Pending alerts of these (province, commune) places ("" for any), oldest first, at
    most ``limit`` of them; of one (province, commune) only when ``commune`` is given."""
    found: list[Pending] = []
    with store.reading() as db:
        if commune is None:
            # Filtered as they come, the limit counts only what is shown: at night a
            # country has thousands pending, and a province's must not be cut off by the
            # others'.
            rows: list[tuple[str, str, float]] | sqlite3.Cursor = db.execute(
                "SELECT rule, subject, since FROM alert_subjects WHERE state = 'pending' "
                "ORDER BY since"
            )
        else:
            rows = _of_commune(db, commune)
        for rule, subject, since in rows:
            place = _place(str(subject))
            if place is None:
                continue
            province, slug, agent, target = place
            if commune is not None and (province, slug) != commune:
                continue
            if any(p in ("", province) and c in ("", slug) for p, c in places):
                found.append(Pending(str(rule), province, slug, agent, target, float(since)))
                if len(found) >= limit:
                    break
    return found


def _of_commune(db: sqlite3.Connection, commune: tuple[str, str]) -> list[tuple[str, str, float]]:
    """The pending (rule, subject, since) of one commune, oldest first: its subjects'
    keys ("p/c", "p/c/…", "system:p/c/…"; the key order is text's) sought rule by rule
    in the table's key, rather than every pending row of the country read and filtered
    (140,000 rows on a national night: a commune's page waited 23–52 ms for them)."""
    key = "/".join(commune)
    ranges = (key + "/", key + "0", SUBJECT_PREFIX + key + "/", SUBJECT_PREFIX + key + "0")
    found: list[tuple[str, str, float]] = []
    rule = db.execute("SELECT MIN(rule) FROM alert_subjects").fetchone()[0]
    while rule is not None:
        # Three seeks (an OR of them makes SQLite read all of the rule's subjects).
        found += db.execute(
            "SELECT rule, subject, since FROM alert_subjects "
            "WHERE rule = ?1 AND subject = ?2 AND state = 'pending' "
            "UNION ALL SELECT rule, subject, since FROM alert_subjects "
            "WHERE rule = ?1 AND subject >= ?3 AND subject < ?4 AND state = 'pending' "
            "UNION ALL SELECT rule, subject, since FROM alert_subjects "
            "WHERE rule = ?1 AND subject >= ?5 AND subject < ?6 AND state = 'pending'",
            (rule, key, *ranges),
        ).fetchall()
        rule = db.execute(
            "SELECT MIN(rule) FROM alert_subjects WHERE rule > ?", (rule,)
        ).fetchone()[0]
    found.sort(key=lambda row: row[2])
    return found
