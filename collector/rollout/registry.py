"""The enrolled agents, the accounts retired, and the audit of every enrollment,
replacement and revocation.

An enrolled ("managed") agent has a broker account made by the collector and gets
its checks from the collector; ``config_version``/``config_hash`` are what was
last sent to it (its birth message and self-metrics say what it runs). Each
enrollment of an agent id has an account of its own (``<key>@<generation>``); the
accounts of earlier enrollments, and of a revoked agent, are retired: recorded here
first, then removed from the broker (at once, or at the next round if the broker is
away), and their certificates listed as revoked. The audit keeps who, when, from which
address and with which token, refusals included, bounded in rows so that a spray of
bad requests cannot fill the disk.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from collector.state.store import StateStore, agent_key

#: Audit rows kept at most; the oldest go first.
MAX_EVENTS = 200_000


@dataclass(frozen=True)
class Managed:
    agent_key: str
    province: str
    commune: str
    agent: str
    username: str
    profile: str
    token_id: str
    enrolled_at: float
    revoked_at: float | None
    config_version: int
    config_hash: str
    config_published: float | None
    generation: int = 0
    """The how-manieth enrollment of this agent id (0: made by 0.2, the account named
    by the key alone)."""
    cert_serial: str = ""
    """The serial (hex) of the client certificate signed for this enrollment, if any."""
    config_key: str = ""
    """The keys of the last config sent: the signing key's id, ``>`` and the next key's
    during a rotation ("" : sent before configs were signed)."""


@dataclass(frozen=True)
class Retired:
    """An account that must never log in again."""

    username: str
    agent_key: str
    reason: str
    """replaced (a newer enrollment of the id), revoked, or stray (found at the broker
    without an enrollment)."""
    retired_at: float
    cert_serial: str
    removed_at: float | None
    """When the broker was seen without it; None while it may still hold it."""


def account_name(key: str, generation: int) -> str:
    """The broker account of an agent's ``generation``-th enrollment."""
    return f"{key}@{generation}" if generation else key


@dataclass(frozen=True)
class Event:
    id: int
    at: float
    event: str
    """enrolled, replaced, refused, failed, revoked, token_created, token_revoked."""
    province: str
    commune: str
    agent: str
    token_id: str
    address: str
    actor: str
    detail: str


_SELECT = (
    "SELECT agent_key, province, commune, agent, username, profile, token_id, enrolled_at, "
    "revoked_at, config_version, config_hash, config_published, generation, cert_serial, "
    "config_key FROM managed_agents"
)


def place_filter(province: str | None, commune: str | None) -> tuple[str, list[object]]:
    """`` AND province = ? AND commune = ?`` for what is given, and its arguments."""
    where: str = ""
    args: list[object] = []
    for column, value in (("province", province), ("commune", commune)):
        if value:
            where += f" AND {column} = ?"
            args.append(value)
    return where, args


def _managed(row: tuple[object, ...]) -> Managed:
    (key, province, commune, agent, username, profile, token, at, revoked, version, hash_, sent,
     generation, serial, config_key) = row  # fmt: skip
    return Managed(
        str(key),
        str(province),
        str(commune),
        str(agent),
        str(username),
        str(profile),
        str(token),
        float(at),  # type: ignore[arg-type]
        None if revoked is None else float(revoked),  # type: ignore[arg-type]
        int(version),  # type: ignore[call-overload]
        str(hash_),
        None if sent is None else float(sent),  # type: ignore[arg-type]
        int(generation),  # type: ignore[call-overload]
        str(serial),
        str(config_key),
    )


def find(db: sqlite3.Connection, key: str) -> Managed | None:
    row = db.execute(_SELECT + " WHERE agent_key = ?", (key,)).fetchone()
    return _managed(row) if row else None


def managed(
    store: StateStore,
    province: str | None = None,
    commune: str | None = None,
    *,
    active: bool = False,
) -> list[Managed]:
    query, args = _SELECT + " WHERE 1 = 1", []
    if province:
        query += " AND province = ?"
        args.append(province)
    if commune:
        query += " AND commune = ?"
        args.append(commune)
    if active:
        query += " AND revoked_at IS NULL"
    with store.reading() as db:
        return [_managed(r) for r in db.execute(query + " ORDER BY agent_key", args)]


def enrolled(
    db: sqlite3.Connection,
    *,
    province: str,
    commune: str,
    agent: str,
    username: str,
    profile: str,
    token_id: str,
    now: float,
    generation: int = 0,
    cert_serial: str = "",
    cert_expires: float = 0.0,
) -> None:
    """Enrolled anew, or again (a replaced PC, or after a revocation)."""
    db.execute(
        """INSERT INTO managed_agents (agent_key, province, commune, agent, username, profile,
             token_id, enrolled_at, generation, cert_serial, cert_expires)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (agent_key) DO UPDATE SET username = excluded.username,
             profile = excluded.profile, token_id = excluded.token_id,
             enrolled_at = excluded.enrolled_at, revoked_at = NULL,
             generation = excluded.generation, cert_serial = excluded.cert_serial,
             cert_expires = excluded.cert_expires""",
        (
            agent_key(province, commune, agent),
            province,
            commune,
            agent,
            username,
            profile,
            token_id,
            now,
            generation,
            cert_serial,
            cert_expires,
        ),
    )


def client_certificates(db: sqlite3.Connection) -> list[tuple[str, float, float]]:
    """The live enrollments holding a client certificate: (agent key, when it expires
    (0: not recorded), when it was enrolled)."""
    rows = db.execute(
        "SELECT agent_key, cert_expires, enrolled_at FROM managed_agents "
        "WHERE cert_serial != '' AND revoked_at IS NULL ORDER BY agent_key"
    ).fetchall()
    return [(str(key), float(expires), float(enrolled)) for key, expires, enrolled in rows]


def retire(
    db: sqlite3.Connection, username: str, key: str, reason: str, now: float, cert_serial: str = ""
) -> None:
    """``username`` must never log in again: recorded before the broker is asked, so that a
    failure there is tried again, never forgotten."""
    db.execute(
        """INSERT INTO retired_accounts (username, agent_key, reason, retired_at, cert_serial)
           VALUES (?, ?, ?, ?, ?) ON CONFLICT (username) DO UPDATE SET removed_at = NULL,
             cert_serial = CASE WHEN excluded.cert_serial != '' THEN excluded.cert_serial
                                ELSE retired_accounts.cert_serial END""",
        (username, key, reason, now, cert_serial),
    )


def account_removed(db: sqlite3.Connection, username: str, now: float) -> None:
    db.execute(
        "UPDATE retired_accounts SET removed_at = ? WHERE username = ? AND removed_at IS NULL",
        (now, username),
    )


def retired(store: StateStore, pending_only: bool = False) -> list[Retired]:
    query = (
        "SELECT username, agent_key, reason, retired_at, cert_serial, removed_at "
        "FROM retired_accounts"
    )
    if pending_only:
        query += " WHERE removed_at IS NULL"
    with store.reading() as db:
        rows = db.execute(query + " ORDER BY retired_at, username").fetchall()
    return [
        Retired(
            str(name),
            str(key),
            str(why),
            float(at),
            str(serial),
            None if gone is None else float(gone),
        )
        for name, key, why, at, serial, gone in rows
    ]


def revoked_serials(store: StateStore) -> list[tuple[str, float]]:
    """Certificates of retired accounts (serial in hex, when retired): the revocation list."""
    with store.reading() as db:
        rows = db.execute(
            "SELECT cert_serial, MIN(retired_at) FROM retired_accounts WHERE cert_serial != '' "
            "GROUP BY cert_serial ORDER BY cert_serial"
        ).fetchall()
    return [(str(serial), float(at)) for serial, at in rows]


def active_usernames(store: StateStore) -> set[str]:
    with store.reading() as db:
        return {
            str(u)
            for (u,) in db.execute("SELECT username FROM managed_agents WHERE revoked_at IS NULL")
        }


def revoked(db: sqlite3.Connection, key: str, now: float) -> None:
    db.execute(
        "UPDATE managed_agents SET revoked_at = COALESCE(revoked_at, ?) WHERE agent_key = ?",
        (now, key),
    )


def config_sent(
    db: sqlite3.Connection, key: str, version: int, hash_: str, now: float, signed_by: str = ""
) -> None:
    db.execute(
        """UPDATE managed_agents SET config_version = ?, config_hash = ?, config_published = ?,
             config_key = ? WHERE agent_key = ?""",
        (version, hash_, now, signed_by, key),
    )


def unwithdrawn(store: StateStore) -> list[Managed]:
    """Revoked agents whose retained config the broker may still hold (their secrets)."""
    with store.reading() as db:
        rows = db.execute(
            _SELECT + " WHERE revoked_at IS NOT NULL AND config_published IS NOT NULL"
        ).fetchall()
    return [_managed(row) for row in rows]


def config_withdrawn(db: sqlite3.Connection, key: str) -> None:
    """A revoked agent's retained config cleared; its version kept, so a config sent after
    a later enrollment is newer than any the PC ran."""
    db.execute(
        "UPDATE managed_agents SET config_hash = '', config_published = NULL WHERE agent_key = ?",
        (key,),
    )


def running_versions(store: StateStore) -> dict[str, int]:
    """Per enrolled agent: the config version it last said it runs (its birth message),
    where that is above what the store recorded as sent: a store restored from an older
    backup. The next config each is sent must be above it, or the agent refuses it."""
    with store.reading() as db:
        rows = db.execute(
            """SELECT m.agent_key, a.config_version FROM managed_agents m
               JOIN agents a ON a.agent_key = m.agent_key
               WHERE m.revoked_at IS NULL AND a.config_version > m.config_version"""
        ).fetchall()
    return {str(key): int(version) for key, version in rows}


def record(
    db: sqlite3.Connection,
    event: str,
    now: float,
    *,
    province: str = "",
    commune: str = "",
    agent: str = "",
    token_id: str = "",
    address: str = "",
    actor: str = "",
    detail: str = "",
) -> None:
    db.execute(
        """INSERT INTO enrollment_events (at, event, province, commune, agent, token_id,
             address, actor, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (now, event, province, commune, agent, token_id, address[:64], actor[:64], detail[:500]),
    )
    db.execute(
        "DELETE FROM enrollment_events WHERE id <= (SELECT MAX(id) FROM enrollment_events) - ?",
        (MAX_EVENTS,),
    )


def events(
    store: StateStore,
    province: str | None = None,
    commune: str | None = None,
    limit: int = 200,
) -> list[Event]:
    query = (
        "SELECT id, at, event, province, commune, agent, token_id, address, actor, detail "
        "FROM enrollment_events WHERE 1 = 1"
    )
    where, args = place_filter(province, commune)
    with store.reading() as db:
        rows = db.execute(query + where + " ORDER BY id DESC LIMIT ?", [*args, limit]).fetchall()
    return [
        Event(
            int(r[0]),
            float(r[1]),
            str(r[2]),
            str(r[3]),
            str(r[4]),
            str(r[5]),
            str(r[6]),
            str(r[7]),
            str(r[8]),
            str(r[9]),
        )
        for r in rows
    ]
