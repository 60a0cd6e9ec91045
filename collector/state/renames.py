"""A commune's history moved from a former slug to its slug now (the inventory's
``formerly``), when the collector starts.

Agents configured with the old slug go on reporting under it (the broker's ACL names
their topics); the ingest counts them under the new one. What was recorded under the
old slug before moves here once, in one transaction, so that the commune has one
history: its agents, latest samples, up/down intervals, ports, alerts, silences,
maintenance windows and the line's RTT and loss. Where the same thing exists under
both slugs (an agent re-enrolled under the new slug before the rename was declared),
the newer one, under the new slug, is kept, and intervals are merged into it.

Enrollment records (tokens, enrolled agents, the audit) keep the slug they were made
with: the broker account and the config topic of an agent are named by it.

Once moved, nothing is written under the former slug again (the ingest renames first),
so a rename done is recorded in ``meta`` and not looked at again: a national collector
starts with thousands of them.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Mapping

from collector.state.store import StateStore
from collector.state.systemhealth import SUBJECT_PREFIX

#: Tables keyed by an agent key ("province/commune/agent"), with their unique columns.
_BY_AGENT_KEY = ("agents", "latest", "ports", "agent_refusals")
#: Tables keyed by a place ("province/commune").
_BY_PLACE = ("line_history",)
#: Tables with province and commune columns, no uniqueness on them.
_BY_COMMUNE = ("silences", "maintenance")


def move_renamed(store: StateStore, renames: Mapping[tuple[str, str], str]) -> dict[str, int]:
    """Move what is recorded under former slugs to the communes' slugs now.

    ``renames``: (province, former slug) -> slug now. Returns the rows moved per
    table (none when nothing is left under a former slug: a second start moves nothing).
    """
    moved: collections.Counter[str] = collections.Counter()
    if not renames:
        return {}
    with store.transaction() as db:
        store.release_subjects(db)  # subjects move to new keys: none held under the old
        for province, old, new in pending(db, renames):
            _move_one(db, province, old, new, moved)
            db.execute(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)", (_marker(province, old, new), 1)
            )
    return dict(moved)


def pending(
    db: sqlite3.Connection, renames: Mapping[tuple[str, str], str]
) -> list[tuple[str, str, str]]:
    """(province, former slug, slug now) of the renames not yet done in this store."""
    recorded = db.execute("SELECT key FROM meta WHERE key >= 'renamed:' AND key < 'renamed;'")
    done = {str(row[0]) for row in recorded}
    return [
        (province, old, new)
        for (province, old), new in sorted(renames.items())
        if _marker(province, old, new) not in done
    ]


def _marker(province: str, old: str, new: str) -> str:
    return f"renamed:{province}/{old}>{new}"


def _move_one(
    db: sqlite3.Connection, province: str, old: str, new: str, moved: collections.Counter[str]
) -> None:
    old_place, new_place = f"{province}/{old}", f"{province}/{new}"
    old_prefix, new_prefix = old_place + "/", new_place + "/"
    # A range on the key, not substr(): the tables' primary keys lead with agent_key.
    under_old = "agent_key >= ? AND agent_key < ?"
    old_args = (old_prefix, old_prefix + "\U0010ffff")
    moved["subjects"] += _move_subjects(db, old_prefix, new_prefix)
    for table in _BY_AGENT_KEY:
        # Where the agent key exists under both slugs, the row under the new one is newer.
        extra = ", commune = ?" if table == "agents" else ""
        moved[table] += db.execute(
            f"UPDATE OR IGNORE {table} SET agent_key = ? || substr(agent_key, ?){extra} "  # noqa: S608 - table names are ours
            f"WHERE {under_old}",
            (new_prefix, len(old_prefix) + 1, *((new,) if extra else ()), *old_args),
        ).rowcount
        db.execute(f"DELETE FROM {table} WHERE {under_old}", old_args)  # noqa: S608
    for table in _BY_PLACE:
        moved[table] += db.execute(
            f"UPDATE OR IGNORE {table} SET place = ? WHERE place = ?",  # noqa: S608
            (new_place, old_place),
        ).rowcount
        db.execute(f"DELETE FROM {table} WHERE place = ?", (old_place,))  # noqa: S608
    # Alert subjects: "province/commune", "province/commune/agent", "…/agent|check|…".
    subject_args = (new_place, len(old_place) + 1)
    where_args = (old_place, len(old_prefix), old_prefix)
    moved["alert_subjects"] += db.execute(
        "UPDATE OR IGNORE alert_subjects SET subject = ? || substr(subject, ?) "
        "WHERE subject = ? OR substr(subject, 1, ?) = ?",
        (*subject_args, *where_args),
    ).rowcount
    db.execute(
        "DELETE FROM alert_subjects WHERE subject = ? OR substr(subject, 1, ?) = ?", where_args
    )
    # A shared system's, one commune's reach of it: "system:province/commune/id".
    system_old, system_new = f"{SUBJECT_PREFIX}{old_prefix}", f"{SUBJECT_PREFIX}{new_prefix}"
    moved["alert_subjects"] += db.execute(
        "UPDATE OR IGNORE alert_subjects SET subject = ? || substr(subject, ?) "
        "WHERE substr(subject, 1, ?) = ?",
        (system_new, len(system_old) + 1, len(system_old), system_old),
    ).rowcount
    db.execute(
        "DELETE FROM alert_subjects WHERE substr(subject, 1, ?) = ?",
        (len(system_old), system_old),
    )
    moved["alerts"] += db.execute(
        "UPDATE alerts SET commune = ?, subject = CASE WHEN substr(subject, 1, ?) = ? "
        "THEN ? || substr(subject, ?) ELSE ? || substr(subject, ?) END "
        "WHERE province = ? AND commune = ?",
        (new, len(system_old), system_old, system_new, len(system_old) + 1, *subject_args,
         province, old),
    ).rowcount  # fmt: skip
    for table in _BY_COMMUNE:
        moved[table] += db.execute(
            f"UPDATE {table} SET commune = ? WHERE province = ? AND commune = ?",  # noqa: S608
            (new, province, old),
        ).rowcount
    for table in [t for t, n in moved.items() if not n]:
        del moved[table]


def _move_subjects(db: sqlite3.Connection, old_prefix: str, new_prefix: str) -> int:
    """Subjects (what has up/down history) to the new agent keys; a subject that exists
    under both takes the old one's intervals."""
    rows = db.execute(
        "SELECT id, agent_key, kind, name, target FROM subjects "
        "WHERE agent_key >= ? AND agent_key < ?",
        (old_prefix, old_prefix + "\U0010ffff"),
    ).fetchall()
    for subject_id, key, kind, name, target in rows:
        new_key = new_prefix + key[len(old_prefix) :]
        twin = db.execute(
            "SELECT id FROM subjects WHERE agent_key = ? AND kind = ? AND name = ? AND target = ?",
            (new_key, kind, name, target),
        ).fetchone()
        if twin is None:
            db.execute("UPDATE subjects SET agent_key = ? WHERE id = ?", (new_key, subject_id))
            continue
        for table in ("outages", "subject_gaps"):
            db.execute(
                f"UPDATE OR IGNORE {table} SET subject_id = ? WHERE subject_id = ?",  # noqa: S608 - our names
                (twin[0], subject_id),
            )
            db.execute(f"DELETE FROM {table} WHERE subject_id = ?", (subject_id,))  # noqa: S608
        # Response times: the counts of both add up.
        for table, period in (("system_times_hourly", "hour"), ("system_times_daily", "day")):
            db.execute(
                f"INSERT INTO {table} SELECT ?, {period}, counts FROM {table} "  # noqa: S608 - our names
                "WHERE subject_id = ? "
                "ON CONFLICT DO UPDATE SET counts = histogram_merge(counts, excluded.counts)",
                (twin[0], subject_id),
            )
            db.execute(f"DELETE FROM {table} WHERE subject_id = ?", (subject_id,))  # noqa: S608
        db.execute(
            "UPDATE subjects SET monitored_since = MIN(monitored_since, ?) WHERE id = ?",
            (
                db.execute(
                    "SELECT monitored_since FROM subjects WHERE id = ?", (subject_id,)
                ).fetchone()[0],
                twin[0],
            ),
        )
        db.execute("DELETE FROM subjects WHERE id = ?", (subject_id,))
    return len(rows)
